"""Result folders of dataset jobs: a lock, `job.json`, and append-only JSON-lines files that
survive a kill.

- One run per folder: an exclusive `flock` on `OUT/.videoswin-job.lock`, dropped by the kernel
  however the holder dies. A second run is refused, naming the holder's pid.
- `job.json` says what the folder's results are of (model, protocol, list, shard, options);
  `--resume` continues only the same job.
- Rows are appended as whole lines, each write flushed and fsynced. A run killed mid-write
  leaves at most a torn last line: `JsonLines.recover` drops it (and truncates the file to the
  rows it keeps). At the end the file is rewritten in list order through a temporary file and
  a rename, so an interrupted and resumed run ends with the same bytes as an uninterrupted one.
"""

import json
import os

from videoswin.core.manifest import write_text_atomic

LOCK_NAME = ".videoswin-job.lock"
JOB_FILE = "job.json"


class JobError(Exception):
    """A result folder that cannot be used as asked; the message says why and what to do."""


class FolderLock:
    """An exclusive lock on a result folder (created if missing)."""

    def __init__(self, folder):
        self.folder = os.fspath(folder)
        self.path = os.path.join(self.folder, LOCK_NAME)
        self.handle = None

    def __enter__(self):
        try:
            os.makedirs(self.folder, exist_ok=True)
        except OSError as err:
            raise JobError(f"--output {self.folder}: cannot create it "
                           f"({err.strerror or err})") from None
        try:
            import fcntl
        except ImportError:                      # not POSIX: no locking
            return self
        handle = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(handle, 32, 0).decode(errors="replace").strip()
            os.close(handle)
            raise JobError(f"--output {self.folder}: another run is writing there (pid "
                           f"{holder or 'unknown'}, lock {self.path}); wait for it or choose "
                           "another folder") from None
        os.ftruncate(handle, 0)
        os.pwrite(handle, f"{os.getpid()}\n".encode(), 0)
        self.handle = handle
        return self

    def __exit__(self, *exc):
        if self.handle is not None:
            os.close(self.handle)                # drops the flock
            self.handle = None


def start(folder, job, resume, files):
    """Check `folder` for a run of `job` (a dict); write `job.json` on a fresh start.

    Without `resume`, a folder that already holds any of `files` (or a different job) is
    refused; with it, the recorded job must equal `job`."""
    path = os.path.join(folder, JOB_FILE)
    existing = [name for name in files if os.path.exists(os.path.join(folder, name))]
    if os.path.exists(path):
        try:
            with open(path, encoding="utf-8") as handle:
                recorded = json.load(handle)
        except (OSError, ValueError) as err:
            raise JobError(f"{path}: unreadable ({err}); remove the folder's results or "
                           "choose another --output") from None
        if resume:
            if recorded != _plain(job):
                changed = sorted(k for k in set(recorded) | set(job)
                                 if recorded.get(k) != _plain(job).get(k))
                raise JobError(f"--resume: {folder} holds results of a different job "
                               f"({', '.join(changed)} differ); choose another --output")
            return
        existing.append(JOB_FILE)
    if existing and not resume:
        raise JobError(f"--output {folder} already holds {', '.join(sorted(existing))}; pass "
                       "--resume to continue that run, or choose another folder")
    if existing and resume:
        raise JobError(f"--resume: {folder} has results but no {JOB_FILE}; choose another "
                       "--output")
    write_text_atomic(path, json.dumps(_plain(job), indent=2, sort_keys=True) + "\n")


def _plain(data):
    return json.loads(json.dumps(data))


class JsonLines:
    """An append-only JSON-lines file of result rows, each with an integer `line` key."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self.handle = None

    def recover(self):
        """The complete rows already in the file ({line: row}); a torn or unparsable tail
        is cut off the file."""
        rows, keep = {}, 0
        if not os.path.exists(self.path):
            return rows
        with open(self.path, "rb") as handle:
            data = handle.read()
        for raw in data.splitlines(keepends=True):
            if not raw.endswith(b"\n"):
                break
            try:
                row = json.loads(raw)
            except ValueError:
                break
            if not isinstance(row, dict) or not isinstance(row.get("line"), int):
                break
            rows[row["line"]] = row
            keep += len(raw)
        if keep != len(data):
            with open(self.path, "r+b") as handle:
                handle.truncate(keep)
                os.fsync(handle.fileno())
        return rows

    def resumed(self, entries):
        """`recover()`, checked against the job's `entries`: each row kept must be the video
        its line holds now, else `JobError`."""
        rows = self.recover()
        by_line = {e.line: e for e in entries}
        for line, row in rows.items():
            if line not in by_line or by_line[line].video != row.get("video"):
                raise JobError(f"--resume: {self.path} row for line {line} does not match "
                               "the inputs; choose another --output")
        return rows

    def append(self, rows):
        """Append rows as whole lines in one write, then fsync."""
        if self.handle is None:
            self.handle = open(self.path, "ab")
        text = "".join(dumps(row) + "\n" for row in rows).encode("utf-8")
        self.handle.write(text)
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def close(self):
        if self.handle is not None:
            self.handle.close()
            self.handle = None

    def finish(self, rows):
        """Rewrite the file as `rows` sorted by line, atomically."""
        self.close()
        ordered = [rows[line] for line in sorted(rows)]
        write_text_atomic(self.path, "".join(dumps(row) + "\n" for row in ordered))


def read_rows(path):
    """Every row of a finished JSON-lines file, {line: row}; errors name the file and line."""
    rows = {}
    try:
        with open(path, encoding="utf-8") as handle:
            for number, text in enumerate(handle, 1):
                try:
                    row = json.loads(text)
                except ValueError as err:
                    raise JobError(f"{path}:{number}: not JSON ({err})") from None
                rows[row["line"]] = row
    except OSError as err:
        raise JobError(f"{path}: cannot be read ({err.strerror or err})") from None
    return rows


def dumps(row):
    return json.dumps(row, ensure_ascii=False, allow_nan=False)


def write_json(path, data):
    write_text_atomic(path, json.dumps(data, indent=2, allow_nan=False) + "\n")
