"""The state trees' nodes a store read or wrote lately, kept in memory.

A block's update of the state trees reads every node on the paths it changes, and most of them
were written by the blocks just before (a child's tree root, the top of the global tree).
Going to LevelDB for each (a lookup through the memtables and table files, checksums
verified) was about a quarter of the tree's time; from memory it costs a dictionary lookup.

Coherence does not rest on the callers:

* every write of tree nodes goes through :meth:`NodeCache.writing`, around the store's write:
  the positions written are dropped before it and take their new records after it (or stay
  dropped, if the write failed);
* a read that missed keeps what it read only if no write began or ended while it read, so a
  record read from the store just before a write can never be kept after it (on any thread).

Bounded: emptied when it holds ``limit`` records (about 1 KB each).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Mapping
from contextlib import contextmanager

DEFAULT_LIMIT = 32768  # about 30 MB of records


class NodeCache:
    __slots__ = ("_lock", "_nodes", "_version", "limit")

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self.limit = limit
        self._nodes: dict[bytes, bytes] = {}
        self._version = 0  # counts the starts and ends of writes
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._nodes)

    def get(self, position: bytes, read: Callable[[bytes], bytes | None]) -> bytes | None:
        """The node at ``position``: from memory, or from ``read`` (the store), then kept."""
        node = self._nodes.get(position)
        if node is not None:
            return node
        version = self._version
        node = read(position)
        if node is not None:
            with self._lock:
                if version == self._version:  # no write began or ended meanwhile
                    if len(self._nodes) >= self.limit:
                        self._nodes.clear()
                    self._nodes[position] = node
        return node

    @contextmanager
    def writing(self, nodes: Mapping[bytes, bytes | None]) -> Generator[None, None, None]:
        """Around the store's write of ``nodes`` (position -> record, None deletes)."""
        with self._lock:
            self._version += 1
            for position in nodes:
                self._nodes.pop(position, None)
        written = False
        try:
            yield
            written = True
        finally:
            with self._lock:
                self._version += 1
                if written and self.limit - len(self._nodes) < len(nodes):
                    self._nodes.clear()
                # again for every position: a read between the two ends may have kept the old
                for position, node in nodes.items():
                    if written and node is not None:
                        self._nodes[position] = node
                    else:
                        self._nodes.pop(position, None)

    def clear(self) -> None:
        """Forget everything (the store's files were replaced)."""
        with self._lock:
            self._version += 1
            self._nodes.clear()
