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

from sortedcontainers import SortedList

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

#: the prefixes a replay writes that the audit compares with a node's store, every record, at
#: the end: the transaction index in log order, log nodes, the hash index, the children's slot
#: changes by block, state, the transaction index (the tree nodes, ``M``, are compared where the
#: store's nodes stand: see :func:`ledger.audit.records.compare_tree_nodes`)
PREFIXES = (b"K", b"L", b"N", b"R", b"S", b"X")


class ReplayKV:
    """An in-memory key-value store for a replay: cheap writes, ordered scans.

    Keys are grouped by their first two bytes. A group no scan has touched yet takes a new key
    by a list append: a replay writes many keys it never scans (log nodes, index entries, tree
    nodes). The first scan of a group sorts it once into a sorted list that every later write
    keeps in order (a logarithmic insertion), so a group scanned every block, such as the
    expiry index under ``Sx``, never costs a full sort per scan. Sorting it again at each scan
    made a replay slow down as the chain grew: a fifth of a 60,000-crossing audit went there.
    """

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}
        self._unscanned: dict[bytes, list[bytes]] = {}  # keys in write order; deleted ones linger
        self._scanned: dict[bytes, SortedList] = {}  # kept sorted, exactly the keys present
        self._prefixes: list[bytes] = []  # sorted group prefixes, of both kinds

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def write(self, changes: Mapping[bytes, bytes | None], *, sync: bool = True) -> None:
        data, scanned = self._data, self._scanned
        for key, value in changes.items():
            prefix = key[:2]
            if value is None:
                if data.pop(key, None) is not None:
                    group = scanned.get(prefix)
                    if group is not None:
                        group.remove(key)
                continue
            if key not in data:
                group = scanned.get(prefix)
                if group is not None:
                    group.add(key)
                else:
                    keys = self._unscanned.get(prefix)
                    if keys is None:
                        keys = self._unscanned[prefix] = []
                        bisect.insort(self._prefixes, prefix)
                    keys.append(key)
            data[key] = value

    def _sorted(self, prefix: bytes) -> SortedList:
        group = self._scanned.get(prefix)
        if group is None:
            data = self._data
            group = self._scanned[prefix] = SortedList({k for k in self._unscanned.pop(prefix) if k in data})
        return group

    def iterate(self, start: bytes, stop: bytes, *, reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        items: list[tuple[bytes, bytes]] = []
        data = self._data
        i = bisect.bisect_left(self._prefixes, start[:2])
        while i < len(self._prefixes) and self._prefixes[i] < stop:
            group = self._sorted(self._prefixes[i])
            items.extend((k, data[k]) for k in group.irange(start, stop, inclusive=(True, False)))
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
