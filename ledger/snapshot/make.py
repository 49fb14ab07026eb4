"""Making a snapshot (the serving node's side): plan the manifest, then cut chunks on request.

Planning reads the whole state once (every record, the tree nodes along the cut, the
transaction index in log order) from one consistent view of the store, the way it was after
block ``H``. It keeps, for each chunk, which records it carries; :func:`chunk_bytes` reads them
again from the same view when a peer asks. Nothing is written anywhere: a snapshot lives as long
as the view (a LevelDB snapshot) it was planned from, and holds nothing that view does not hold.
So once a child is erased, the node drops the snapshots from before the erasure and plans anew.

The cut of each tree follows the stored nodes from the root down: a subtree becomes one part
when its records weigh at most :data:`~ledger.snapshot.format.CHUNK_TARGET` (or it is a single
entry); otherwise its children are cut in turn. Parts go into chunks in order, a chunk closing
once it passes the target.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from ledger.block import Header
from ledger.encoding import decode, encode
from ledger.errors import CustosError
from ledger.merkle import MerkleLog
from ledger.privacy.tags import child_tag
from ledger.snapshot.format import (
    CHILD_INLINE,
    CHUNK_TARGET,
    MANIFEST,
    ChildRecords,
    Chunk,
    Manifest,
    PartData,
    PartRef,
    Record,
    TreeRef,
    TxEntry,
    encode_chunk,
    tx_chunk_geometry,
)
from ledger.state import smt, txindex
from ledger.state.authenticated import CHILD_NAMESPACE, GLOBAL_NAMESPACE, global_tree, key_hash
from ledger.state.proof import prove_record
from ledger.state.records import K_TX_LOG, P_DERIVED, P_ERASED, TX_LOG, child_of_key, k_child
from ledger.storage.chainstore import TX_LOCATION, TxLocation, location_row, log_key

_S, _M, _X, _K = b"S", b"M", b"X", b"K"
_RECORD_OVERHEAD = 8  # what a record adds on the wire besides its key and value


class SnapshotUnavailable(CustosError):
    """This store cannot make a snapshot that a joining node could check."""

    code = "snapshot-unavailable"


class Source(Protocol):
    """One consistent view of the raw store (a LevelDB snapshot)."""

    def get(self, key: bytes) -> bytes | None: ...

    def items(self, start: bytes, stop: bytes) -> Iterator[tuple[bytes, bytes]]: ...


@dataclass(frozen=True, slots=True)
class _Part:
    tree: bytes | None  # None: global tree; else the outlined child's identity
    records: tuple[bytes, ...]  # state keys of the global records / tombstones / child records in it
    children: tuple[tuple[bytes, bool], ...]  # (identity, outlined) of the children whose slot is in it


@dataclass
class Plan:
    """A planned snapshot: its manifest, and what each chunk carries."""

    header: Header
    manifest: Manifest
    encoded: bytes
    hash: bytes
    state_chunks: list[list[_Part]] = field(repr=False)
    tx_chunks: list[tuple[int, int]] = field(repr=False)  # (level, first leaf)

    @property
    def chunk_count(self) -> int:
        return len(self.state_chunks) + len(self.tx_chunks)


def plan(source: Source, header: Header, *, target: int = CHUNK_TARGET,
         tx_chunk_hashes: dict[tuple[int, int], bytes] | None = None) -> Plan:
    """Plan the snapshot of the state ``source`` holds, which must be the state after
    ``header``'s block. ``tx_chunk_hashes`` caches the hashes of complete transaction chunks
    between plans (they never change)."""
    if source.get(b"T") is None:
        raise SnapshotUnavailable("the store holds no chain")
    get_node = _prefixed(source, _M)
    get_state = _prefixed(source, _S)
    if global_tree(get_node).root() != header.state_root:
        raise SnapshotUnavailable(f"the store's state is not the state after block {header.height}")

    # every authenticated record, by the tree entry it belongs to
    global_items: list[tuple[bytes, int, tuple[str, bytes]]] = []  # (entry key, weight, (kind, key))
    children: dict[bytes, list[tuple[bytes, int]]] = {}  # identity -> [(state key, weight)]
    for key, value in source.items(_S, b"T"):
        key = key[1:]
        if key.startswith(P_DERIVED):
            continue
        weight = len(key) + len(value) + _RECORD_OVERHEAD
        identity = child_of_key(key)
        if identity is not None:
            children.setdefault(identity, []).append((key, weight))
        elif key.startswith(P_ERASED):
            global_items.append((key[len(P_ERASED):], weight, ("record", key)))
        else:
            global_items.append((key_hash(key), weight, ("record", key)))
    outlined: list[bytes] = []
    for identity, records in children.items():
        weight = sum(w for _, w in records)
        if weight > target * CHILD_INLINE // CHUNK_TARGET:
            outlined.append(identity)
            weight = 32
        global_items.append((child_tag(identity), weight, ("child", identity)))

    trees = [TreeRef(None, header.state_root, None)]
    cuts: list[list[tuple[bytes, bytes, list]]] = [
        _cut(GLOBAL_NAMESPACE, get_node, header.state_root, global_items, target)]
    gtree = global_tree(get_node)
    for identity in sorted(outlined):
        ns = CHILD_NAMESPACE + identity
        root = smt.Tree(ns, get_node).root()
        proof = encode(gtree.prove(child_tag(identity)).to_wire())
        trees.append(TreeRef(identity, root, proof))
        items = [(key_hash(k), w, ("record", k)) for k, w in children[identity]]
        cuts.append(_cut(ns, get_node, root, items, target))

    outlined_set = set(outlined)
    part_refs: list[PartRef] = []
    state_chunks: list[list[_Part]] = []
    counts: list[int] = []
    current: list[_Part] = []
    weight = 0
    for index, cut in enumerate(cuts):
        owner = trees[index].child
        for path, digest, items in cut:
            part_refs.append(PartRef(index, path, digest))
            keys = tuple(sorted(key for _, _, (kind, key) in items if kind == "record"))
            kids = tuple(sorted((key, key in outlined_set) for _, _, (kind, key) in items if kind == "child")) \
                if owner is None else ()
            current.append(_Part(owner, keys, kids))
            weight += sum(w for _, w, _ in items)
            if weight >= target:
                state_chunks.append(current)
                counts.append(len(current))
                current, weight = [], 0
    if current:
        state_chunks.append(current)
        counts.append(len(current))

    # the transaction-id log: it must cover every entry of the global log
    raw_log = get_state(K_TX_LOG)
    size = 0 if raw_log is None else TX_LOG.decode(raw_log).size
    if size != header.log_size:
        raise SnapshotUnavailable(
            f"the state's transaction-id log holds {size} of the chain's {header.log_size} transactions: the chain "
            "began before protocol 4, so its transaction index is not under the state root")
    geometry = tx_chunk_geometry(size)
    cache = tx_chunk_hashes if tx_chunk_hashes is not None else {}
    tx_hashes = []
    for level, start in geometry:  # complete subtrees: a hash once computed stays right
        if (level, start) not in cache:
            cache[(level, start)] = txindex.subtree_hash([_leaf(e) for e in _tx_entries(source, start, 1 << level)])
        tx_hashes.append(cache[(level, start)])
    edge = tuple(MerkleLog(lambda level, index: source.get(log_key(level, index)), header.log_size).right_edge())
    manifest = Manifest(
        height=header.height,
        log=edge,
        tx_log=prove_record(get_state, get_node, K_TX_LOG).encode(),
        trees=tuple(trees),
        parts=tuple(part_refs),
        chunks=tuple(counts),
        tx_chunks=tuple(tx_hashes),
    )
    encoded = MANIFEST.encode(manifest)
    return Plan(header, manifest, encoded, hashlib.sha256(encoded).digest(), state_chunks, geometry)


def chunk_bytes(source: Source, plan: Plan, index: int) -> bytes:
    """Chunk ``index`` of ``plan``, read from the view it was planned from."""
    if not 0 <= index < plan.chunk_count:
        raise IndexError(f"the snapshot has {plan.chunk_count} chunks")
    if index < len(plan.state_chunks):
        get = _prefixed(source, _S)
        parts = []
        for part in plan.state_chunks[index]:
            records = tuple(Record(key, _value(get, key)) for key in part.records)
            kids = tuple(ChildRecords(identity, None if outlined else _child_records(source, identity))
                         for identity, outlined in part.children)
            parts.append(PartData(records, kids))
        return encode_chunk(Chunk(index, tuple(parts), None))
    level, start = plan.tx_chunks[index - len(plan.state_chunks)]
    return encode_chunk(Chunk(index, None, tuple(_tx_entries(source, start, 1 << level))))


# ---------------------------------------------------------------------------- helpers


def _prefixed(source: Source, prefix: bytes):
    get = source.get
    return lambda key: get(prefix + key)


def _value(get, key: bytes) -> bytes:
    value = get(key)
    if value is None:
        raise SnapshotUnavailable(f"record {key[:24]!r} vanished from the snapshot's view")
    return value


def _child_records(source: Source, identity: bytes) -> tuple[Record, ...]:
    prefix = _S + k_child(identity)
    return tuple(Record(k[1:], v) for k, v in source.items(prefix, prefix + b"\xff"))


def _tx_entries(source: Source, start: int, count: int) -> Iterator[TxEntry]:
    n = 0
    for key, tx_id in source.items(_K + start.to_bytes(8, "big"), _K + (start + count).to_bytes(8, "big")):
        raw = source.get(_X + tx_id)
        if raw is None or int.from_bytes(key[1:], "big") != start + n:
            raise SnapshotUnavailable(f"the transaction index lacks log index {start + n}")
        yield _entry(tx_id, raw)
        n += 1
    if n != count:
        raise SnapshotUnavailable(f"the transaction index lacks log index {start + n} (it began before this "
                                  "software kept the index in log order)")


_LOCATION_FIELDS = frozenset(TX_LOCATION.spec)


def _entry(tx_id: bytes, raw: bytes) -> TxEntry:
    """The snapshot's entry of an indexed transaction: the index record read without the
    schema's generic checks (one per transaction of the chain), falling back to them, and to
    their error, for anything unexpected."""
    value = decode(raw)
    if type(value) is dict and value.keys() == _LOCATION_FIELDS:
        height, index, status, ref = value["height"], value["index"], value["status"], value["ref"]
        if (type(height) is int and type(index) is int and type(status) is str
                and (ref is None or (type(ref) is bytes and len(ref) == 32))):
            return TxEntry(tx_id, height, index, status, ref)
    loc = TX_LOCATION.decode(raw)
    return TxEntry(tx_id, loc.height, loc.index, loc.status, loc.ref)


def _leaf(entry: TxEntry) -> bytes:
    row = location_row(entry.id, TxLocation(entry.height, entry.position, 0, entry.status, entry.ref))
    return txindex.entry_leaf(entry.id, entry.height, entry.position, row)


def _cut(namespace: bytes, get_node, root: bytes, items: list[tuple[bytes, int, tuple[str, bytes]]],
         target: int) -> list[tuple[bytes, bytes, list]]:
    """The parts of the tree at ``namespace``, whose root is ``root``, holding ``items`` (entry
    key, weight, what): a list of (path, hash, items), in path order. A part's hash is read from
    the node above it (a lone entry is kept there, not at its own position)."""
    out: list[tuple[bytes, bytes, list]] = []
    if not items:
        return out
    items = sorted(items, key=lambda item: item[0])

    def walk(path: bytes, digest: bytes, group: list) -> None:
        if len(group) == 1 or sum(w for _, w, _ in group) <= target:
            out.append((path, digest, group))
            return
        record = get_node(namespace + path)
        if record is None or record[:1] != b"\x01":
            raise SnapshotUnavailable(f"the tree and the records disagree at {path.hex()} under {namespace[:1]!r}")
        depth = len(path)
        by_nibble: dict[int, list] = {}
        for item in group:
            by_nibble.setdefault(smt.nibble(item[0], depth), []).append(item)
        for n in sorted(by_nibble):
            walk(path + bytes((n,)), record[33 + 32 * n:65 + 32 * n], by_nibble[n])

    walk(b"", root, items)
    return out
