"""Give memory back after a burst: large buffers come from ``mmap``, not the heap.

A flood of uploads makes the event loop read many socket buffers of up to 256 KiB. glibc's
malloc serves blocks that large from ``mmap`` at first, but raises its threshold each time one
is freed, so later ones come from the heap, where the memory stays after it is freed: a node
that survived a flood kept its peak resident size (about 100 MB more after 30 s of abandoned
uploads). A fixed threshold of 64 KiB keeps those buffers in ``mmap`` and returns them to the
system when they are freed, at the cost of a system call per large allocation.

Elsewhere than glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

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
