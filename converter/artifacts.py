"""Writing a conversion's files: one output folder holds one conversion, all or nothing.

The public artifacts are plain files directly in OUTPUT_DIR (`<stem>.weights.h5`,
`<stem>.keras`, `<stem>_backbone.*`, `<stem>.parity.json`, `<stem>.parity.md`,
`manifest.json`), where consumers read them. `Output` writes them so that OUTPUT_DIR holds,
at every instant, either the complete previous set or the complete new one (or, for the
instant between two renames, does not exist):

- Lock. One conversion (or `videoswin-parity` run) per folder: an exclusive `flock` on
  `PARENT/.<name>.videoswin.lock` (beside the folder, so it covers the swap of the folder
  itself), holding the owner's pid. A second run fails at once (`OutputBusy`, naming the
  pid). The lock file stays behind (deleting a lock file races with its next opener); the
  kernel drops the lock when its holder dies, however it dies.
- Staging. The new set is built in `PARENT/.<name>.videoswin-work/new` (same filesystem,
  so renames are atomic), with the run's scratch files (a `--random-weights` checkpoint)
  beside it in `.../scratch`.
- Swap. Two renames in PARENT: OUTPUT_DIR -> `PARENT/.<name>.videoswin-old`, then
  staging -> OUTPUT_DIR. Between them OUTPUT_DIR does not exist at all; it never holds a
  mix of two sets. The backup then moves into the work folder, which is deleted. The old
  folder goes as a whole: files of a previous classifier conversion do not survive a
  backbone-only one.
- Recovery. A run killed at any point leaves only hidden names beside OUTPUT_DIR. The next
  run, once it holds the lock (so their owner is dead), restores the backup if OUTPUT_DIR
  is missing (killed between the renames), else drops it, and deletes the work folder
  (staging, scratch: often hundreds of MB), and the `.staging-*` folders that converters
  before this design left inside OUTPUT_DIR.
- Foreign files. The whole folder is replaced, so a folder holding files that no
  conversion wrote (not listed in its `manifest.json`, or no readable manifest at all) is
  refused (`ForeignFiles`) unless `force`, which deletes them with the old set.
- Disk space. `reserve(bytes)` compares an estimate (`bytes_needed`: the parameters x 4
  bytes x each weight copy written, plus a margin) with the free space before anything large
  is written, since h5py can crash the process on ENOSPC. ENOSPC while writing becomes
  `DiskFullError` too: the staged files are emptied before they are deleted (an HDF5 file
  left open by the failed write is flushed again at exit, and crashes the interpreter if
  that fails too) and h5py's "Exception ignored" reports about them are kept off stderr.
  Either way the staging folder is removed and OUTPUT_DIR is untouched.
- Mount points. A folder that cannot be renamed (a mount point, such as a container volume,
  or one whose parent is not writable) is updated in place instead: the lock
  (`.videoswin.lock`) and the work folder (`.videoswin-work`) live inside it, and the swap
  moves every old entry into `.videoswin-work/old`, then every new file into the folder,
  under a journal (`.videoswin-work/swap`) written before the first move. That swap is
  not atomic to a concurrent reader, but once the journal exists the new set is committed:
  a run killed during it is rolled forward by the next run.
"""

import errno
import os
import shutil
import stat
import sys
import time

from videoswin.core import naming
from videoswin.core.manifest import Manifest, ManifestError, describe

MIB = 1 << 20
MARGIN = 4 * MIB                  # HDF5 and zip metadata, reports, manifest
LOCK_NAME = ".videoswin.lock"     # in-place mode, inside the folder
WORK_NAME = ".videoswin-work"     # in-place mode, inside the folder
RESERVED = (LOCK_NAME, WORK_NAME)
# What converters before this design left inside an output folder.
LEGACY_LEFTOVERS = (".staging-", ".write-test-")


class OutputError(ValueError):
    """The output directory cannot take the artifacts."""


class OutputBusy(OutputError):
    """Another run holds the output folder's lock."""


class ForeignFiles(OutputError):
    """The output folder holds files that no conversion wrote."""


class DiskFullError(OutputError):
    """Not enough free space for the conversion; nothing was changed."""


def _between_renames():
    """Called between the two renames of a swap: a seam for fault-injection tests."""


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


def free_bytes(path):
    """Free bytes, for this user, on the filesystem of `path`."""
    return shutil.disk_usage(path).free


def bytes_needed(params, backbone_params, with_head=True, checkpoint=False):
    """Estimated bytes a conversion writes: float32 weights in each `.weights.h5` and each
    `.keras` (classifier and backbone), a fabricated checkpoint if `checkpoint`, a margin."""
    copies = 2 * 4 * backbone_params + (2 * 4 * params if with_head else 0)
    if checkpoint:
        copies += 4 * params
    return int(copies * 1.05) + MARGIN


def _mb(n):
    return f"{n / MIB:,.1f} MiB"


def _fsync_dir(path):
    try:
        handle = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def _remove(path):
    """Delete a file, link or folder tree if it exists."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


def _leftover(name):
    return name.startswith(LEGACY_LEFTOVERS)


def _listed_entry(folder, name, listed):
    """Whether the entry `name` of `folder` is one a conversion wrote: a file listed in its
    manifest, or a folder (an export such as `NAME_saved_model/`) holding at least one file,
    every file in it listed by its relative path and no links."""
    path = os.path.join(folder, name)
    if os.path.islink(path):
        return False
    if os.path.isfile(path):
        return name in listed
    if not os.path.isdir(path):
        return False
    found = False
    for root, dirs, files in os.walk(path):
        for entry in dirs + files:
            full = os.path.join(root, entry)
            if os.path.islink(full):
                return False
            if entry in files:
                if os.path.relpath(full, folder).replace(os.sep, "/") not in listed:
                    return False
                found = True
    return found


def _disk_full(err):
    """Whether `err`, or an exception it came from, is ENOSPC / EDQUOT (h5py puts the errno
    in its message only)."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(err)
        if ("No space left on device" in text or "Disk quota exceeded" in text
                or f"errno = {errno.ENOSPC}," in text):
            return True
        err = err.__cause__ or err.__context__
    return False


class Output:
    """The output folder of one run: locked, recovered, checked; staged, then swapped.

        with Output(output_dir, force=force) as out:
            out.reserve(bytes_needed(...))
            stage = out.stage()
            ...                      # write every file into stage
            out.commit()

    Leaving the block without `commit()`, or by an exception, changes nothing in
    OUTPUT_DIR; the staging folder is removed and the lock released. See the module
    docstring for the design.
    """

    def __init__(self, output_dir, force=False):
        self.output_dir = str(output_dir)               # as given, for messages
        self.target = os.path.realpath(self.output_dir)
        self.parent, self.name = os.path.split(self.target)
        self.force = force
        self.needed = self.free = None
        self.committed = False
        self._lock_handle = self._hooks = None

    # -- paths -----------------------------------------------------------------------------

    def _layout(self):
        self.in_place = os.path.isdir(self.target) and (
            os.path.ismount(self.target)
            or not os.access(self.parent, os.W_OK | os.X_OK))
        if self.in_place:
            self.lock_path = os.path.join(self.target, LOCK_NAME)
            self.work = os.path.join(self.target, WORK_NAME)
            self.old = os.path.join(self.work, "old")
            self.journal = os.path.join(self.work, "swap")
        else:
            self.lock_path = os.path.join(self.parent, f".{self.name}.videoswin.lock")
            self.work = os.path.join(self.parent, f".{self.name}.videoswin-work")
            self.old = os.path.join(self.parent, f".{self.name}.videoswin-old")
            self.journal = None
        self.new = os.path.join(self.work, "new")

    @property
    def disk(self):
        """The folder whose filesystem takes the writes."""
        return self.target if self.in_place else self.parent

    def _not_writable(self, err):
        return OutputError(f"output directory {self.output_dir!r} is not writable "
                           f"({getattr(err, 'strerror', None) or err}); choose another "
                           "with --output-dir.")

    # -- entering: lock, recover, check ----------------------------------------------------

    def __enter__(self):
        if os.path.lexists(self.target) and not os.path.isdir(self.target):
            raise self._not_writable(OSError(errno.ENOTDIR, "not a directory"))
        try:
            os.makedirs(self.parent, exist_ok=True)
        except OSError as err:
            raise self._not_writable(err) from None
        self._layout()
        self._lock()
        self._hook_unraisable()
        created = False
        try:
            self.recover()
            try:
                os.mkdir(self.work)
                created = True
            except OSError as err:
                if _disk_full(err):
                    raise self._full(err) from None
                raise self._not_writable(err) from None
            if not self.force:
                self._refuse_foreign()
        except BaseException:
            if created:
                _remove(self.work)
            self._unlock()
            raise
        return self

    def _hook_unraisable(self):
        """Keep h5py's complaints about staged files that a full disk cut short (printed as
        'Exception ignored in ... __dealloc__' while the error unwinds) off stderr: the
        error itself says it, in one line."""
        work = self.work

        def ours(value):
            return _disk_full(value) and work in str(value)

        previous, previous_except = sys.unraisablehook, sys.excepthook

        def unraisable_hook(unraisable):
            if not ours(unraisable.exc_value):
                previous(unraisable)

        def except_hook(kind, value, tb):       # Cython prints the traceback through it
            if not ours(value):
                previous_except(kind, value, tb)

        self._hooks = ((previous, unraisable_hook), (previous_except, except_hook))
        sys.unraisablehook, sys.excepthook = unraisable_hook, except_hook

    def _lock(self):
        try:
            import fcntl
        except ImportError:                                   # not POSIX: no locking
            return
        try:
            handle = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise self._not_writable(err) from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                os.close(handle)
                raise self._not_writable(err) from None
            holder = ""
            for _ in range(20):          # the holder writes its pid just after locking
                holder = os.pread(handle, 64, 0).decode("ascii", "replace").strip()
                if holder:
                    break
                time.sleep(0.05)
            os.close(handle)
            raise OutputBusy(f"{self.output_dir} is in use by another videoswin conversion "
                             f"(pid {holder or 'unknown'}, lock {self.lock_path}); wait for "
                             "it to finish, or choose another --output-dir.") from None
        os.ftruncate(handle, 0)
        os.pwrite(handle, f"{os.getpid()}\n".encode(), 0)
        self._lock_handle = handle

    def _unlock(self):
        if self._hooks:
            (unraisable, ours_unraisable), (excepthook, ours_except) = self._hooks
            if sys.unraisablehook is ours_unraisable:
                sys.unraisablehook = unraisable
            if sys.excepthook is ours_except:
                sys.excepthook = excepthook
            self._hooks = None
        if self._lock_handle is not None:
            os.close(self._lock_handle)                       # drops the flock
            self._lock_handle = None

    def recover(self):
        """Undo what a dead run left (call with the lock held): restore or drop a backup,
        roll an in-place swap forward, delete staging and scratch."""
        if self.in_place:
            if self.journal and os.path.isfile(self.journal):
                with open(self.journal, encoding="ascii") as handle:
                    phase = handle.read().strip()
                if phase in ("1", "2") and os.path.isdir(self.new):
                    self._finish_in_place(phase)
        elif os.path.lexists(self.old):
            if os.path.lexists(self.target):   # killed after the swap: the backup is stale
                os.makedirs(self.work, exist_ok=True)
                os.rename(self.old, os.path.join(self.work, "trash"))
            else:                              # killed between the renames: restore it
                os.rename(self.old, self.target)
                _fsync_dir(self.parent)
        _remove(self.work)
        if os.path.isdir(self.target):
            for name in os.listdir(self.target):
                if _leftover(name):
                    _remove(os.path.join(self.target, name))

    def foreign_files(self):
        """Entries of OUTPUT_DIR that no conversion wrote: everything not listed in a
        readable `manifest.json` (all of it without one), leftovers of ours excepted."""
        if not os.path.isdir(self.target):
            return []
        names = [n for n in sorted(os.listdir(self.target))
                 if n not in RESERVED and not _leftover(n)]
        try:
            listed = set(Manifest.read(self.target)["artifacts"]) | {naming.MANIFEST}
        except ManifestError:
            listed = set()
        return [n for n in names if not _listed_entry(self.target, n, listed)]

    def _refuse_foreign(self):
        foreign = self.foreign_files()
        if foreign:
            manifest = os.path.isfile(os.path.join(self.target, naming.MANIFEST))
            why = ("not listed in its manifest.json" if manifest
                   else "it has no manifest.json")
            count, them = ((f"{len(foreign)} files", "them") if len(foreign) > 1
                           else ("a file", "it"))
            raise ForeignFiles(
                f"{self.output_dir} holds {count} that no videoswin conversion wrote ({why}), "
                f"e.g. {foreign[0]!r}; a conversion replaces the whole folder: pass --force "
                f"to delete {them} with the old conversion, or choose another --output-dir.")

    # -- writing ---------------------------------------------------------------------------

    def reserve(self, needed):
        """Refuse with `DiskFullError` unless about `needed` bytes are free."""
        self.needed, self.free = int(needed), free_bytes(self.disk)
        if self.free < self.needed:
            raise DiskFullError(
                f"disk full: the conversion needs about {_mb(self.needed)} on the disk of "
                f"{self.output_dir}, but only {_mb(self.free)} is free; free some space or "
                f"choose another --output-dir ({self.output_dir} is unchanged).")

    def scratch(self):
        """A folder for the run's temporary files, removed with the run (or the next)."""
        path = os.path.join(self.work, "scratch")
        os.makedirs(path, exist_ok=True)
        return path

    def stage(self, from_existing=False, skip=()):
        """The staging folder the new set is written into. `from_existing`: start from
        (hard links to) every entry of OUTPUT_DIR but those named in `skip`."""
        if os.path.isdir(self.new):
            return self.new
        os.mkdir(self.new)
        if os.path.isdir(self.target):
            shutil.copymode(self.target, self.new)
        if from_existing and os.path.isdir(self.target):
            for name in sorted(os.listdir(self.target)):
                if name in RESERVED or _leftover(name) or name in skip:
                    continue
                source, copy = os.path.join(self.target, name), os.path.join(self.new, name)
                if os.path.islink(source):
                    os.symlink(os.readlink(source), copy)
                elif os.path.isdir(source):
                    shutil.copytree(source, copy, symlinks=True, copy_function=_link_or_copy)
                else:
                    _link_or_copy(source, copy)
        return self.new

    def commit(self):
        """Replace OUTPUT_DIR by the staging folder as a whole."""
        stage = self.stage()
        _fsync_dir(stage)
        if self.in_place:
            os.makedirs(self.old, exist_ok=True)
            _write_durably(self.journal, "1")
            self.committed = True                  # from here on, rolled forward
            self._finish_in_place("1")
            return
        existed = os.path.lexists(self.target)
        if existed:
            os.rename(self.target, self.old)
        _between_renames()
        os.rename(stage, self.target)
        self.committed = True
        _fsync_dir(self.parent)
        if existed:
            try:
                os.rename(self.old, os.path.join(self.work, "trash"))
            except OSError:
                pass                               # the next run drops it

    def _finish_in_place(self, phase):
        if phase == "1":
            for name in os.listdir(self.target):
                if name not in RESERVED:
                    os.replace(os.path.join(self.target, name), os.path.join(self.old, name))
            _write_durably(self.journal, "2")
            _between_renames()
        for name in os.listdir(self.new):
            os.replace(os.path.join(self.new, name), os.path.join(self.target, name))
        _fsync_dir(self.target)
        os.remove(self.journal)

    # -- leaving ---------------------------------------------------------------------------

    def __exit__(self, kind, err, tb):
        try:
            full = err is not None and _disk_full(err)
            if full:
                _empty_staged(self.work)
            if err is not None and not self.committed:
                self._roll_back()
            elif self.in_place and self.journal and os.path.isfile(self.journal):
                self.recover()                     # a failed in-place swap: roll forward
            _remove(self.work)
            if full and not isinstance(err, DiskFullError):
                raise self._full(err) from None
        finally:
            self._unlock()
        return False

    def _roll_back(self):
        if not self.in_place and os.path.lexists(self.old) and not os.path.lexists(self.target):
            os.rename(self.old, self.target)

    def _full(self, err):
        needed = (f"; the conversion needs about {_mb(self.needed)}, {_mb(self.free)} was "
                  "free when it began" if self.needed else "")
        return DiskFullError(f"disk full: ran out of space writing the conversion to "
                             f"{self.output_dir}{needed}; free some space or choose another "
                             f"--output-dir ({self.output_dir} is unchanged).")

    def nearly_full(self):
        """Whether the disk is all but full (for writers that do not say ENOSPC)."""
        try:
            return shutil.disk_usage(self.disk).free < MIB
        except OSError:
            return False


def _empty_staged(folder):
    """Truncate the files under `folder` that nothing else links to (the staged copies of a
    failed run; links to a kept artifact are left alone).

    After an ENOSPC, h5py keeps the file open with unflushed metadata: the interpreter's
    teardown flushes it, fails again and crashes (a segmentation fault), and asking HDF5
    about its open files can crash too. Emptied (the space comes back only once the file
    is closed, not when it is unlinked), the flush has room."""
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            try:
                info = os.lstat(path)
                if stat.S_ISREG(info.st_mode) and info.st_nlink == 1:
                    os.truncate(path, 0)
            except OSError:
                pass


def _link_or_copy(source, target):
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
    return target


def _write_durably(path, text):
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="ascii") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(os.path.dirname(path))


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


def exit_on_disk_full(message, code=1):
    """Print `message` and end the process at once: after an ENOSPC, h5py objects left
    open crash the interpreter's normal teardown (a segmentation fault)."""
    print(message, file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(code)
