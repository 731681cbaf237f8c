"""The local engine: decoding in worker processes, overlapped with inference in this one.

Workers (`spawn`ed, so they never inherit a Keras or torch runtime) run
`jobs.decode_or_error` and send back uint8 views. The main process keeps at most `window`
videos in flight (submitted, decoding or decoded and waiting), so memory stays flat however
long the list; it runs the model on one group at a time, in list order, while the workers
decode the next ones. `workers=0` decodes in this process, one video after another (no
overlap): the sequential baseline. A worker exits by itself when the main process dies,
however it dies.
"""

import multiprocessing
import os
import threading
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from videoswin_tools import jobs


class WorkerDied(RuntimeError):
    """A decoding process ended abnormally (killed, out of memory, a crash in FFmpeg)."""


def run(entries, skip, protocol, runner, workers, group, window=None):
    """Yield `(entry, output, error)` for each entry whose line is not in `skip`, in list order.

    `group`: videos per group (`jobs.group_size`); `window`: videos in flight (default: two
    per worker plus one group)."""
    window = window or (2 * max(workers, 1) + group)
    todo = [(g, batch) for g, batch in enumerate(jobs.groups(entries, group))
            if any(e.line not in skip for e in batch)]
    if not todo:
        return
    pool = None
    if workers > 0:
        pool = ProcessPoolExecutor(max_workers=workers,
                                   mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_watch_parent, initargs=(os.getpid(),))
    try:
        if pool is None:
            for _, batch in todo:
                decoded = {j: jobs.decode_or_error(e.path, protocol.pipeline, protocol.origin)
                           for j, e in enumerate(batch) if e.line not in skip}
                yield from _finish(batch, decoded, runner)
            return
        queue = deque()                       # (batch, {position: future})
        in_flight = 0
        upcoming = iter(todo)

        def submit_more():
            nonlocal in_flight
            while in_flight < window or not queue:
                nxt = next(upcoming, None)
                if nxt is None:
                    return
                _, batch = nxt
                futures = {j: pool.submit(jobs.decode_or_error, e.path, protocol.pipeline,
                                          protocol.origin)
                           for j, e in enumerate(batch) if e.line not in skip}
                queue.append((batch, futures))
                in_flight += len(futures)

        submit_more()
        while queue:
            batch, futures = queue.popleft()
            try:
                decoded = {j: future.result() for j, future in futures.items()}
            except BrokenProcessPool as err:
                raise WorkerDied(f"a decoding worker died ({err}); the rows written so far "
                                 "are kept: rerun with --resume") from None
            in_flight -= len(futures)
            submit_more()                     # keep the workers busy during the forward pass
            yield from _finish(batch, decoded, runner)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _watch_parent(parent):
    """In a worker: exit as soon as the parent is gone (killed with SIGKILL, say), rather than
    live on as an orphan holding its pipes open."""
    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


def _finish(batch, decoded, runner):
    views = {j: v for j, (v, error) in decoded.items() if error is None}
    outputs = runner.run_group(views, len(batch))
    for j in sorted(decoded):
        error = decoded[j][1]
        yield batch[j], (outputs[j] if error is None else None), error
