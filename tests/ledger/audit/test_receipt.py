"""Receipts: one transaction's inclusion, checked offline against a named trust anchor."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from chainkit import Chain

from ledger.audit.receipt import SetChange, receipt_from_store, verify_receipt
from ledger.block import COMMIT, HEADER
from ledger.crypto.keys import SigningKey
from ledger.state.proof import RecordProof
from ledger.state.records import REQUEST
from ledger.tx.envelope import decode_tx
from ledger.validators import Validator, ValidatorSet

from .chainforge import sign_commit


@pytest.fixture(scope="module")
def single():
    c = Chain()
    authority, terminal = c.open_border()
    child = c.enrol_child(authority)
    request = c.pending_crossing(terminal, child)
    c.commit(c.approve(child.guardians[0], request, child), c.approve(child.guardians[1], request, child))
    c.advance(1_000)
    return c, request


def doc_of(receipt) -> dict:
    return json.loads(json.dumps(receipt.to_json()))  # through JSON, as a file would be


def check_of(verdict) -> str:
    assert verdict.failure is not None, "the receipt verified"
    return verdict.failure.check


def test_receipt_verifies_against_genesis_validators_hash_or_nothing(single):
    c, request = single
    receipt = receipt_from_store(c.store, request.id)
    doc = doc_of(receipt)
    anchored = verify_receipt(doc, genesis=c.genesis)
    assert anchored.ok and anchored.anchored and anchored.anchor == "genesis", anchored.failure
    assert anchored.power == anchored.total_power == 1_000
    assert doc["reported_result"]["status"] == "pending"
    by_hash = verify_receipt(doc, validators_hash=receipt.validators.hash)
    assert by_hash.ok and by_hash.anchor == "validators-hash"
    bare = verify_receipt(doc)
    assert bare.ok and not bare.anchored and "came with it" in bare.anchor_detail
    assert check_of(verify_receipt(doc, validators_hash=bytes(32))) == "anchor-validators"
    assert check_of(verify_receipt(doc, genesis=Chain().genesis)) == "anchor-genesis"


def _flip_hex(text: str, at: int = -3) -> str:
    raw = bytearray(bytes.fromhex(text))
    raw[at] ^= 1
    return raw.hex()


TAMPERS = {
    "log-index": ("inclusion", lambda d: d["log"].__setitem__("index", d["log"]["index"] + 1)),
    "log-path": ("inclusion", lambda d: d["log"].__setitem__("path", list(reversed(d["log"]["path"])))),
    "log-size": ("log-size", lambda d: d["log"].__setitem__("size", d["log"]["size"] + 1)),
    "tx-bytes": ("tx-signature", lambda d: d.__setitem__("tx", _flip_hex(d["tx"]))),
    "tx-id": ("tx-id", lambda d: d.__setitem__("tx_id", "00" * 32)),
    "header-field": ("commit-block", lambda d: _set_header(d, replace(HEADER.decode(bytes.fromhex(d["header"])),
                                                                      time=1))),
    "header-hash": ("header-hash", lambda d: d.__setitem__("header_hash", "00" * 32)),
    "commit-signature": ("commit-signature", lambda d: d.__setitem__("commit", _flip_hex(d["commit"], -60))),
    "commit-signer": ("commit-signer", lambda d: d.__setitem__("commit", _flip_hex(d["commit"], -3))),
    "receipt-encoding": ("receipt-encoding", lambda d: d.__setitem__("header", d["header"][:-2])),
    "height": ("height", lambda d: d.__setitem__("height", 10_000)),
    # "block 5, position 1" for the transaction at block 6, position 0
    "height-within-chain": ("block-height", lambda d: d.__setitem__("height", d["height"] - 1)),
    "position": ("block-position", lambda d: d.__setitem__("index", d["index"] + 1)),
    "block-path": ("block-position", lambda d: d["block"].__setitem__("tx_path", ["00" * 32])),
    "block-header": ("block-height", lambda d: d.__setitem__("block", {**d["block"], "header": d["header"]})),
    "outcome-missing": ("outcome", lambda d: d.__setitem__("outcome", None)),
    "outcome-status": ("outcome", lambda d: d["outcome"].__setitem__("proof", _edit_status(d["outcome"]["proof"]))),
}


def _set_header(doc: dict, header) -> None:
    """A forger's edit: the header and the hash the file names for it, both changed."""
    doc["header"], doc["header_hash"] = HEADER.encode(header).hex(), header.hash.hex()


def _edit_status(proof_hex: str) -> str:
    proof = RecordProof.decode(bytes.fromhex(proof_hex))
    record = replace(REQUEST.decode(proof.value), status="denied")
    return replace(proof, value=REQUEST.encode(record)).encode().hex()


@pytest.mark.parametrize("name", sorted(TAMPERS))
def test_rejects_tampered_receipt(single, name):
    c, request = single
    check, tamper = TAMPERS[name]
    doc = doc_of(receipt_from_store(c.store, request.id))
    tamper(doc)
    assert check_of(verify_receipt(doc, genesis=c.genesis)) == check


def test_receipt_is_anchored_in_genesis_through_validator_set_changes(multi):
    c = multi.chain
    tx_id = decode_tx(c.store.block(c.height - 1).txs[0]).id
    receipt = receipt_from_store(c.store, tx_id)
    # the set changed three times: a newcomer in, a leaver out, a jailed validator out
    assert [ch.header.height + 1 for ch in receipt.set_changes] == [
        multi.heights["newcomer_in_force"], multi.heights["leaver_out"], multi.heights["jailed_out"]]
    verdict = verify_receipt(doc_of(receipt), genesis=c.genesis)
    assert verdict.ok and verdict.anchored, verdict.failure
    assert "3 validator-set change" in verdict.anchor_detail

    # without the changes, the genesis set did not sign the header
    assert check_of(verify_receipt(doc_of(replace(receipt, set_changes=())), genesis=c.genesis)) == "anchor-validators"
    # a change certified by too little of the stake then in force does not carry trust
    first = receipt.set_changes[0]
    weak = sign_commit(multi.validators[:2], c.chain_id, first.header.height, first.header.hash)
    forged = replace(receipt, set_changes=(SetChange(first.header, weak, first.validators), *receipt.set_changes[1:]))
    assert check_of(verify_receipt(doc_of(forged), genesis=c.genesis)) == "commit-quorum"
    # a change naming another next set than its header does
    wrong = replace(receipt, set_changes=(replace(first, validators=receipt.set_changes[1].validators),
                                          *receipt.set_changes[1:]))
    assert check_of(verify_receipt(doc_of(wrong), genesis=c.genesis)) == "set-change"


def test_receipt_round_trips_through_its_json_form(single):
    c, request = single
    receipt = receipt_from_store(c.store, request.id)
    doc = doc_of(receipt)
    assert bytes.fromhex(doc["commit"]) == COMMIT.encode(receipt.commit)
    assert doc["header_hash"] == receipt.header.hash.hex()
    assert verify_receipt(doc, genesis=c.genesis).to_json()["header"]["height"] == c.height


def test_a_crossing_receipt_carries_its_proven_outcome(single):
    c, request = single
    doc = doc_of(receipt_from_store(c.store, request.id))
    verdict = verify_receipt(doc, genesis=c.genesis)
    assert verdict.ok, verdict.failure
    assert doc["reported_result"]["status"] == "pending"  # what the block's result said
    assert verdict.outcome is not None and verdict.outcome["status"] == "permitted"  # proven later
    assert verdict.outcome["height"] == c.height > doc["height"]


def test_rejects_a_receipt_signed_by_a_made_up_validator_set(single):
    """A forger re-signs the header with keys of its own: consistent on its face, refused by
    every anchor."""
    c, request = single
    receipt = receipt_from_store(c.store, request.id)
    forger = SigningKey.generate()
    fake = ValidatorSet([Validator(forger.public, 1)])
    header = replace(receipt.header, validators_hash=fake.hash)
    forged = replace(receipt, header=header, validators=fake,
                     commit=sign_commit([forger], c.chain_id, header.height, header.hash))
    assert check_of(verify_receipt(doc_of(forged), genesis=c.genesis)) == "anchor-validators"
    assert check_of(verify_receipt(doc_of(forged), validators_hash=receipt.validators.hash)) == "anchor-validators"
    unanchored = verify_receipt(doc_of(forged))
    assert unanchored.ok and not unanchored.anchored  # the command exits 2 for this: no anchor
