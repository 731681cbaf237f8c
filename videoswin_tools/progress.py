"""Progress on stderr for videoswin-predict: permanent lines, a live (overwritten) line on a
terminal, and counters with a rate and ETA.

NOTE: the lead's original of this file was overwritten by mistake by the issue-18 helper at
00:52 UTC; this is a reconstruction of the API videoswin_tools/predict.py uses (`Status`,
`Counter`, `duration`, `rate_and_eta`). Replace it with the original if you still have it.
"""

import sys
import time


def duration(seconds):
    """'0.42s', '12.3s', '4m05s', '1h02m'."""
    if seconds is None:
        return "?"
    if seconds < 60:
        return f"{seconds:.2f}s" if seconds < 1 else f"{seconds:.1f}s"
    if seconds < 3600:
        minutes, secs = divmod(int(round(seconds)), 60)
        return f"{minutes}m{secs:02d}s"
    hours, rest = divmod(int(round(seconds)), 3600)
    return f"{hours}h{rest // 60:02d}m"


def rate_and_eta(done, total, elapsed, unit):
    """'3.20 views/s' and, when `total` is known, ', ETA 4.1s'."""
    rate = done / elapsed if elapsed and elapsed > 0 else 0.0
    text = f"{rate:.2f} {unit}/s"
    if total is not None and rate > 0:
        text += f", ETA {duration((total - done) / rate)}"
    return text


class Status:
    """Lines on stderr. `line` prints a permanent line; `live` shows a transient one that the
    next call overwrites (only on a terminal; elsewhere live lines are dropped)."""

    def __init__(self, stream=None, tty=None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self._live = False

    def _clear(self):
        if self._live:
            self.stream.write("\r\x1b[2K")
            self._live = False

    def live(self, text):
        if not self.tty:
            return
        self._clear()
        self.stream.write(text)
        self.stream.flush()
        self._live = True

    def line(self, text):
        self._clear()
        self.stream.write(text + "\n")
        self.stream.flush()


class Counter:
    """`total` items of `unit` under `label`: `advance(n)` after each step; live rate and ETA."""

    def __init__(self, status, label, total, unit):
        self.status, self.label, self.total, self.unit = status, label, total, unit
        self.done = 0
        self.started = time.perf_counter()
        self._show()

    @property
    def elapsed(self):
        return time.perf_counter() - self.started

    def advance(self, n=1):
        self.done += n
        self._show()

    def _show(self):
        self.status.live(f"{self.label} {self.done}/{self.total} "
                         f"({rate_and_eta(self.done, self.total, self.elapsed, self.unit)})")
