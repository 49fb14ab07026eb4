"""The shared vectors of state sync (tests/vectors/state_sync.json).

Two things another implementation must agree on: the transaction-id log (protocol 4 on, its
right edge is a state record, so a different leaf or fold is a different state root), and the
snapshot a joining node checks (manifest and chunk bytes, the manifest's hash by which peers
offer it, and which chunks it refuses). Regenerate with
``.venv/bin/python -c "import sys; sys.path[:0] = ['tests/ledger']; import test_snapshot_vectors as v; v.write()"``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from ledger.block import HEADER
from ledger.snapshot.format import tx_chunk_geometry
from ledger.snapshot.verify import Assembly, SnapshotError
from ledger.state import txindex
from ledger.state.records import TX_LOG, TxLog

PATH = Path(__file__).resolve().parents[1] / "vectors" / "state_sync.json"
VECTORS = json.loads(PATH.read_text())
SNAPSHOT = VECTORS["snapshot"]


def test_the_transaction_id_log_matches_the_shared_vectors():
    log = txindex.EMPTY
    for step in VECTORS["txlog"]["blocks"]:
        leaves = []
        for e in step["entries"]:
            leaf = txindex.entry_leaf(bytes.fromhex(e["id"]), e["height"], e["position"], bytes.fromhex(e["row"]))
            assert leaf.hex() == e["leaf"]
            leaves.append(leaf)
        log = txindex.appended(log, leaves)
        assert log.size == step["size"] and [f.hex() for f in log.frontier] == step["frontier"]
        assert TX_LOG.encode(log).hex() == step["record"]
        assert txindex.root(log).hex() == step["root"]
        assert TX_LOG.decode(bytes.fromhex(step["record"])) == log


def test_transaction_chunks_are_cut_as_the_shared_vectors_say():
    for case in VECTORS["tx_chunk_geometry"]:
        assert [list(c) for c in tx_chunk_geometry(case["size"])] == case["chunks"]


def test_a_snapshot_from_the_shared_vectors_is_accepted_chunk_by_chunk():
    header = HEADER.decode(bytes.fromhex(SNAPSHOT["header"]))
    manifest = bytes.fromhex(SNAPSHOT["manifest"])
    assert hashlib.sha256(manifest).hexdigest() == SNAPSHOT["manifest_hash"]
    assembly = Assembly(header, manifest)
    assert assembly.chunk_count == len(SNAPSHOT["chunks"])
    for index, chunk in enumerate(SNAPSHOT["chunks"]):
        assembly.chunk(index, bytes.fromhex(chunk))
    assembly.finish()


@pytest.mark.parametrize("case", SNAPSHOT["rejected_chunks"], ids=lambda c: c["name"])
def test_rejects_the_bad_chunks_of_the_shared_vectors(case):
    assembly = Assembly(HEADER.decode(bytes.fromhex(SNAPSHOT["header"])), bytes.fromhex(SNAPSHOT["manifest"]))
    with pytest.raises(SnapshotError):
        assembly.chunk(case["index"], bytes.fromhex(case["chunk"]))


def test_rejects_the_manifest_of_the_shared_vectors_under_another_header():
    other = HEADER.decode(bytes.fromhex(SNAPSHOT["previous_header"]))
    with pytest.raises(SnapshotError):
        Assembly(other, bytes.fromhex(SNAPSHOT["manifest"]))


# ---------------------------------------------------------------------------- generating them


def write() -> None:  # pragma: no cover - rewrites the vector file
    PATH.write_text(json.dumps(regenerate(), indent=1) + "\n")


def regenerate() -> dict:  # pragma: no cover
    from dataclasses import replace

    from chainkit import Chain

    from ledger.snapshot.format import CHUNK
    from ledger.snapshot.make import chunk_bytes, plan

    blocks = []
    log = TxLog(0, ())
    entries = [(bytes([n]) * 32, 1 + n // 3, n % 3, hashlib.sha256(bytes([n])).digest()) for n in range(11)]
    for first, last in ((0, 1), (1, 4), (4, 11)):
        batch = entries[first:last]
        leaves = [txindex.entry_leaf(*e) for e in batch]
        log = txindex.appended(log, leaves)
        blocks.append({
            "entries": [{"id": i.hex(), "height": h, "position": p, "row": r.hex(), "leaf": leaf.hex()}
                        for (i, h, p, r), leaf in zip(batch, leaves, strict=True)],
            "size": log.size, "frontier": [f.hex() for f in log.frontier], "record": TX_LOG.encode(log).hex(),
            "root": txindex.root(log).hex()})

    chain = Chain(chain_id="custos-vectors")
    authority, terminal = chain.open_border()
    children = [chain.child_with_history(authority, terminal)[0] for _ in range(3)]
    for _ in range(3):
        chain.pending_crossing(terminal, children[0])  # a child that travels as its own tree
    chain.commit(chain.erase(children[2]))
    chain.pending_crossing(terminal, children[1])
    store = chain.store
    header = store.header(store.height)
    view = store.raw_view()
    p = plan(view, header, target=700)
    chunks = [chunk_bytes(view, p, i) for i in range(p.chunk_count)]
    state = CHUNK.decode(chunks[0])
    part = next(x for x in state.parts if x.records)
    record = part.records[0]
    altered = replace(part, records=(replace(record, value=record.value + b"\x00"), *part.records[1:]))
    tx_index = len(p.state_chunks)
    txs = CHUNK.decode(chunks[tx_index])
    rejected = [
        {"name": "a-record-altered", "index": 0, "chunk": CHUNK.encode(
            replace(state, parts=tuple(altered if x is part else x for x in state.parts))).hex()},
        {"name": "a-transaction-dropped", "index": tx_index, "chunk": CHUNK.encode(
            replace(txs, txs=txs.txs[1:])).hex()},
        {"name": "a-transaction-status-changed", "index": tx_index, "chunk": CHUNK.encode(
            replace(txs, txs=(replace(txs.txs[0], status="denied"), *txs.txs[1:]))).hex()},
        {"name": "another-chunk", "index": 1, "chunk": chunks[0].hex()},
    ]
    return {
        "description": (
            "State sync (docs/adr/0007-state-sync.md). txlog: the transaction-id log (ledger/state/txindex.py), a leaf "
            "being the RFC 6962 leaf hash of tx id || height (8, BE) || position (4, BE) || result row; after each "
            "block's entries, its size, right edge (largest subtree first), the txlog state record (canonical "
            "msgpack) and root. tx_chunk_geometry: (level, first leaf) of each transaction chunk of a log of that "
            "size. snapshot: a header (canonical msgpack), the manifest a node plans for the state after it "
            "(ledger/snapshot/format.py, part target 700 bytes) with its sha256, by which peers offer it, the "
            "chunks in order, all of which a joining node accepts, and chunks it must refuse."),
        "txlog": {"blocks": blocks},
        "tx_chunk_geometry": [{"size": n, "chunks": [list(c) for c in tx_chunk_geometry(n)]}
                              for n in (0, 1, 5, 4096, 4097, 2 * 4096 + 3, 3 * 4096 + 4095)],
        "snapshot": {
            "header": HEADER.encode(header).hex(),
            "previous_header": HEADER.encode(store.header(store.height - 1)).hex(),
            "manifest": p.encoded.hex(), "manifest_hash": p.hash.hex(),
            "chunks": [c.hex() for c in chunks],
            "rejected_chunks": rejected,
        },
    }
