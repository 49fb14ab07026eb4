"""Ordered key-value views of the state, and the write overlays blocks and transactions use.

A rule reads and writes through an :class:`Overlay`. Each transaction gets its own overlay on
top of the block's, so a rejected transaction leaves no trace; the block's overlay becomes the
single write batch that storage commits together with the block.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Protocol


class StateReader(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def scan(self, start: bytes, stop: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Entries with start <= key < stop, in key order."""
        ...

    def last(self, start: bytes, stop: bytes) -> tuple[bytes, bytes] | None:
        """The entry with the greatest key in start <= key < stop, or None: the last of
        :meth:`scan`, without reading the others."""
        ...


class StoredState(StateReader, Protocol):
    """Committed state: its records and the nodes of its authenticated trees."""

    def tree_node(self, position: bytes) -> bytes | None:
        """A stored node of the authenticated state's trees (:mod:`ledger.state.authenticated`)."""
        ...


class Overlay:
    """Buffered writes over a reader. ``None`` as a value marks a deletion.

    The written keys are also kept sorted as they arrive, so a prefix scan costs the size of
    the range, not of every write in the block.
    """

    __slots__ = ("_keys", "base", "writes")

    def __init__(self, base: StateReader) -> None:
        self.base = base
        self.writes: dict[bytes, bytes | None] = {}
        self._keys: list[bytes] = []

    def get(self, key: bytes) -> bytes | None:
        if key in self.writes:
            return self.writes[key]
        return self.base.get(key)

    def put(self, key: bytes, value: bytes | None) -> None:
        if key not in self.writes:
            bisect.insort(self._keys, key)
        self.writes[key] = value

    def delete(self, key: bytes) -> None:
        self.put(key, None)

    def scan(self, start: bytes, stop: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Merge the base's entries with the buffered writes, in key order."""
        keys = self._keys
        low, high = bisect.bisect_left(keys, start), bisect.bisect_left(keys, stop)
        if low == high:  # nothing buffered in the range (the usual case): the base's entries
            return self.base.scan(start, stop)
        return self._merged(keys[low:high], start, stop)

    def _merged(self, mine: list[bytes], start: bytes, stop: bytes) -> Iterator[tuple[bytes, bytes]]:
        base_iter = self.base.scan(start, stop)
        pending = next(base_iter, None)
        j = 0
        while pending is not None or j < len(mine):
            if j < len(mine) and (pending is None or mine[j] <= pending[0]):
                k = mine[j]
                j += 1
                if pending is not None and pending[0] == k:
                    pending = next(base_iter, None)
                v = self.writes[k]
                if v is not None:
                    yield k, v
            else:
                if pending[0] not in self.writes:  # type: ignore[index]
                    yield pending  # type: ignore[misc]
                pending = next(base_iter, None)

    def last(self, start: bytes, stop: bytes) -> tuple[bytes, bytes] | None:
        keys, writes = self._keys, self.writes
        low, i = bisect.bisect_left(keys, start), bisect.bisect_left(keys, stop)
        mine: tuple[bytes, bytes] | None = None  # the greatest entry buffered here (not a deletion)
        while i > low and mine is None:
            i -= 1
            value = writes[keys[i]]
            if value is not None:
                mine = keys[i], value
        # the base's greatest key from there on, unless buffered here (then written or deleted)
        floor = start if mine is None else mine[0]
        below = self.base.last(floor, stop)
        while below is not None and below[0] in writes:
            below = self.base.last(floor, below[0])
        return below if below is not None else mine

    def merge_into(self, parent: Overlay) -> None:
        """``parent.put`` of every write here: in one pass (a transaction's writes into its
        block's), unless the parent's class watches its writes through ``put``."""
        if type(parent).put is not Overlay.put:
            for key, value in self.writes.items():
                parent.put(key, value)
            return
        theirs, keys, insort = parent.writes, parent._keys, bisect.insort
        for key in self._keys:
            if key not in theirs:
                insort(keys, key)
        theirs.update(self.writes)

    def sorted_writes(self) -> list[tuple[bytes, bytes | None]]:
        return [(k, self.writes[k]) for k in self._keys]


class ReadCache:
    """A committed state read through for one block's execution, each key fetched once.

    The committed state does not change while a block executes (the block's own writes sit in
    the overlays above), so a read can be remembered: a block of crossings reads its terminals'
    roles, their revocation records and their posts once each instead of once a transaction.
    Scans and tree nodes are passed through.
    """

    __slots__ = ("_read", "base")

    def __init__(self, base: StoredState) -> None:
        self.base = base
        self._read: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        try:
            return self._read[key]
        except KeyError:
            value = self._read[key] = self.base.get(key)
            return value

    def scan(self, start: bytes, stop: bytes) -> Iterator[tuple[bytes, bytes]]:
        return self.base.scan(start, stop)

    def last(self, start: bytes, stop: bytes) -> tuple[bytes, bytes] | None:
        return self.base.last(start, stop)

    def tree_node(self, position: bytes) -> bytes | None:
        return self.base.tree_node(position)


def scan_prefix(reader: StateReader, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
    return reader.scan(prefix, prefix_end(prefix))


def prefix_end(prefix: bytes) -> bytes:
    """The smallest key greater than every key that starts with ``prefix``."""
    p = bytearray(prefix)
    while p and p[-1] == 0xFF:
        p.pop()
    if not p:
        return b"\xff" * (len(prefix) + 1)
    p[-1] += 1
    return bytes(p)
