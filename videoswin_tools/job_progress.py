"""Progress of a dataset job on stderr: a bar with videos/s and ETA on a terminal, one line per
video otherwise (logs, CI)."""

import sys
import time


def _clock(seconds):
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "--:--"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else \
        f"{rest // 60:02d}:{rest % 60:02d}"


class Progress:
    """`update(name, error=None)` once per finished video; `close()` at the end.

    `total` counts the videos this run does; `done` those already finished by an earlier run
    (`--resume`), shown but not counted in the rate."""

    def __init__(self, total, done=0, stream=None, tty=None, width=30):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.total, self.done, self.count, self.failed = total, done, 0, 0
        self.width = width
        self.started = time.perf_counter()
        self._last_draw = 0.0

    def rate(self):
        elapsed = time.perf_counter() - self.started
        return self.count / elapsed if elapsed > 0 and self.count else 0.0

    def eta(self):
        rate = self.rate()
        return (self.total - self.count) / rate if rate else None

    def update(self, name, error=None):
        self.count += 1
        self.failed += error is not None
        if self.tty:
            now = time.perf_counter()
            if now - self._last_draw > 0.1 or self.count == self.total:
                self._last_draw = now
                self._draw()
        else:
            status = f"  FAILED: {error}" if error is not None else ""
            self.stream.write(f"[{self.done + self.count}/{self.done + self.total}] {name}  "
                              f"{self.rate():.2f} videos/s  ETA {_clock(self.eta())}{status}\n")
            self.stream.flush()

    def _draw(self):
        fraction = self.count / self.total if self.total else 1.0
        filled = int(self.width * fraction)
        bar = "#" * filled + "-" * (self.width - filled)
        failed = f"  {self.failed} failed" if self.failed else ""
        self.stream.write(f"\r[{bar}] {self.done + self.count}/{self.done + self.total}  "
                          f"{self.rate():.2f} videos/s  ETA {_clock(self.eta())}{failed}  ")
        self.stream.flush()

    def close(self):
        if self.tty and self.total:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()
        return time.perf_counter() - self.started
