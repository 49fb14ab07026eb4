"""A compact sparse Merkle tree of radix 16: an authenticated map from 32-byte key hashes to
value hashes.

Why this tree (see docs/adr/0002-authenticated-state.md): its root is a function of the set of
entries alone (no insertion order, no rebalancing, unlike an IAVL tree), so every node computes
the same root and a second implementation needs only the three hash rules below; it proves
absence as easily as presence; and a subtree per child lets the state forget a child's records
while keeping one hash where they were. Radix 16 (as in Ethereum's Patricia trie and Diem's
Jellyfish tree) keeps a path to about log16(n) nodes: a block's updates rehash a quarter of the
nodes a binary tree would, which is what a Python state machine pays for.

A key's path is its 64 nibbles, high nibble of each byte first. The hash of a subtree is

* ``EMPTY`` (32 zero bytes) when it holds no entry,
* ``leaf_hash(k, v) = SHA-256(0x00 || k || v)`` when it holds exactly one entry (at whatever
  depth: a lone entry is never pushed below the point where its path parts from the others),
* ``node_hash(c0..c15) = SHA-256(0x01 || c0 || ... || c15)`` otherwise, ``ci`` the subtree of the
  keys whose next nibble is ``i``.

Nodes are stored by position: the tree's namespace followed by the path, one byte per nibble, so
an update reads and writes only the paths it changes. A stored node begins with its hash:
``00 || hash || key || value`` for a lone entry, ``01 || hash || c0 .. c15`` for an inner node.
Functions here are pure: they read through a ``get`` callable and return the writes to make; the
caller puts them in the block's batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from ledger.errors import DecodeError

EMPTY = bytes(32)
RADIX = 16
MAX_DEPTH = 64  # nibbles in a 32-byte key
_LEAF, _NODE = b"\x00", b"\x01"
_EMPTY_CHILDREN = EMPTY * RADIX
_NIBBLE_BYTES = [bytes((i,)) for i in range(RADIX)]
_sha256 = hashlib.sha256

Get = Callable[[bytes], bytes | None]


def leaf_hash(key: bytes, value: bytes) -> bytes:
    return _sha256(_LEAF + key + value).digest()


def node_hash(children: bytes) -> bytes:
    """The hash of an inner node from its 16 children's hashes, concatenated (512 bytes)."""
    return _sha256(_NODE + children).digest()


def nibble(key: bytes, depth: int) -> int:
    b = key[depth >> 1]
    return b & 0x0F if depth & 1 else b >> 4


def position(namespace: bytes, key: bytes, depth: int) -> bytes:
    """The storage key of the node ``depth`` nibbles down ``key``'s path."""
    return namespace + bytes(nibble(key, d) for d in range(depth))


def _hash_of(record: bytes) -> bytes:
    return record[1:33]


def _leaf_record(key: bytes, value: bytes) -> bytes:
    return _LEAF + leaf_hash(key, value) + key + value


def _node_record(children: bytes) -> bytes:
    return _NODE + node_hash(children) + children


@dataclass(frozen=True, slots=True)
class Proof:
    """The path from the root to where a key's path ends, and what it ends in.

    ``siblings[d]`` are the 15 other children's hashes of the inner node ``d`` nibbles down (in
    nibble order, the key's own child left out). ``leaf`` is None when the path ends in an empty
    subtree, else the (key, value hash) of the lone entry there: the key itself (membership) or
    another key sharing the path so far (absence).
    """

    siblings: tuple[tuple[bytes, ...], ...]
    leaf: tuple[bytes, bytes] | None

    def to_wire(self) -> list:
        return [[b"".join(level) for level in self.siblings], None if self.leaf is None else list(self.leaf)]

    @classmethod
    def from_wire(cls, obj: object) -> Proof:
        if not (isinstance(obj, list) and len(obj) == 2 and isinstance(obj[0], list)):
            raise DecodeError("a state proof is [levels, leaf]")
        levels, leaf = obj
        if len(levels) > MAX_DEPTH or not all(type(x) is bytes and len(x) == 32 * (RADIX - 1) for x in levels):
            raise DecodeError(f"a state proof has at most {MAX_DEPTH} levels of {RADIX - 1} hashes of 32 bytes")
        siblings = tuple(tuple(level[i:i + 32] for i in range(0, len(level), 32)) for level in levels)
        if leaf is None:
            return cls(siblings, None)
        if not (isinstance(leaf, list) and len(leaf) == 2 and all(type(x) is bytes and len(x) == 32 for x in leaf)):
            raise DecodeError("a state proof's leaf is [key hash, value hash]")
        return cls(siblings, (leaf[0], leaf[1]))


def verify(root: bytes, key: bytes, value: bytes | None, proof: Proof) -> bool:
    """Does ``proof`` show that under ``root`` the key maps to ``value`` (None: is absent)?"""
    if len(key) != 32 or (value is not None and len(value) != 32):
        return False
    depth = len(proof.siblings)
    if depth > MAX_DEPTH or any(len(level) != RADIX - 1 for level in proof.siblings):
        return False
    if proof.leaf is None:
        if value is not None:
            return False
        if depth == 0:
            return root == EMPTY
        current = EMPTY
    else:
        k, v = proof.leaf
        if k == key:
            if value is None or v != value:
                return False
        elif value is not None:
            return False
        if any(nibble(k, d) != nibble(key, d) for d in range(depth)):
            return False  # the lone entry must lie on the key's path
        current = leaf_hash(k, v)
        if depth and all(h == EMPTY for h in proof.siblings[-1]):
            return False  # a lone entry beside empty subtrees sits one level up
    for d in range(depth - 1, -1, -1):
        level = proof.siblings[d]
        n = nibble(key, d)
        current = node_hash(b"".join(level[:n]) + current + b"".join(level[n:]))
    return current == root


class Tree:
    """One tree, rooted at position ``namespace`` (depth 0), read through ``get``."""

    __slots__ = ("get", "namespace")

    def __init__(self, namespace: bytes, get: Get) -> None:
        self.namespace = namespace
        self.get = get

    def root(self) -> bytes:
        record = self.get(self.namespace)
        return EMPTY if record is None else _hash_of(record)

    def lookup(self, key: bytes) -> bytes | None:
        """The value hash stored for ``key``, or None."""
        pos, depth = self.namespace, 0
        while True:
            record = self.get(pos)
            if record is None:
                return None
            if record[:1] == _LEAF:
                return record[65:97] if record[33:65] == key else None
            pos += _NIBBLE_BYTES[nibble(key, depth)]
            depth += 1

    def prove(self, key: bytes) -> Proof:
        siblings: list[tuple[bytes, ...]] = []
        pos, depth = self.namespace, 0
        while True:
            record = self.get(pos)
            if record is None:
                return Proof(tuple(siblings), None)
            if record[:1] == _LEAF:
                return Proof(tuple(siblings), (record[33:65], record[65:97]))
            n = nibble(key, depth)
            children = record[33:]
            siblings.append(tuple(children[i * 32:i * 32 + 32] for i in range(RADIX) if i != n))
            pos += _NIBBLE_BYTES[n]
            depth += 1

    def update(self, changes: dict[bytes, bytes | None]) -> tuple[bytes, dict[bytes, bytes | None]]:
        """Apply ``changes`` (key -> value hash, None deletes); returns (new root, node writes).

        Deleting an absent key and writing a value a key already has are allowed and change
        nothing.
        """
        writes: dict[bytes, bytes | None] = {}
        if not changes:
            return self.root(), writes
        ns = self.namespace
        record = _Updater(self.get, writes).subtree(0, ns, self.get(ns), list(changes.items()))
        return (EMPTY if record is None else _hash_of(record)), writes

    def entries(self) -> list[tuple[bytes, bytes]]:
        """Every (key, value hash), in key order (for tests and snapshots of small trees)."""
        out: list[tuple[bytes, bytes]] = []
        stack = [self.namespace]
        while stack:
            pos = stack.pop()
            record = self.get(pos)
            if record is None:
                continue
            if record[:1] == _LEAF:
                out.append((record[33:65], record[65:97]))
            else:
                stack.extend(pos + _NIBBLE_BYTES[i] for i in range(RADIX - 1, -1, -1))
        return out


# --------------------------------------------------------------------------- parts of a tree
# A snapshot (ledger/snapshot/) sends a tree as *parts*: the subtrees at a set of positions that
# together hold every entry (a cut), each with its hash. The hashes fold up to the root; each
# part's entries rebuild its hash. A path is the part's position below the tree's namespace,
# one byte per nibble.


def on_path(key: bytes, path: bytes) -> bool:
    """Does ``key``'s path begin with ``path``?"""
    return all(nibble(key, d) == n for d, n in enumerate(path))


def build_part(namespace: bytes, path: bytes, entries: list[tuple[bytes, bytes]]) -> tuple[bytes, dict[bytes, bytes]]:
    """The hash of the subtree at ``path`` that holds exactly ``entries`` (key, value hash), and
    the node records to store for it. Raises ValueError unless the entries are distinct, on the
    path, and at least one."""
    if not entries:
        raise ValueError("a part holds at least one entry")
    if len({k for k, _ in entries}) != len(entries):
        raise ValueError("a part holds each key once")
    if not all(len(k) == 32 and len(v) == 32 and on_path(k, path) for k, v in entries):
        raise ValueError("an entry of the part is not on its path")
    writes: dict[bytes, bytes | None] = {}
    pos = namespace + path
    record = _Updater(_nothing, writes)._build(len(path), pos, list(entries))
    assert record is not None
    writes[pos] = record
    return _hash_of(record), writes  # type: ignore[return-value]


def fold_parts(namespace: bytes, parts: dict[bytes, bytes]) -> tuple[bytes, dict[bytes, bytes]]:
    """The root of a tree from the hashes of the parts of a cut (path -> hash), and the records
    of the inner nodes above the cut. Raises ValueError for paths that are not a cut (a path
    inside another, a nibble out of range, deeper than a key)."""
    for path in parts:
        if len(path) > MAX_DEPTH or any(n >= RADIX for n in path):
            raise ValueError("a part's path is at most 64 nibbles")
    writes: dict[bytes, bytes] = {}
    if not parts:
        return EMPTY, writes

    def fold(depth: int, prefix: bytes, paths: list[bytes]) -> bytes:
        if len(paths) == 1 and len(paths[0]) == depth:
            return parts[paths[0]]
        if any(len(p) == depth for p in paths):
            raise ValueError("a part's path lies inside another part")
        groups: dict[int, list[bytes]] = {}
        for p in paths:
            groups.setdefault(p[depth], []).append(p)
        children = bytearray(_EMPTY_CHILDREN)
        for n, group in groups.items():
            children[n * 32:n * 32 + 32] = fold(depth + 1, prefix + _NIBBLE_BYTES[n], group)
        record = _node_record(bytes(children))
        writes[namespace + prefix] = record
        return _hash_of(record)

    return fold(0, b"", sorted(parts)), writes


def _nothing(_position: bytes) -> bytes | None:
    return None


def _groups(items: list[tuple[bytes, bytes | None]], depth: int) -> dict[int, list[tuple[bytes, bytes | None]]]:
    out: dict[int, list[tuple[bytes, bytes | None]]] = {}
    i, high = depth >> 1, not depth & 1
    for item in items:
        b = item[0][i]
        out.setdefault(b >> 4 if high else b & 0x0F, []).append(item)
    return out


class _Updater:
    __slots__ = ("get", "writes")

    def __init__(self, get: Get, writes: dict[bytes, bytes | None]) -> None:
        self.get, self.writes = get, writes

    def subtree(self, depth: int, pos: bytes, record: bytes | None,
                items: list[tuple[bytes, bytes | None]]) -> bytes | None:
        """The new record at ``pos`` (``depth`` nibbles down) after ``items`` (all on this path);
        writes every changed node below and at this position."""
        if record is not None and record[:1] == _NODE:
            new = self._inner(depth, pos, record, items)
        else:
            entries: dict[bytes, bytes] = {}
            if record is not None:
                entries[record[33:65]] = record[65:97]
            for k, v in items:
                if v is None:
                    entries.pop(k, None)
                else:
                    entries[k] = v
            new = self._build(depth, pos, list(entries.items()))
        if new != record:
            self.writes[pos] = new
        return new

    def _inner(self, depth: int, pos: bytes, record: bytes,
               items: list[tuple[bytes, bytes | None]]) -> bytes | None:
        children = bytearray(record[33:])
        get = self.get
        shrunk = False  # did a child become empty or a lone entry? then this node may have to go
        for n, group in _groups(items, depth).items():
            child_pos = pos + _NIBBLE_BYTES[n]
            child = self.subtree(depth + 1, child_pos, get(child_pos), group)
            if child is None:
                children[n * 32:n * 32 + 32] = EMPTY
                shrunk = True
            else:
                children[n * 32:n * 32 + 32] = child[1:33]
                shrunk = shrunk or child[:1] == _LEAF
        if shrunk:
            view = memoryview(children)
            occupied = []
            for i in range(RADIX):
                if view[i * 32:i * 32 + 32] != EMPTY:
                    occupied.append(i)
                    if len(occupied) > 1:
                        break
            if not occupied:
                return None
            if len(occupied) == 1:
                only_pos = pos + _NIBBLE_BYTES[occupied[0]]
                only = self.writes[only_pos] if only_pos in self.writes else get(only_pos)
                if only is not None and only[:1] == _LEAF:  # a lone entry beside empty subtrees moves up
                    self.writes[only_pos] = None
                    return only
        return _node_record(bytes(children))

    def _build(self, depth: int, pos: bytes, entries: list[tuple[bytes, bytes]]) -> bytes | None:
        """The record for ``entries`` at ``pos``, where nothing was stored below."""
        if not entries:
            return None
        if len(entries) == 1:
            k, v = entries[0]
            return _leaf_record(k, v)
        children = bytearray(_EMPTY_CHILDREN)
        for n, group in _groups(entries, depth).items():  # type: ignore[arg-type]
            child_pos = pos + _NIBBLE_BYTES[n]
            child = self._build(depth + 1, child_pos, group)  # type: ignore[arg-type]
            assert child is not None
            self.writes[child_pos] = child
            children[n * 32:n * 32 + 32] = child[1:33]
        return _node_record(bytes(children))
