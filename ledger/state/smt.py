"""A compact sparse Merkle tree: an authenticated map from 32-byte key hashes to value hashes.

Why this tree (see docs/adr/0002-authenticated-state.md): its root is a function of the set of
entries alone (no insertion order, no rebalancing, unlike an IAVL tree), so every node computes
the same root and a second implementation needs only the three hash rules below; it proves
absence as easily as presence; and a subtree per child lets the state forget a child's records
while keeping one hash where they were.

The hash of a subtree is

* ``EMPTY`` (32 zero bytes) when it holds no entry,
* ``leaf_hash(k, v) = SHA-256(0x00 || k || v)`` when it holds exactly one entry (at whatever
  depth: a lone entry is never pushed below the point where its path parts from the others),
* ``node_hash(l, r) = SHA-256(0x01 || l || r)`` otherwise, ``l`` and ``r`` the subtrees of the
  keys whose next bit is 0 and 1.

Nodes are stored by position (a namespace, the depth and the path prefix), so an update reads
and writes only the paths it changes. Functions here are pure: they read through a ``get``
callable and return the writes to make; the caller puts them in the block's batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from ledger.errors import DecodeError

EMPTY = bytes(32)
KEY_BITS = 256
_LEAF, _NODE = b"\x00", b"\x01"
_sha256 = hashlib.sha256

Get = Callable[[bytes], bytes | None]


def leaf_hash(key: bytes, value: bytes) -> bytes:
    return _sha256(_LEAF + key + value).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(_NODE + left + right).digest()


def position(namespace: bytes, depth: int, prefix: int) -> bytes:
    """The storage key of the node at ``depth`` whose path is the ``depth`` bits of ``prefix``."""
    n = (depth + 7) >> 3
    return namespace + bytes((depth,)) + (prefix << ((n << 3) - depth)).to_bytes(n, "big")


# A stored node: b"\x00" + key + value for a lone entry, b"\x01" + hash for an inner node.
def _leaf_record(key: bytes, value: bytes) -> bytes:
    return _LEAF + key + value


def _node_record(h: bytes) -> bytes:
    return _NODE + h


def _hash_of(record: bytes) -> bytes:
    return leaf_hash(record[1:33], record[33:65]) if record[:1] == _LEAF else record[1:33]


@dataclass(frozen=True, slots=True)
class Proof:
    """The siblings on a key's path, root first, and what the path ends in.

    ``leaf`` is None when the path ends in an empty subtree, else the (key, value hash) of the
    lone entry there: the key itself (membership) or another key sharing the path so far
    (absence).
    """

    siblings: tuple[bytes, ...]
    leaf: tuple[bytes, bytes] | None

    def to_wire(self) -> list:
        return [list(self.siblings), None if self.leaf is None else list(self.leaf)]

    @classmethod
    def from_wire(cls, obj: object) -> Proof:
        if not (isinstance(obj, list) and len(obj) == 2 and isinstance(obj[0], list)):
            raise DecodeError("a state proof is [siblings, leaf]")
        siblings, leaf = obj
        if len(siblings) > KEY_BITS or not all(type(s) is bytes and len(s) == 32 for s in siblings):
            raise DecodeError("a state proof's siblings are at most 256 hashes of 32 bytes")
        if leaf is not None:
            if not (isinstance(leaf, list) and len(leaf) == 2
                    and all(type(x) is bytes and len(x) == 32 for x in leaf)):
                raise DecodeError("a state proof's leaf is [key hash, value hash]")
            return cls(tuple(siblings), (leaf[0], leaf[1]))
        return cls(tuple(siblings), None)


def _bit(key: bytes, depth: int) -> int:
    return (key[depth >> 3] >> (7 - (depth & 7))) & 1


def verify(root: bytes, key: bytes, value: bytes | None, proof: Proof) -> bool:
    """Does ``proof`` show that under ``root`` the key maps to ``value`` (None: is absent)?"""
    if len(key) != 32 or (value is not None and len(value) != 32):
        return False
    depth = len(proof.siblings)
    if proof.leaf is None:
        if value is not None:
            return False
        current = EMPTY
        # an empty position next to a lone entry would have been merged away: the sibling of
        # the empty end must be a subtree of two or more entries, which a verifier cannot see,
        # but a wrong shape changes the root, so the recomputation below rejects it
    else:
        k, v = proof.leaf
        if k == key:
            if value is None or v != value:
                return False
        elif value is not None:
            return False
        for d in range(depth):  # the lone entry lies on the key's path
            if _bit(k, d) != _bit(key, d):
                return False
        current = leaf_hash(k, v)
        if depth and proof.siblings[-1] == EMPTY:
            return False  # a lone entry beside an empty subtree sits one level up
    for d in range(depth - 1, -1, -1):
        sibling = proof.siblings[d]
        current = node_hash(sibling, current) if _bit(key, d) else node_hash(current, sibling)
    if depth == 0 and proof.leaf is None:
        return root == EMPTY
    return current == root


class Tree:
    """One tree, rooted at position (``namespace``, depth 0), read through ``get``."""

    __slots__ = ("get", "namespace")

    def __init__(self, namespace: bytes, get: Get) -> None:
        self.namespace = namespace
        self.get = get

    def root(self) -> bytes:
        record = self.get(position(self.namespace, 0, 0))
        return EMPTY if record is None else _hash_of(record)

    def lookup(self, key: bytes) -> bytes | None:
        """The value hash stored for ``key``, or None."""
        depth, prefix = 0, 0
        while True:
            record = self.get(position(self.namespace, depth, prefix))
            if record is None:
                return None
            if record[:1] == _LEAF:
                return record[33:65] if record[1:33] == key else None
            prefix = (prefix << 1) | _bit(key, depth)
            depth += 1

    def prove(self, key: bytes) -> Proof:
        siblings: list[bytes] = []
        depth, prefix = 0, 0
        ns = self.namespace
        while True:
            record = self.get(position(ns, depth, prefix))
            if record is None:
                return Proof(tuple(siblings), None)
            if record[:1] == _LEAF:
                return Proof(tuple(siblings), (record[1:33], record[33:65]))
            b = _bit(key, depth)
            other = self.get(position(ns, depth + 1, (prefix << 1) | (1 - b)))
            siblings.append(EMPTY if other is None else _hash_of(other))
            prefix = (prefix << 1) | b
            depth += 1

    def update(self, changes: dict[bytes, bytes | None]) -> tuple[bytes, dict[bytes, bytes | None]]:
        """Apply ``changes`` (key -> value hash, None deletes); returns (new root, node writes).

        Deleting an absent key and writing a value a key already has are allowed and change
        nothing.
        """
        writes: dict[bytes, bytes | None] = {}
        if not changes:
            return self.root(), writes
        items = sorted(changes.items())
        record = _Updater(self.namespace, self.get, writes).subtree(0, 0, self.get(position(self.namespace, 0, 0)),
                                                                    items)
        return (EMPTY if record is None else _hash_of(record)), writes

    def entries(self) -> list[tuple[bytes, bytes]]:
        """Every (key, value hash), in key order (for tests and snapshots of small trees)."""
        out: list[tuple[bytes, bytes]] = []
        stack = [(0, 0)]
        while stack:
            depth, prefix = stack.pop()
            record = self.get(position(self.namespace, depth, prefix))
            if record is None:
                continue
            if record[:1] == _LEAF:
                out.append((record[1:33], record[33:65]))
            else:
                stack.append((depth + 1, (prefix << 1) | 1))
                stack.append((depth + 1, prefix << 1))
        return out


class _Updater:
    __slots__ = ("get", "ns", "writes")

    def __init__(self, ns: bytes, get: Get, writes: dict[bytes, bytes | None]) -> None:
        self.ns, self.get, self.writes = ns, get, writes

    def subtree(self, depth: int, prefix: int, record: bytes | None,
                items: list[tuple[bytes, bytes | None]]) -> bytes | None:
        """The new record at (depth, prefix) after ``items`` (sorted, all on this path);
        writes every changed node below and at this position."""
        pos = position(self.ns, depth, prefix)
        if record is not None and record[:1] == _NODE:
            new = self._inner(depth, prefix, items)
        else:
            entries: dict[bytes, bytes] = {}
            if record is not None:
                entries[record[1:33]] = record[33:65]
            for k, v in items:
                if v is None:
                    entries.pop(k, None)
                else:
                    entries[k] = v
            new = self._build(depth, prefix, sorted(entries.items()))
        if new != record:
            self.writes[pos] = new
        return new

    def _inner(self, depth: int, prefix: int, items: list[tuple[bytes, bytes | None]]) -> bytes | None:
        byte, shift = depth >> 3, 7 - (depth & 7)
        split = 0
        while split < len(items) and not (items[split][0][byte] >> shift) & 1:
            split += 1
        lp, rp = prefix << 1, (prefix << 1) | 1
        left_pos, right_pos = position(self.ns, depth + 1, lp), position(self.ns, depth + 1, rp)
        left, right = self.get(left_pos), self.get(right_pos)
        if split:
            left = self.subtree(depth + 1, lp, left, items[:split])
        if split < len(items):
            right = self.subtree(depth + 1, rp, right, items[split:])
        return self._join(depth, left_pos, right_pos, left, right)

    def _join(self, depth: int, left_pos: bytes, right_pos: bytes, left: bytes | None,
              right: bytes | None) -> bytes | None:
        if left is None and right is None:
            return None
        # a lone entry beside an empty subtree moves up to this position
        if right is None and left is not None and left[:1] == _LEAF:
            self.writes[left_pos] = None
            return left
        if left is None and right is not None and right[:1] == _LEAF:
            self.writes[right_pos] = None
            return right
        lh = EMPTY if left is None else _hash_of(left)
        rh = EMPTY if right is None else _hash_of(right)
        return _node_record(node_hash(lh, rh))

    def _build(self, depth: int, prefix: int, entries: list[tuple[bytes, bytes]]) -> bytes | None:
        """The record for ``entries`` at (depth, prefix), where nothing was stored below."""
        if not entries:
            return None
        if len(entries) == 1:
            k, v = entries[0]
            return _leaf_record(k, v)
        byte, shift = depth >> 3, 7 - (depth & 7)
        split = 0
        while split < len(entries) and not (entries[split][0][byte] >> shift) & 1:
            split += 1
        lp, rp = prefix << 1, (prefix << 1) | 1
        left = self._build(depth + 1, lp, entries[:split])
        right = self._build(depth + 1, rp, entries[split:])
        left_pos, right_pos = position(self.ns, depth + 1, lp), position(self.ns, depth + 1, rp)
        if left is not None and right is not None:
            self.writes[left_pos], self.writes[right_pos] = left, right
            return _node_record(node_hash(_hash_of(left), _hash_of(right)))
        only = left if left is not None else right
        assert only is not None
        if only[:1] == _LEAF:
            return only  # all entries share the next bit: the lone one stays up here
        self.writes[left_pos if left is not None else right_pos] = only
        return _node_record(node_hash(_hash_of(left) if left else EMPTY, _hash_of(right) if right else EMPTY))
