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
an update reads and writes only the paths it changes. A stored record begins with its hash:

* ``01 || hash || c0 .. c15 || mask || entries`` for an inner node: ``mask`` (2 bytes, big
  endian; bit ``i`` for child ``i``) marks the children that are lone entries, and ``entries``
  holds their ``key || value`` in nibble order (mask and entries are left out when none is), so
  a lone entry lives in its parent's record and a path ends one read sooner (as in Diem's
  Jellyfish tree). The hashing rules above do not depend on where an entry is kept.
* ``00 || hash || key || value`` for a lone entry kept at its own position: a tree of one entry
  (its root), a part of a snapshot (:func:`build_part`), and stores written before entries were
  kept in their parents. Readers accept both places; an update that touches such an entry moves
  it into its parent.

Functions here are pure: they read through a ``get`` callable and return the writes to make; the
caller puts them in the block's batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import TypeVar

from ledger.errors import DecodeError

EMPTY = bytes(32)
RADIX = 16
MAX_DEPTH = 64  # nibbles in a 32-byte key
_LEAF, _NODE = b"\x00", b"\x01"
_EMPTY_CHILDREN = EMPTY * RADIX
_NIBBLE_BYTES = [bytes((i,)) for i in range(RADIX)]
_sha256 = hashlib.sha256

Get = Callable[[bytes], bytes | None]

NATIVE: ModuleType | None
try:  # the update walk in C (built with the package where a compiler is at hand): same results
    from ledger.state import _smt_native as NATIVE
except ImportError:  # pragma: no cover - installs without the extension
    NATIVE = None


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


_CHILDREN_END = 33 + 32 * RADIX  # a node record: kind, hash, the children's hashes, then its lone entries


def _node_record(children: bytes, lone: dict[int, bytes] | None = None) -> bytes:
    """An inner node's record; ``lone`` maps the nibbles of its lone-entry children to their
    ``key || value``."""
    if not lone:
        return _NODE + node_hash(children) + children
    order = sorted(lone)
    mask = 0
    for n in order:
        mask |= 1 << n
    return b"".join([_NODE, node_hash(children), children, mask.to_bytes(2, "big"), *[lone[n] for n in order]])


def _lone_entries(record: bytes) -> dict[int, bytes]:
    """The lone-entry children kept in a node record: nibble -> ``key || value``."""
    out: dict[int, bytes] = {}
    if len(record) <= _CHILDREN_END:
        return out
    mask = int.from_bytes(record[_CHILDREN_END:_CHILDREN_END + 2], "big")
    offset = _CHILDREN_END + 2
    while mask:
        low = mask & -mask
        out[low.bit_length() - 1] = record[offset:offset + 64]
        offset += 64
        mask ^= low
    return out


def _lone_entry(record: bytes, n: int) -> bytes | None:
    """``key || value`` of child ``n`` of a node record, if it is a lone entry kept there."""
    mask = int.from_bytes(record[_CHILDREN_END:_CHILDREN_END + 2], "big")
    if not mask >> n & 1:
        return None
    offset = _CHILDREN_END + 2 + 64 * (mask & ((1 << n) - 1)).bit_count()
    return record[offset:offset + 64]


def _child_hash(record: bytes, n: int) -> bytes:
    return record[33 + 32 * n:65 + 32 * n]


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
        record = self.get(pos)
        while record is not None:
            if record[:1] == _LEAF:
                return record[65:97] if record[33:65] == key else None
            n = nibble(key, depth)
            lone = _lone_entry(record, n)
            if lone is not None:
                return lone[32:] if lone[:32] == key else None
            if _child_hash(record, n) == EMPTY:
                return None
            pos += _NIBBLE_BYTES[n]
            depth += 1
            record = self.get(pos)
        return None

    def prove(self, key: bytes) -> Proof:
        siblings: list[tuple[bytes, ...]] = []
        pos, depth = self.namespace, 0
        record = self.get(pos)
        while record is not None:
            if record[:1] == _LEAF:
                return Proof(tuple(siblings), (record[33:65], record[65:97]))
            n = nibble(key, depth)
            siblings.append(tuple(_child_hash(record, i) for i in range(RADIX) if i != n))
            lone = _lone_entry(record, n)
            if lone is not None:
                return Proof(tuple(siblings), (lone[:32], lone[32:]))
            if _child_hash(record, n) == EMPTY:
                break
            pos += _NIBBLE_BYTES[n]
            depth += 1
            record = self.get(pos)
        return Proof(tuple(siblings), None)

    def update(self, changes: dict[bytes, bytes | None]) -> tuple[bytes, dict[bytes, bytes | None]]:
        """Apply ``changes`` (key -> value hash, None deletes); returns (new root, node writes).

        Deleting an absent key and writing a value a key already has are allowed and change
        nothing. Keys and value hashes are 32 bytes. The walk runs in C when the extension
        ``ledger.state._smt_native`` is built (:data:`NATIVE`), else in Python
        (:meth:`update_in_python`, the reference the C code follows).
        """
        if not changes:
            return self.root(), {}
        return update_tree(self.namespace, self.get, changes)

    def update_in_python(self, changes: dict[bytes, bytes | None]) -> tuple[bytes, dict[bytes, bytes | None]]:
        """:meth:`update` in Python: the reference reading of the walk."""
        writes: dict[bytes, bytes | None] = {}
        if not changes:
            return self.root(), writes
        if not all(len(k) == 32 and (v is None or len(v) == 32) for k, v in changes.items()):
            raise ValueError("tree keys and values are 32-byte hashes")
        ns = self.namespace
        stored = self.get(ns)
        if len(changes) == 1 and stored is not None and stored[:1] == _NODE:  # one key, below a node: a path
            ((key, value),) = changes.items()
            if value is not None:
                node = _Updater(self.get, writes)._put(0, ns, stored, key, value)
                if node != stored:
                    writes[ns] = node
                return node[1:33], writes
        record = _Updater(self.get, writes).subtree(0, ns, stored, None, list(changes.items()))
        if record != stored:
            writes[ns] = record  # the root is kept at its position even when it is a lone entry
        return (EMPTY if record is None else _hash_of(record)), writes

    def entries(self) -> list[tuple[bytes, bytes]]:
        """Every (key, value hash), in key order (for tests and snapshots of small trees)."""
        out: list[tuple[bytes, bytes]] = []

        def walk(pos: bytes) -> None:
            record = self.get(pos)
            if record is None:
                return
            if record[:1] == _LEAF:
                out.append((record[33:65], record[65:97]))
                return
            lone = _lone_entries(record)
            for n in range(RADIX):
                if n in lone:
                    out.append((lone[n][:32], lone[n][32:]))
                elif _child_hash(record, n) != EMPTY:
                    walk(pos + _NIBBLE_BYTES[n])

        walk(self.namespace)
        return out


def update_tree(namespace: bytes, get: Get,
                changes: dict[bytes, bytes | None]) -> tuple[bytes, dict[bytes, bytes | None]]:
    """``Tree(namespace, get).update(changes)`` for non-empty ``changes``, in C where built."""
    if NATIVE is not None:
        return NATIVE.update(namespace, get, changes)
    return Tree(namespace, get).update_in_python(changes)


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


def fold_parts(namespace: bytes, parts: dict[bytes, bytes],
               lone: dict[bytes, bytes] | None = None) -> tuple[bytes, dict[bytes, bytes]]:
    """The root of a tree from the hashes of the parts of a cut (path -> hash), and the records
    of the inner nodes above the cut. ``lone`` gives ``key || value`` of the parts that are a
    lone entry, which the nodes above keep (:func:`build_part` stores such a part at its own
    position; the caller drops that record). Raises ValueError for paths that are not a cut (a
    path inside another, a nibble out of range, deeper than a key) or a lone entry that is not
    its part's hash."""
    for path in parts:
        if len(path) > MAX_DEPTH or any(n >= RADIX for n in path):
            raise ValueError("a part's path is at most 64 nibbles")
    lone = lone or {}
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
        kept: dict[int, bytes] = {}
        for n, group in groups.items():
            digest = fold(depth + 1, prefix + _NIBBLE_BYTES[n], group)
            children[n * 32:n * 32 + 32] = digest
            entry = lone.get(group[0]) if len(group) == 1 and len(group[0]) == depth + 1 else None
            if entry is not None:
                if len(entry) != 64 or leaf_hash(entry[:32], entry[32:]) != digest:
                    raise ValueError("a lone entry is not its part's hash")
                kept[n] = entry
        record = _node_record(bytes(children), kept)
        writes[namespace + prefix] = record
        return _hash_of(record)

    return fold(0, b"", sorted(parts)), writes


def _nothing(_position: bytes) -> bytes | None:
    return None


_Item = TypeVar("_Item", bound=tuple[bytes, bytes | None])  # (key, value hash or None)


def _groups(items: list[_Item], depth: int) -> dict[int, list[_Item]]:
    out: dict[int, list[_Item]] = {}
    i, high = depth >> 1, not depth & 1
    for item in items:
        b = item[0][i]
        out.setdefault(b >> 4 if high else b & 0x0F, []).append(item)
    return out


class _Updater:
    """One update's walk. A subtree's new content is returned as a record: None (empty), a leaf
    record (a lone entry, which the parent keeps), or a node record (which is stored at the
    subtree's position). Writes below a position are made by the walk; the caller places what is
    returned."""

    __slots__ = ("get", "writes")

    def __init__(self, get: Get, writes: dict[bytes, bytes | None]) -> None:
        self.get, self.writes = get, writes

    def subtree(self, depth: int, pos: bytes, stored: bytes | None, lone: bytes | None,
                items: list[tuple[bytes, bytes | None]]) -> bytes | None:
        """The new content at ``pos`` (``depth`` nibbles down) after ``items`` (all on this path),
        given the record ``stored`` there and the lone entry (``key || value``) its parent keeps
        for it, if any."""
        if stored is not None and stored[:1] == _NODE:
            return self._inner(depth, pos, stored, items)
        if stored is None and lone is None and len(items) == 1:  # a new lone entry, the usual insertion
            k, v = items[0]
            return None if v is None else _leaf_record(k, v)
        entries: dict[bytes, bytes] = {}
        if lone is not None:
            entries[lone[:32]] = lone[32:]
        elif stored is not None:
            entries[stored[33:65]] = stored[65:97]
        for k, v in items:
            if v is None:
                entries.pop(k, None)
            else:
                entries[k] = v
        return self._build(depth, pos, list(entries.items()))

    def _inner(self, depth: int, pos: bytes, record: bytes,
               items: list[tuple[bytes, bytes | None]]) -> bytes | None:
        """The new content at ``pos``, where the inner node ``record`` is stored."""
        if len(items) == 1:
            key, value = items[0]
            if value is not None:
                return self._put(depth, pos, record, key, value)
        return self._merge(depth, pos, record, items)

    def _put(self, depth: int, pos: bytes, record: bytes, key: bytes, value: bytes) -> bytes:
        """The node record at ``pos`` after one key is set: the usual update, a path each.

        Setting a key never empties a node nor leaves it a lone entry beside empty subtrees,
        so none of :meth:`_merge`'s shrinking cases arise, and the record is edited as bytes.
        """
        b = key[depth >> 1]
        n = b & 0x0F if depth & 1 else b >> 4
        at, bit = 33 + 32 * n, 1 << n
        mask = int.from_bytes(record[_CHILDREN_END:_CHILDREN_END + 2], "big")
        # where child n's lone entry is, or would go: the entries are in nibble order
        start = _CHILDREN_END + 2 + 64 * (mask & (bit - 1)).bit_count()
        entries = record[_CHILDREN_END + 2:]
        cut = start - _CHILDREN_END - 2
        if mask & bit:
            if record[start:start + 32] == key:
                if record[start + 32:start + 64] == value:
                    return record
                digest = leaf_hash(key, value)
                entries = entries[:cut] + key + value + entries[cut + 64:]
            else:  # the slot's lone entry and the new one move down into a node of their own
                digest = self._pair(depth + 1, pos + _NIBBLE_BYTES[n], record[start:start + 64],
                                    record[at:at + 32], key, value)
                mask ^= bit
                entries = entries[:cut] + entries[cut + 64:]
        elif record[at:at + 32] == EMPTY:  # a new lone entry
            digest = leaf_hash(key, value)
            mask |= bit
            entries = entries[:cut] + key + value + entries[cut:]
        else:
            child_pos = pos + _NIBBLE_BYTES[n]
            stored = self.get(child_pos)
            if stored is None or stored[:1] != _NODE:  # a lone entry at its own position (older stores)
                return self._merge(depth, pos, record, [(key, value)])  # type: ignore[return-value]
            child = self._put(depth + 1, child_pos, stored, key, value)
            if child is stored:
                return record
            self.writes[child_pos] = child
            digest = child[1:33]
        children = record[33:at] + digest + record[at + 32:_CHILDREN_END]
        tail = mask.to_bytes(2, "big") + entries if mask else b""
        return _NODE + node_hash(children) + children + tail

    def _pair(self, depth: int, pos: bytes, entry: bytes, digest: bytes, key: bytes, value: bytes) -> bytes:
        """Store the subtree at ``pos`` (``depth`` nibbles down) holding a lone entry (``entry``
        = its ``key || value``, ``digest`` its leaf hash) and a new key, with nodes of one child
        down to where their paths part; returns its hash."""
        other = entry[:32]
        above: list[tuple[bytes, int]] = []  # (position, nibble) of the nodes of one child
        while True:
            x, y = other[depth >> 1], key[depth >> 1]
            a, b = (x & 0x0F, y & 0x0F) if depth & 1 else (x >> 4, y >> 4)
            if a != b:
                break
            above.append((pos, a))
            pos += _NIBBLE_BYTES[a]
            depth += 1
        children = bytearray(_EMPTY_CHILDREN)
        children[32 * a:32 * a + 32] = digest
        children[32 * b:32 * b + 32] = leaf_hash(key, value)
        tail = ((1 << a) | (1 << b)).to_bytes(2, "big") + (entry + key + value if a < b else key + value + entry)
        digest = node_hash(bytes(children))
        self.writes[pos] = _NODE + digest + children + tail
        for at_pos, n in reversed(above):
            children = bytearray(_EMPTY_CHILDREN)
            children[32 * n:32 * n + 32] = digest
            digest = node_hash(bytes(children))
            self.writes[at_pos] = _NODE + digest + children
        return digest

    def _merge(self, depth: int, pos: bytes, record: bytes,
               items: list[tuple[bytes, bytes | None]]) -> bytes | None:
        """:meth:`_inner` for any number of items, deletions included."""
        children = bytearray(record[33:_CHILDREN_END])
        # the lone entries, edited in place: 64 bytes each, in nibble order, so the children are
        # visited from the highest nibble down and an edit never moves an entry still to visit
        mask = int.from_bytes(record[_CHILDREN_END:_CHILDREN_END + 2], "big")
        lone = bytearray(record[_CHILDREN_END + 2:])
        get, writes = self.get, self.writes
        shrunk = False  # did a child become empty, or a node a lone entry? then this node may have to go
        if len(items) == 2:  # the usual case in a child's tree (a block's two crossings of a child)
            first, second = items
            n1, n2 = nibble(first[0], depth), nibble(second[0], depth)
            if n1 == n2:
                groups = [(n1, items)]
            else:
                groups = [(n1, [first]), (n2, [second])] if n1 > n2 else [(n2, [second]), (n1, [first])]
        elif len(items) == 1:
            groups = [(nibble(items[0][0], depth), items)]
        else:
            groups = sorted(_groups(items, depth).items(), reverse=True)
        for n, group in groups:
            child_pos = pos + _NIBBLE_BYTES[n]
            at, bit = n * 32, 1 << n
            offset = 64 * (mask & (bit - 1)).bit_count()
            if len(group) == 1 and (value := group[0][1]) is not None:
                # one key set in this child: the cases that never shrink this node, done in place
                key = group[0][0]
                if mask & bit:
                    if lone[offset:offset + 32] == key:  # a new value for a lone entry
                        children[at:at + 32] = leaf_hash(key, value)
                        lone[offset + 32:offset + 64] = value
                    else:  # a new key where a lone entry is: the two move down into a node
                        children[at:at + 32] = self._pair(depth + 1, child_pos, bytes(lone[offset:offset + 64]),
                                                          bytes(children[at:at + 32]), key, value)
                        del lone[offset:offset + 64]
                        mask ^= bit
                    continue
                if children[at:at + 32] == EMPTY:  # a new lone entry
                    children[at:at + 32] = leaf_hash(key, value)
                    lone[offset:offset] = key + value
                    mask |= bit
                    continue
            if mask & bit:
                child_lone, stored = bytes(lone[offset:offset + 64]), None
            else:
                child_lone, stored = None, None if children[at:at + 32] == EMPTY else get(child_pos)
            if stored is not None and stored[:1] == _NODE:
                child = self._inner(depth + 1, child_pos, stored, group)
            else:
                child = self.subtree(depth + 1, child_pos, stored, child_lone, group)
            if child is None:
                children[at:at + 32] = EMPTY
                shrunk = True
            else:
                children[at:at + 32] = child[1:33]
            if child is not None and child[:1] == _LEAF:  # kept here, and nothing at its position
                if mask & bit:
                    lone[offset:offset + 64] = child[33:97]
                else:
                    lone[offset:offset] = child[33:97]
                    mask |= bit
                if stored is not None:  # a node became a lone entry: this node may have to go
                    shrunk = True
                    writes[child_pos] = None
                continue
            if mask & bit:
                del lone[offset:offset + 64]
                mask ^= bit
            if child is not None:
                if child != stored:
                    writes[child_pos] = child
            elif stored is not None:
                writes[child_pos] = None
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
            if len(occupied) == 1:  # a lone entry beside empty subtrees moves up
                only = occupied[0]
                if mask:
                    return _LEAF + bytes(children[only * 32:only * 32 + 32]) + bytes(lone)
                only_pos = pos + _NIBBLE_BYTES[only]
                kept = writes[only_pos] if only_pos in writes else get(only_pos)
                if kept is not None and kept[:1] == _LEAF:  # kept at its own position (older stores)
                    writes[only_pos] = None
                    return kept
        tail = mask.to_bytes(2, "big") + lone if mask else b""
        return _NODE + node_hash(bytes(children)) + children + tail

    def _build(self, depth: int, pos: bytes, entries: list[tuple[bytes, bytes]]) -> bytes | None:
        """The content for ``entries`` at ``pos``, where nothing was stored below."""
        if not entries:
            return None
        if len(entries) == 1:
            k, v = entries[0]
            return _leaf_record(k, v)
        children = bytearray(_EMPTY_CHILDREN)
        lone: dict[int, bytes] = {}
        for n, group in _groups(entries, depth).items():
            if len(group) == 1:
                key, value = group[0]
                children[n * 32:n * 32 + 32] = leaf_hash(key, value)
                lone[n] = key + value
                continue
            child_pos = pos + _NIBBLE_BYTES[n]
            child = self._build(depth + 1, child_pos, group)
            assert child is not None
            self.writes[child_pos] = child
            children[n * 32:n * 32 + 32] = child[1:33]
        return _node_record(bytes(children), lone)
