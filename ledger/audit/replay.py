"""The auditor's own re-execution of the chain, from genesis or from its last checkpoint.

A :class:`ReplayStore` is a :class:`ledger.chain.ChainView` the auditor builds itself: the state,
the global log's nodes, the transaction index and the header-hash index, exactly as a node's
store keeps them (same keys, see :mod:`ledger.storage.chainstore`), but without the blocks.
Keeping the same layout lets a data-directory audit compare the node's records with the
auditor's one prefix at a time.

Writes are batched per block and not synced: a replay is rebuilt, never recovered, and a
checkpoint records a digest of the whole replay so a damaged one is refused.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterator, Mapping

from ledger.chain import ExecutedBlock
from ledger.genesis import Genesis
from ledger.rules.validators import validator_set_at
from ledger.state.view import prefix_end
from ledger.storage.chainstore import (  # noqa: F401  (re-exported for the audit modules)
    ChainStore,
    encoded_locations,
    expected_location,
    log_key,
)
from ledger.storage.kv import KV
from ledger.validators import ValidatorSet

#: the prefixes a replay writes, in key order; the audit compares these with a node's store
PREFIXES = (b"L", b"N", b"S", b"X")


class ReplayKV:
    """An in-memory key-value store for a replay: O(1) writes, ordered scans sorted lazily.

    Keys are grouped by their first two bytes; a group is sorted only when scanned after a
    write made it unsorted. A replay scans few groups (validator sets, expiries, consents) and
    writes once per block, so nearly every write costs a dict update and a list append,
    where a single sorted list would move half of it on every new key.
    """

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}
        self._groups: dict[bytes, list[bytes]] = {}
        self._unsorted: set[bytes] = set()
        self._prefixes: list[bytes] = []  # sorted group prefixes

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def write(self, changes: Mapping[bytes, bytes | None], *, sync: bool = True) -> None:
        data, groups = self._data, self._groups
        for key, value in changes.items():
            prefix = key[:2]
            if value is None:
                if data.pop(key, None) is not None:
                    self._unsorted.add(prefix)  # rebuilt without it when next scanned
                continue
            if key not in data:
                group = groups.get(prefix)
                if group is None:
                    group = groups[prefix] = []
                    bisect.insort(self._prefixes, prefix)
                if group and key < group[-1]:
                    self._unsorted.add(prefix)
                group.append(key)
            data[key] = value

    def _sorted(self, prefix: bytes) -> list[bytes]:
        group = self._groups[prefix]
        if prefix in self._unsorted:
            group = self._groups[prefix] = sorted({k for k in group if k in self._data})
            self._unsorted.discard(prefix)
        return group

    def iterate(self, start: bytes, stop: bytes, *, reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        items: list[tuple[bytes, bytes]] = []
        i = bisect.bisect_left(self._prefixes, start[:2])
        while i < len(self._prefixes) and self._prefixes[i] < stop:
            group = self._sorted(self._prefixes[i])
            lo, hi = bisect.bisect_left(group, start), bisect.bisect_left(group, stop)
            items.extend((k, self._data[k]) for k in group[lo:hi])
            i += 1
        if reverse:
            items.reverse()
        return iter(items)

    def close(self) -> None:
        pass


class OverlayKV:
    """Writes kept in memory over a store read as it is: an incremental audit replays on top of
    a checkpoint's replay state without touching it (it stays valid if this audit fails)."""

    def __init__(self, base: KV) -> None:
        self.base = base
        self.changes: dict[bytes, bytes | None] = {}
        self._keys: list[bytes] = []  # sorted keys of ``changes``

    def get(self, key: bytes) -> bytes | None:
        if key in self.changes:
            return self.changes[key]
        return self.base.get(key)

    def iterate(self, start: bytes, stop: bytes, *, reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        lo, hi = bisect.bisect_left(self._keys, start), bisect.bisect_left(self._keys, stop)
        mine = [(k, self.changes[k]) for k in self._keys[lo:hi]]
        theirs = self.base.iterate(start, stop, reverse=reverse)
        if reverse:
            mine.reverse()
        order = (lambda a, b: a > b) if reverse else (lambda a, b: a < b)
        i, other = 0, next(theirs, None)
        while i < len(mine) or other is not None:
            if other is None or (i < len(mine) and (mine[i][0] == other[0] or order(mine[i][0], other[0]))):
                key, value = mine[i]
                i += 1
                if other is not None and other[0] == key:
                    other = next(theirs, None)
                if value is not None:
                    yield key, value
            else:
                yield other
                other = next(theirs, None)

    def write(self, changes: Mapping[bytes, bytes | None], *, sync: bool = True) -> None:
        for key, value in changes.items():
            if key not in self.changes:
                bisect.insort(self._keys, key)
            self.changes[key] = value

    def close(self) -> None:
        self.base.close()


class ReplayStore(ChainStore):
    """State, log and indexes re-derived by the auditor (see the module doc): a chain store
    that keeps no blocks and does not sync."""

    def __init__(self, kv: KV) -> None:
        super().__init__(kv, sync=False, keep_blocks=False)

    @classmethod
    def from_genesis(cls, kv: KV, genesis: Genesis) -> ReplayStore:
        """Start a replay at height 0 in an empty key-value store."""
        store = cls(kv)
        store.initialize(genesis)
        return store

    # ---- reads
    def validators_at(self, height: int) -> ValidatorSet:
        return validator_set_at(self.state, height)

    def entries(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Every stored record whose key starts with ``prefix``, in key order."""
        return self.kv.iterate(prefix, prefix_end(prefix))

    # ---- writes
    def record(self, executed: ExecutedBlock, locations: list[bytes] | None = None) -> None:
        """Record a block the auditor checked: its state writes, log nodes and index entries
        (``locations``: its :func:`encoded_locations`, if already computed)."""
        self.commit_block(executed, None, locations=locations)

    def digest(self) -> bytes:
        """SHA-256 over every record, in key order: what a checkpoint pins its replay with."""
        h = hashlib.sha256(b"custos/audit-replay/1")
        for key, value in self.kv.iterate(b"", b"\xff" * 64):
            h.update(len(key).to_bytes(4, "big") + key + len(value).to_bytes(4, "big") + value)
        return h.digest()

    def close(self) -> None:
        self.kv.close()
