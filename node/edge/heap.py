"""Give memory back after a burst: large buffers come from ``mmap``, not the heap.

A flood of uploads makes the event loop read many socket buffers of up to 256 KiB. glibc's
malloc serves blocks that large from ``mmap`` at first, but raises its threshold each time one
is freed, so later ones come from the heap, where the memory stays after it is freed: a node
that survived a flood kept its peak resident size (about 100 MB more after 30 s of abandoned
uploads). A fixed threshold of 64 KiB keeps those buffers in ``mmap`` and returns them to the
system when they are freed, at the cost of a system call per large allocation.

Elsewhere than glibc this does nothing.

:class:`ChurnCollector` frees what closed connections leave in reference cycles.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger("custos.edge")

M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 64 * 1024


def return_large_buffers() -> bool:
    """Fix glibc's mmap threshold; True if it was set."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    if not ok:
        log.debug("mallopt(M_MMAP_THRESHOLD) was refused")
    return ok


class ChurnCollector:
    """A full garbage collection after every ``every`` connections a listener opened.

    A connection the node closes (a stranger's refused p2p handshake, an evicted idle caller)
    leaves reference cycles (its protocol, websocket, tasks and exceptions) that only the
    collector frees. It has lived long enough to reach the oldest generation, which the node's
    thresholds (:func:`node.runner.run`) collect rarely: measured, a node that refused 10,000
    handshakes held 250,000 such objects (70 MB) until a full pass. Honest callers keep their
    connections, so this runs only under churn, at most once per ``step``.
    """

    def __init__(self, opened: Callable[[], int], *, every: int = 2000,
                 collect: Callable[[], int] = gc.collect) -> None:
        self._opened = opened
        self.every = every
        self._collect = collect
        self._last = opened()
        #: full collections made, and what they found
        self.collections = 0
        self.found = 0
        #: the longest collection, in seconds (the event loop waits for it)
        self.longest_s = 0.0

    def step(self) -> bool:
        """Collect if ``every`` connections opened since the last collection; True if it did."""
        now = self._opened()
        if now - self._last < self.every:
            return False
        self._last = now
        started = time.perf_counter()
        self.found += self._collect()
        self.longest_s = max(self.longest_s, time.perf_counter() - started)
        self.collections += 1
        return True
