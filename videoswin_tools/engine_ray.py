"""The Ray engine: the same job as a Ray Data pipeline (`pip install 'videoswin[ray]'`).

    groups of list entries (from_items)  ->  map: decode + preprocess (Ray tasks)
        ->  map_batches: a pool of actors, each holding the model  ->  results to the driver,
    which writes them (the same writers as the local engine).

A row is one group of videos (`videoswin_tools.jobs`), so each actor runs exactly the forward
passes the local engine runs and the results are the same bits. Ragged views and errors travel
as pickled bytes. Without `address` a Ray instance is started on this machine (or the one
already running in this process is used); with one, the job joins that cluster, whose nodes
need videoswin installed and the video files at the same paths.
"""

import logging

from videoswin_tools import jobs


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ImportError("--engine ray needs Ray Data: pip install 'videoswin[ray]' "
                          "(or pip install 'ray[data]')") from None
    return ray


def _decode_row(row, pipeline, origin):
    work = jobs.unpayload(row["work"])           # [(position, path)]
    done = {j: jobs.decode_or_error(path, pipeline, origin) for j, path in work}
    return {"group": row["group"], "size": row["size"], "decoded": jobs.payload(done)}


class _ModelActor:
    """Holds the model; turns decoded groups into outputs."""

    def __init__(self, spec):
        import os

        if spec.backend:
            os.environ["KERAS_BACKEND"] = spec.backend
        self.runner = jobs.build_runner(spec)

    def __call__(self, batch):
        import numpy as np

        results = []
        for size, data in zip(batch["size"], batch["decoded"]):
            decoded = jobs.unpayload(data)
            views = {j: v for j, (v, error) in decoded.items() if error is None}
            outputs = self.runner.run_group(views, int(size))
            results.append(jobs.payload({j: (outputs.get(j), error)
                                         for j, (_, error) in decoded.items()}))
        out = np.empty(len(results), dtype=object)
        out[:] = results
        return {"group": np.asarray(batch["group"]), "result": out}


def connect(address=None, num_cpus=None, backend=None):
    """Ray, initialised: joins `address`, else reuses this process's Ray or starts one here."""
    import os

    ray = _import_ray()
    if ray.is_initialized():
        return ray
    env = {"KERAS_BACKEND": backend or os.environ.get("KERAS_BACKEND", "torch")}
    kwargs = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
                  runtime_env={"env_vars": env})
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(num_cpus=num_cpus, **kwargs)
    return ray


def run(entries, skip, protocol, spec, group, address=None, actors=1, num_cpus=None,
        actor_cpus=0.5):
    """Yield `(entry, output, error)` for each entry not in `skip` (as `engine_local.run`),
    in list order."""
    ray = connect(address, num_cpus, spec.backend)
    rows = []
    batches = {}
    for g, batch in enumerate(jobs.groups(entries, group)):
        work = [(j, e.path) for j, e in enumerate(batch) if e.line not in skip]
        if work:
            rows.append({"group": g, "size": len(batch), "work": jobs.payload(work)})
            batches[g] = batch
    if not rows:
        return
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    dataset = ray.data.from_items(rows, override_num_blocks=len(rows))
    # Decoding runs as tasks of one CPU each; the model as an actor pool. Their different
    # resources keep Ray from fusing the two steps into the actors.
    dataset = dataset.map(_decode_row, fn_kwargs={"pipeline": protocol.pipeline,
                                                  "origin": protocol.origin}, num_cpus=1)
    dataset = dataset.map_batches(_ModelActor, fn_constructor_kwargs={"spec": spec},
                                  batch_size=1, batch_format="numpy",
                                  compute=ray.data.ActorPoolStrategy(size=actors),
                                  num_cpus=actor_cpus)
    for row in dataset.iter_rows():
        batch = batches[int(row["group"])]
        for j, (output, error) in sorted(jobs.unpayload(row["result"]).items()):
            yield batch[j], output, error
