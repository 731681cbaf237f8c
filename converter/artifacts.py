"""Writing a conversion's files: the Keras artifacts, hashed and settled, in a staging folder
that moves into place only on success."""

import contextlib
import os
import shutil
import tempfile

from videoswin.core import naming
from videoswin.core.manifest import describe


class OutputError(ValueError):
    """The output directory cannot take the artifacts."""


def settle(path):
    """Flush a finished file to disk and drop it from the page cache.

    A conversion writes GBs; settled one by one, its artifacts hold about one file's
    worth of page cache instead of all of it (new pages are slow to come by under memory
    pressure, in a VM especially), and they are durable before they move into place.
    """
    handle = os.open(path, os.O_RDWR)
    try:
        getattr(os, "fdatasync", os.fsync)(handle)
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(handle, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(handle)


def check_writable(output_dir):
    """Create `output_dir` if needed and prove a file can be written there."""
    try:
        os.makedirs(output_dir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=output_dir, prefix=".write-test-"):
            pass
    except OSError as err:
        raise OutputError(f"output directory {output_dir!r} is not writable "
                          f"({err.strerror or err}); choose another with --output-dir.") from None


@contextlib.contextmanager
def staging(output_dir):
    """A temporary folder beside `output_dir`; its files move into place only on success.

    On an exception nothing reaches `output_dir` and the staging folder is removed.
    """
    check_writable(output_dir)
    stage = tempfile.mkdtemp(prefix=".staging-", dir=output_dir)
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    else:
        for name in sorted(os.listdir(stage)):
            os.replace(os.path.join(stage, name), os.path.join(output_dir, name))
        shutil.rmtree(stage, ignore_errors=True)


def save_models(stage, stem, classifier, backbone):
    """Save `.weights.h5` and `.keras` for the classifier (if any) and the backbone.

    Keras serialises the weights once; the backbone's `.weights.h5` is copied out of the
    classifier's and each `.keras` zips its `.weights.h5`. Each file is hashed and settled
    once nothing reads it any more, on a second thread while the next one is written (both
    mostly wait outside the GIL). Returns `describe` of each artifact, in
    `naming.model_files` order.
    """
    from concurrent.futures import ThreadPoolExecutor

    from videoswin.model import keras_private

    files = naming.model_files(stem, classifier is not None)
    paths = dict(zip(files, (os.path.join(stage, name) for name in files)))

    def finish(name, digest=None):
        described = describe(paths[name], digest)
        settle(paths[name])
        return name, described

    done = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="settle") as worker:
        if classifier is not None:
            weights, archive = files[:2]
            classifier.save_weights(paths[weights])
            digest = keras_private.write_archive(classifier, paths[weights], paths[archive])
            done.append(worker.submit(finish, archive))
            keras_private.copy_layer_weights(paths[weights], backbone.name, paths[files[2]])
            done.append(worker.submit(finish, weights, digest))
        weights, archive = files[-2:]
        if classifier is None:
            backbone.save_weights(paths[weights])
        digest = keras_private.write_archive(backbone, paths[weights], paths[archive])
        done += [worker.submit(finish, weights, digest), worker.submit(finish, archive)]
    described = dict(future.result() for future in done)
    return {name: described[name] for name in files}
