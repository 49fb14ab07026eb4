"""The audit's progress bar on a terminal (it reads the clock: it lives outside ``ledger/``)."""

from __future__ import annotations

import time
from typing import TextIO

_WIDTH = 28


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class ProgressBar:
    """A one-line bar on a terminal: blocks done, transactions per second, time left.

    Progress is measured in transactions when the source says how many there are (the log
    size of its tip), else in blocks; redrawn at most ten times a second.
    """

    def __init__(self, stream: TextIO, *, label: str = "auditing") -> None:
        self.stream = stream
        self.label = label
        self.started = time.monotonic()
        self._last_draw = 0.0
        self._first: tuple[int, int] | None = None  # (height, log size) at the first update
        self._drawn = False

    def __call__(self, height: int, target: int, log_size: int, target_log: int | None) -> None:
        now = time.monotonic()
        if self._first is None:
            self._first = (height - 1, log_size)
            self.started = now
        if now - self._last_draw < 0.1 and height < target:
            return
        self._last_draw = now
        first_height, first_log = self._first
        elapsed = max(now - self.started, 1e-6)
        if target_log and target_log > first_log:
            done, total = log_size - first_log, target_log - first_log
        else:
            done, total = height - first_height, max(target - first_height, 1)
        fraction = min(max(done / total, 0.0), 1.0) if total > 0 else 1.0
        rate = (log_size - first_log) / elapsed
        eta = elapsed * (1 - fraction) / fraction if fraction > 0 else 0.0
        filled = int(fraction * _WIDTH)
        bar = "#" * filled + "-" * (_WIDTH - filled)
        line = (f"\r{self.label} [{bar}] {fraction * 100:5.1f}%  block {height:,}/{target:,}  "
                f"{rate:,.0f} tx/s  ETA {_duration(eta)} ")
        self.stream.write(line)
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
