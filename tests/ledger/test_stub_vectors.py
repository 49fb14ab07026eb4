"""The shared vectors of erased-transaction stubs (tests/vectors/erased_stubs.json).

Any other implementation (an auditor's, the browser client's) must give the same stubs, leaf
hashes and transaction roots from the same envelopes.
"""

from __future__ import annotations

import json
from pathlib import Path

from ledger.block import erased_positions, is_stub, make_stub, stub_parts, tx_leaf, tx_root
from ledger.tx.envelope import decode_tx

VECTORS = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "erased_stubs.json").read_text())


def test_stubs_match_the_shared_vectors():
    for case in VECTORS["cases"]:
        envelope, stub = bytes.fromhex(case["envelope"]), bytes.fromhex(case["stub"])
        tx = decode_tx(envelope)
        assert tx.id.hex() == case["tx_id"]
        assert make_stub(envelope, tx.id) == stub and is_stub(stub) and not is_stub(envelope)
        assert stub_parts(stub) == (bytes.fromhex(case["leaf_hash"]), tx.id)
        assert tx_leaf(stub) == tx_leaf(envelope) == bytes.fromhex(case["leaf_hash"])


def test_a_blocks_root_is_the_same_with_stubs_in_the_shared_vectors():
    block = VECTORS["block"]
    entries = [bytes.fromhex(e) for e in block["entries"]]
    stubbed = [bytes.fromhex(e) for e in block["stubbed_entries"]]
    assert tx_root(entries).hex() == tx_root(stubbed).hex() == block["tx_root"]
    assert erased_positions(stubbed) == block["erased_positions"]
