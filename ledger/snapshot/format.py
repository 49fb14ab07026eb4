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

from ledger.encoding import Bytes, Int, List, Optional, Schema, Str, decode

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


def decode_chunk(data: bytes) -> Chunk:
    """:data:`CHUNK`'s decode, with a fast path for transaction chunks (thousands of small
    entries, where the schema's generic checks cost more than the rest of checking the chunk):
    the same entries accepted, the schema's own error for anything else."""
    raw = decode(data, max_size=MAX_CHUNK_BYTES)
    if type(raw) is dict and raw.keys() == _CHUNK_FIELDS and raw["parts"] is None:
        index, txs = raw["index"], raw["txs"]
        if type(index) is int and 0 <= index <= 2 * MAX_PARTS and type(txs) is list and len(txs) <= 1 << TX_CHUNK_LEVEL:
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
    return CHUNK.check(raw)


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
