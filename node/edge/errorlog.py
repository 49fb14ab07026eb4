"""Error logging that a flood of bad requests cannot amplify.

:class:`ThrottledLog` writes at most ``burst`` records per key in each ``window_s``; the rest
are counted and the count is reported with the next record that passes for that key. A key
names what failed (an exception type and a route), so a new kind of failure is always
logged at once while a repeated one costs a counter increment. Keys are bounded (LRU).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable


class ThrottledLog:
    def __init__(self, logger: logging.Logger, *, window_s: float = 60.0, burst: int = 3, max_keys: int = 256,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.window_s = window_s
        self.burst = burst
        self.max_keys = max_keys
        self._clock = clock
        #: key -> [window start, records in this window, suppressed since the last record]
        self._keys: OrderedDict[str, list] = OrderedDict()
        #: records suppressed, in all
        self.suppressed = 0

    def _admit(self, key: str) -> int | None:
        """None if this record is suppressed, else how many were suppressed before it."""
        now = self._clock()
        entry = self._keys.get(key)
        if entry is None:
            entry = [now, 0, 0]
            self._keys[key] = entry
            if len(self._keys) > self.max_keys:
                self._keys.popitem(last=False)
        else:
            self._keys.move_to_end(key)
        if now - entry[0] >= self.window_s:
            entry[0], entry[1] = now, 0
        if entry[1] >= self.burst:
            entry[2] += 1
            self.suppressed += 1
            return None
        entry[1] += 1
        skipped, entry[2] = entry[2], 0
        return skipped

    def log(self, level: int, key: str, message: str, *args, exc_info=None) -> bool:
        """Log unless ``key`` is over its budget; True if the record was written."""
        skipped = self._admit(key)
        if skipped is None:
            return False
        if skipped:
            message += f" ({skipped} similar suppressed)"
        self.logger.log(level, message, *args, exc_info=exc_info)
        return True

    def exception(self, key: str, message: str, *args, exc_info=True) -> bool:
        return self.log(logging.ERROR, key, message, *args, exc_info=exc_info)

    def warning(self, key: str, message: str, *args) -> bool:
        return self.log(logging.WARNING, key, message, *args)
