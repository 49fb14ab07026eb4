"""A snapshot of the state at a height, as it travels: one manifest and bounded chunks.

A node that joins by state sync (docs/adr/0007-state-sync.md) receives, for a height ``H`` whose
header it has certified:

* the **manifest**: checked as a whole against header ``H`` before any chunk is used
  (:mod:`ledger.snapshot.verify`). It holds

  - ``log``: the right edge of the global transaction log (one hash per set bit of the header's
    ``log_size``), whose fold is the header's ``log_root``;
  - ``tx_log``: the proof of the ``txlog`` record (size and right edge of the transaction-id
    log, :mod:`ledger.state.txindex`) against the state root;
  - ``trees``: the global tree (first, rooted at the header's state root) and the trees of the
    few children too large to travel inside a part of the global tree ("outlined"), each with
    the proof of the child's slot in the global tree;
  - ``parts``: a cut of each tree, the position and hash of each part; the hashes of a tree's
    parts fold up to its root (:func:`ledger.state.smt.fold_parts`);
  - ``chunks``: how many consecutive parts each state chunk carries;
  - ``tx_chunks``: the hash of each chunk of the transaction-id log: complete subtrees of
    ``2**TX_CHUNK_LEVEL`` leaves (fewer in the right edge's small pieces), which fold up to the
    right edge the ``txlog`` record holds;

* **chunks**, numbered state chunks first, then transaction chunks, each checked on arrival
  against the manifest alone, so a bad one is refused and asked of another peer:

  - a state chunk carries, for each of its parts, the records whose entries lie in it (global
    records, tombstones ``erased/<tag>``, and each child's records whole, or nothing for an
    outlined child, whose records come in its own tree's parts);
  - a transaction chunk carries, for each leaf in order, the transaction's id, height, position
    and result (status, ref), from which the leaf is recomputed.

The manifest is a function of the state alone, so every honest node at height ``H`` builds the
same bytes and a joiner can take chunks from any peer that offers the same manifest hash.
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger.encoding import Bytes, Int, List, Optional, Schema, Str, decode, pack

#: leaves per transaction chunk: 2**12 (about 400 KiB)
TX_CHUNK_LEVEL = 12
#: the size a server aims at for a part and a state chunk
CHUNK_TARGET = 1 << 20
#: a child whose records weigh more than this (at the default target) travels as its own tree
#: ("outlined"); the share of the target is the same at any target
CHILD_INLINE = CHUNK_TARGET // 4
#: the most a chunk may weigh on the wire (a part can exceed the target by one record)
MAX_CHUNK_BYTES = 8 << 20
MAX_MANIFEST_BYTES = 12 << 20
MAX_PARTS = 150_000
MAX_TREES = 10_000
MAX_RECORDS = 100_000
MAX_KEY = 256
MAX_VALUE = 64 * 1024


@dataclass(frozen=True, slots=True)
class TreeRef:
    child: bytes | None  # None: the global tree; else the identity id of an outlined child
    root: bytes
    slot_proof: bytes | None  # canonical msgpack of the smt proof of the child's slot


@dataclass(frozen=True, slots=True)
class PartRef:
    tree: int  # index into the manifest's trees
    path: bytes  # nibbles, one per byte
    hash: bytes


@dataclass(frozen=True, slots=True)
class Manifest:
    height: int
    log: tuple[bytes, ...]
    tx_log: bytes  # a RecordProof (ledger.state.proof) of the txlog record, encoded
    trees: tuple[TreeRef, ...]
    parts: tuple[PartRef, ...]
    chunks: tuple[int, ...]
    tx_chunks: tuple[bytes, ...]


HASH = Bytes(32)
MANIFEST = Schema(Manifest, {
    "height": Int(min=1),
    "log": List(HASH, max=64),
    "tx_log": Bytes(max=16 * 1024),
    "trees": List(Schema(TreeRef, {"child": Optional(Bytes(16)), "root": HASH,
                                   "slot_proof": Optional(Bytes(max=4096))}), min=1, max=MAX_TREES),
    "parts": List(Schema(PartRef, {"tree": Int(max=MAX_TREES), "path": Bytes(max=64), "hash": HASH}), max=MAX_PARTS),
    "chunks": List(Int(min=1, max=MAX_PARTS), max=MAX_PARTS),
    "tx_chunks": List(HASH, max=MAX_PARTS),
})


@dataclass(frozen=True, slots=True)
class Record:
    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class ChildRecords:
    identity: bytes
    records: tuple[Record, ...] | None  # None: outlined (its records travel in its own tree's parts)


@dataclass(frozen=True, slots=True)
class PartData:
    records: tuple[Record, ...]  # global records and tombstones, or an outlined child's records
    children: tuple[ChildRecords, ...]  # children whose slot lies in this part of the global tree


@dataclass(frozen=True, slots=True)
class TxEntry:
    id: bytes
    height: int
    position: int
    status: str
    ref: bytes | None


@dataclass(frozen=True, slots=True)
class Chunk:
    index: int
    parts: tuple[PartData, ...] | None  # a state chunk
    txs: tuple[TxEntry, ...] | None  # a transaction chunk


RECORD = Schema(Record, {"key": Bytes(min=1, max=MAX_KEY), "value": Bytes(max=MAX_VALUE)})
RECORDS = List(RECORD, max=MAX_RECORDS)
CHUNK = Schema(Chunk, {
    "index": Int(max=2 * MAX_PARTS),
    "parts": Optional(List(Schema(PartData, {
        "records": RECORDS,
        "children": List(Schema(ChildRecords, {"identity": Bytes(16), "records": Optional(RECORDS)}),
                         max=MAX_RECORDS),
    }), max=MAX_PARTS)),
    "txs": Optional(List(Schema(TxEntry, {
        "id": HASH, "height": Int(min=1), "position": Int(max=2**32 - 1), "status": Str(max=16),
        "ref": Optional(HASH),
    }), max=1 << TX_CHUNK_LEVEL)),
})


_CHUNK_FIELDS = frozenset(CHUNK.spec)
_TX_FIELDS = frozenset(("id", "height", "position", "status", "ref"))


def encode_chunk(chunk: Chunk) -> bytes:
    """``CHUNK.encode`` of a chunk this software planned: the same bytes, each map built in
    canonical key order directly instead of by the schema's generic walk."""
    def records(items: tuple[Record, ...]) -> list[dict]:
        return [{"key": r.key, "value": r.value} for r in items]

    parts = None if chunk.parts is None else [
        {"children": [{"identity": c.identity, "records": None if c.records is None else records(c.records)}
                      for c in part.children],
         "records": records(part.records)}
        for part in chunk.parts]
    txs = None if chunk.txs is None else [
        {"height": e.height, "id": e.id, "position": e.position, "ref": e.ref, "status": e.status}
        for e in chunk.txs]
    return pack({"index": chunk.index, "parts": parts, "txs": txs})


def decode_chunk(data: bytes) -> Chunk:
    """:data:`CHUNK`'s decode, with a fast path for chunks of the expected shape (thousands of
    small entries, where the schema's generic checks and the canonical-form check cost more than
    the rest of checking the chunk): the same entries accepted, the schema's own error for
    anything else. A chunk's bytes need not be canonical: what counts is that its records give
    the hashes the manifest names, which the caller checks next."""
    raw = decode(data, max_size=MAX_CHUNK_BYTES, canonical=False)
    fast = _fast_chunk(raw)
    if fast is not None:
        return fast
    return CHUNK.check(decode(data, max_size=MAX_CHUNK_BYTES))


_PART_FIELDS = frozenset(("records", "children"))
_RECORD_FIELDS = frozenset(("key", "value"))
_CHILD_FIELDS = frozenset(("identity", "records"))


def _fast_records(items: object) -> tuple[Record, ...] | None:
    if type(items) is not list or len(items) > MAX_RECORDS:
        return None
    out = []
    for r in items:
        if type(r) is not dict or r.keys() != _RECORD_FIELDS:
            return None
        key, value = r["key"], r["value"]
        if not (type(key) is bytes and 1 <= len(key) <= MAX_KEY and type(value) is bytes and len(value) <= MAX_VALUE):
            return None
        out.append(Record(key, value))
    return tuple(out)


def _fast_chunk(raw: object) -> Chunk | None:
    """The chunk, if ``raw`` has exactly the shape :data:`CHUNK` accepts; None to let the
    schema decide (and say what is wrong)."""
    if type(raw) is not dict or raw.keys() != _CHUNK_FIELDS:
        return None
    index = raw["index"]
    if type(index) is not int or not 0 <= index <= 2 * MAX_PARTS:
        return None
    if raw["parts"] is not None and raw["txs"] is None:
        parts = raw["parts"]
        if type(parts) is not list or len(parts) > MAX_PARTS:
            return None
        decoded = []
        for part in parts:
            if type(part) is not dict or part.keys() != _PART_FIELDS:
                return None
            records = _fast_records(part["records"])
            kids = part["children"]
            if records is None or type(kids) is not list or len(kids) > MAX_RECORDS:
                return None
            children = []
            for child in kids:
                if type(child) is not dict or child.keys() != _CHILD_FIELDS:
                    return None
                identity, held = child["identity"], child["records"]
                if type(identity) is not bytes or len(identity) != 16:
                    return None
                child_records = None if held is None else _fast_records(held)
                if held is not None and child_records is None:
                    return None
                children.append(ChildRecords(identity, child_records))
            decoded.append(PartData(records, tuple(children)))
        return Chunk(index, tuple(decoded), None)
    if raw["parts"] is None:
        txs = raw["txs"]
        if type(txs) is list and len(txs) <= 1 << TX_CHUNK_LEVEL:
            entries = []
            for e in txs:
                if type(e) is not dict or e.keys() != _TX_FIELDS:
                    break
                tx_id, height, position, status, ref = e["id"], e["height"], e["position"], e["status"], e["ref"]
                if not (type(tx_id) is bytes and len(tx_id) == 32 and type(height) is int and 1 <= height < 2**63
                        and type(position) is int and 0 <= position < 2**32 and type(status) is str
                        and len(status) <= 16 and (ref is None or (type(ref) is bytes and len(ref) == 32))):
                    break
                entries.append(TxEntry(tx_id, height, position, status, ref))
            else:
                return Chunk(index, None, tuple(entries))
    return None


def tx_chunk_geometry(size: int) -> list[tuple[int, int]]:
    """(level, first leaf) of each transaction chunk of a log of ``size`` leaves, in order: the
    right edge's pieces, those above :data:`TX_CHUNK_LEVEL` cut into subtrees of that level."""
    out = []
    start = 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            if level <= TX_CHUNK_LEVEL:
                out.append((level, start))
            else:
                step = 1 << TX_CHUNK_LEVEL
                out.extend((TX_CHUNK_LEVEL, start + i * step) for i in range(1 << (level - TX_CHUNK_LEVEL)))
            start += 1 << level
    return out
