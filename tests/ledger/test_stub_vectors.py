"""The shared vectors of erased-transaction stubs (tests/vectors/erased_stubs.json).

Any other implementation (an auditor's, the browser client's) must give the same stubs, leaf
hashes and transaction roots from the same envelopes.
"""

from __future__ import annotations

import json
from pathlib import Path

from ledger.block import erased_positions, is_stub, make_stub, stub_parts, tx_leaf, tx_root
from ledger.state.machine import result_row, results_hash
from ledger.tx.envelope import decode_tx

PATH = Path(__file__).resolve().parents[1] / "vectors" / "erased_stubs.json"
VECTORS = json.loads(PATH.read_text())


def test_stubs_match_the_shared_vectors():
    for case in VECTORS["cases"]:
        envelope, stub = bytes.fromhex(case["envelope"]), bytes.fromhex(case["stub"])
        tx = decode_tx(envelope)
        assert tx.id.hex() == case["tx_id"]
        ref = None if case["ref"] is None else bytes.fromhex(case["ref"])
        row = result_row(tx.id, case["status"], ref)
        assert row.hex() == case["result_row"]
        assert make_stub(envelope, tx.id, row) == stub and is_stub(stub) and not is_stub(envelope)
        assert stub_parts(stub) == (bytes.fromhex(case["leaf_hash"]), tx.id, row)
        assert tx_leaf(stub) == tx_leaf(envelope) == bytes.fromhex(case["leaf_hash"])


def test_a_blocks_root_is_the_same_with_stubs_in_the_shared_vectors():
    block = VECTORS["block"]
    entries = [bytes.fromhex(e) for e in block["entries"]]
    stubbed = [bytes.fromhex(e) for e in block["stubbed_entries"]]
    assert tx_root(entries).hex() == tx_root(stubbed).hex() == block["tx_root"]
    assert erased_positions(stubbed) == block["erased_positions"]
    rows = [bytes.fromhex(r) for r in block["result_rows"]]
    assert results_hash(rows).hex() == block["results_hash"]
    for position in block["erased_positions"]:
        assert stub_parts(stubbed[position])[2] == rows[position]


def regenerate() -> dict:  # pragma: no cover - rewrites the vector file from its envelopes
    from ledger.merkle import leaf_hash

    doc = dict(VECTORS)
    doc["description"] = ("Stubs of erased transactions (ledger/block.py): 0x00 || RFC 6962 leaf hash of the "
                          "envelope || transaction id || hash of the result row (ledger/state/machine.py "
                          "result_row over [tx id, status, ref]). A block's tx_root is the same whether its "
                          "entries are envelopes or stubs, and its results hash is over every position's row.")
    statuses = {"enrolment": ("ok", None), "crossing": ("pending", None)}
    for case in doc["cases"]:
        envelope = bytes.fromhex(case["envelope"])
        tx = decode_tx(envelope)
        status, ref = statuses.get(case["name"], ("ok", None))
        row = result_row(tx.id, status, ref)
        case.update(status=status, ref=ref, result_row=row.hex(), leaf_hash=leaf_hash(envelope).hex(),
                    stub=make_stub(envelope, tx.id, row).hex())
    block = doc["block"]
    entries = [bytes.fromhex(e) for e in block["entries"]]
    rows, stubbed = [], []
    for position, entry in enumerate(entries):
        tx = decode_tx(entry)
        row = result_row(tx.id, "ok", None)
        rows.append(row)
        stubbed.append(make_stub(entry, tx.id, row) if position in block["erased_positions"] else entry)
    block.update(stubbed_entries=[e.hex() for e in stubbed], result_rows=[r.hex() for r in rows],
                 results_hash=results_hash(rows).hex())
    return doc


if __name__ == "__main__":  # pragma: no cover
    PATH.write_text(json.dumps(regenerate(), indent=1) + "\n")
