"""The node's access log: every read of a child's records it served, in an RFC 6962 tree.

Its own LevelDB beside the chain (``DATA_DIR/access-log``)::

    b"s"                               the log's size (8 bytes, big-endian)
    b"e" + index (8)                   -> the entry's canonical bytes (node.access.entry)
    b"n" + level (1) + index (8)       -> a complete subtree's hash (ledger.merkle.MerkleLog)
    b"c" + child tag (32) + index (8)  -> b"" (the entries of one child, for queries)

Appending writes entries, tree nodes, index and size in one batch, before the read is
served, without fsync; :meth:`AccessLog.sync` makes everything so far durable and runs before
a checkpoint is signed, so the chain never commits a tree head the disk may lose.

:meth:`AccessLog.verify` recomputes the tree from the entries and compares it with the stored
tree and with the checkpoint the chain holds: an entry edited on disk, removed or reordered is
found, whether or not the tree nodes were recomputed to match (the chain's root cannot be). A
damaged log refuses new entries, so the node serves no read it cannot account for.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

from ledger.errors import CustosError, StorageError
from ledger.merkle import MemoryNodeStore, MerkleLog, leaf_hash
from ledger.storage.kv import KV, LevelKV, MemoryKV
from node.access.entry import Entry

log = logging.getLogger("custos.access-log")

_SIZE = b"s"
_ENTRY = b"e"
_NODE = b"n"
_CHILD = b"c"
_SYNCED = b"y"


def _be(n: int) -> bytes:
    return n.to_bytes(8, "big")


class AccessLogDamaged(CustosError):
    """The log on disk does not match itself or the chain's checkpoint of it."""

    code = "access-log-damaged"


class AccessLog:
    def __init__(self, kv: KV) -> None:
        self.kv = kv
        raw = kv.get(_SIZE)
        self._tree = MerkleLog(self._node, int.from_bytes(raw, "big") if raw else 0)
        self.damage: str | None = None

    @classmethod
    def open(cls, path: Path) -> AccessLog:
        return cls(LevelKV(path))

    @classmethod
    def memory(cls) -> AccessLog:
        return cls(MemoryKV())

    def close(self) -> None:
        self.kv.close()

    def _node(self, level: int, index: int) -> bytes | None:
        return self.kv.get(_NODE + bytes([level]) + _be(index))

    # ------------------------------------------------------------------ writing
    @property
    def size(self) -> int:
        return self._tree.size

    def append(self, entries: Sequence[Entry]) -> int:
        """Add entries (in order); returns the index of the first. Raises
        :class:`AccessLogDamaged` on a damaged log, :class:`StorageError` if the disk refuses."""
        if self.damage is not None:
            raise AccessLogDamaged(self.damage)
        first = self._tree.size
        batch: dict[bytes, bytes | None] = {}
        for entry in entries:
            index = self._tree.size
            raw = entry.raw
            batch[_ENTRY + _be(index)] = raw
            if entry.child is not None:
                batch[_CHILD + entry.child + _be(index)] = b""
            self._tree.append(leaf_hash(raw))
        for (level, index), value in self._tree.pending().items():
            batch[_NODE + bytes([level]) + _be(index)] = value
        batch[_SIZE] = _be(self._tree.size)
        try:
            self.kv.write(batch, sync=False)
        except StorageError:
            self._tree = MerkleLog(self._node, first)  # what the disk holds
            raise
        self._tree.take_pending()
        return first

    def sync(self) -> None:
        """Make every entry written so far durable: a synchronous write syncs the store's log
        with all earlier writes (safe from another thread: it writes only its own marker)."""
        self.kv.write({_SYNCED: b""}, sync=True)

    # ------------------------------------------------------------------ reading
    def root(self, size: int | None = None) -> bytes:
        return self._tree.root(size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        return self._tree.inclusion_proof(index, size)

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        return self._tree.consistency_proof(old_size, new_size)

    def entry(self, index: int) -> bytes:
        raw = self.kv.get(_ENTRY + _be(index))
        if raw is None:
            raise StorageError(f"access log entry {index} is missing")
        return raw

    def of_child(self, tag: bytes, *, after: int = -1, limit: int = 1000) -> list[int]:
        """Indices of the entries about the child with ``tag``, oldest first, after ``after``."""
        prefix = _CHILD + tag
        start = prefix + _be(after + 1) if after >= 0 else prefix
        out = []
        for key, _ in self.kv.iterate(start, prefix + b"\xff" * 9):
            out.append(int.from_bytes(key[len(prefix):], "big"))
            if len(out) >= limit:
                break
        return out

    def entries(self, start: int, limit: int) -> Iterator[tuple[int, bytes]]:
        for key, raw in self.kv.iterate(_ENTRY + _be(start), _ENTRY + _be(min(start + limit, self.size))):
            yield int.from_bytes(key[1:], "big"), raw

    # ------------------------------------------------------------------ checking
    def verify(self, anchor: tuple[int, bytes] | None) -> str | None:
        """Recompute the tree from the entries; compare it with the stored tree and with
        ``anchor`` (the size and root the chain holds). Returns what is wrong, or None; a
        damaged log refuses appends from then on."""
        problem = self._find_damage(anchor)
        self.damage = problem
        if problem is not None:
            log.error("the access log is damaged: %s", problem)
        return problem

    def _find_damage(self, anchor: tuple[int, bytes] | None) -> str | None:
        size = self._tree.size
        rebuilt_nodes = MemoryNodeStore()
        rebuilt = MerkleLog(rebuilt_nodes.get, 0)
        expected = 0
        for index, raw in self.entries(0, size):
            if index != expected:
                return f"entry {expected} is missing"
            leaf = leaf_hash(raw)  # the bytes as stored: any change shows in the roots below
            if self._node(0, index) != leaf:
                return f"entry {index} does not match its leaf in the stored tree (edited on disk?)"
            rebuilt.append(leaf)
            expected += 1
        if expected != size:
            return f"the log says {size} entries, {expected} are stored"
        rebuilt_nodes.put_many(rebuilt.take_pending())
        try:
            stored_root = self._tree.root()
        except StorageError as exc:
            return f"the stored tree is incomplete: {exc}"
        if rebuilt.root() != stored_root:
            return "the stored tree's root is not the root of the stored entries"
        if anchor is not None:
            anchored_size, anchored_root = anchor
            if anchored_size > size:
                return (f"the chain holds a checkpoint of {anchored_size} entries, the log has only {size} "
                        "(entries were removed)")
            if rebuilt.root(anchored_size) != anchored_root:
                return (f"the first {anchored_size} entries do not give the root the chain holds for them "
                        "(an entry was changed, removed or reordered after its checkpoint)")
        return None
