"""Progress of long work on stderr: a live, rewritten line when stderr is a terminal, and
only whole lines otherwise (so that logs and pipes get one line per finished item).

`Status` and `Counter` serve `videoswin-predict` (views of one video); `VideoProgress`
serves the dataset jobs (`videoswin-evaluate`, `videoswin-extract`)."""

import sys
import time


def duration(seconds):
    """`4.2s`, `3m05s` or `1h02m`; `?` when unknown."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def rate_and_eta(done, total, elapsed, unit):
    """`2.10 views/s, ETA 3.4s` once something is done, else an empty string."""
    if done <= 0 or elapsed <= 0:
        return ""
    rate = done / elapsed
    text = f"{rate:.2f} {unit}/s"
    if total is not None and total > done:
        text += f", ETA {duration((total - done) / rate)}"
    return text


class Status:
    """Writes progress to `stream` (stderr). `line` prints a whole line; `live` rewrites the
    current line on a terminal and prints nothing elsewhere; `quiet` silences both."""

    def __init__(self, stream=None, quiet=False, live=None):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.is_live = (self.stream.isatty() if live is None else live) and not quiet
        self._width = 0

    def live(self, text):
        if not self.is_live:
            return
        self.stream.write("\r" + text.ljust(self._width))
        self.stream.flush()
        self._width = len(text)

    def clear(self):
        if self.is_live and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0

    def line(self, text):
        if self.quiet:
            return
        self.clear()
        print(text, file=self.stream, flush=True)


class Counter:
    """Items done out of a total, shown live with rate and ETA: `label 3/12 views (0.85
    views/s, ETA 11.0s)`."""

    def __init__(self, status, label, total, unit):
        self.status, self.label, self.total, self.unit = status, label, total, unit
        self.done = 0
        self.started = time.perf_counter()
        self.show()

    @property
    def elapsed(self):
        return time.perf_counter() - self.started

    def advance(self, count=1):
        self.done += count
        self.show()

    def show(self):
        detail = rate_and_eta(self.done, self.total, self.elapsed, self.unit)
        self.status.live(f"{self.label} {self.done}/{self.total} {self.unit}"
                         + (f" ({detail})" if detail else ""))


class VideoProgress:
    """Videos of a dataset job: `update(name, error=None)` once per finished video, `close()`
    at the end (returns the seconds taken). A bar with videos/s and ETA on a terminal, one
    line per video otherwise. `done` counts videos finished by an earlier run (`--resume`):
    shown, but not in the rate."""

    def __init__(self, total, done=0, stream=None, tty=None, width=30):
        self.status = Status(stream, live=tty)
        self.total, self.done, self.count, self.failed = total, done, 0, 0
        self.width = width
        self.started = time.perf_counter()
        self._drawn = 0.0

    def _where(self):
        detail = rate_and_eta(self.count, self.total, time.perf_counter() - self.started,
                              "videos")
        return f"{self.done + self.count}/{self.done + self.total}" + \
            (f" ({detail})" if detail else "")

    def update(self, name, error=None):
        self.count += 1
        self.failed += error is not None
        if self.status.is_live:
            now = time.perf_counter()
            if now - self._drawn > 0.1 or self.count == self.total:
                self._drawn = now
                self._draw()
        else:
            self.status.line(f"[{self._where()}] {name}"
                             + (f"  FAILED: {error}" if error is not None else ""))

    def _draw(self):
        filled = int(self.width * (self.count / self.total if self.total else 1.0))
        failed = f", {self.failed} failed" if self.failed else ""
        self.status.live(f"[{'#' * filled}{'-' * (self.width - filled)}] {self._where()}"
                         f"{failed}")

    def close(self):
        if self.status.is_live and self.total:
            self._draw()
            self.status.stream.write("\n")
            self.status.stream.flush()
        return time.perf_counter() - self.started
