"""The signed-read byte layout against the shared vectors (tests/vectors/signed_read.json).

The browser apps sign reads with WebCrypto and test against the same file: a change to the
layout must change the vectors, and then every implementation.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from ledger.crypto.keys import SigningKey, sign_bytes, verify
from node.access.purpose import BadPurpose, Purpose, check_reference, reference_hash
from node.access.signature import digest_preimage, request_digest, sign_request, split_target

VECTORS = json.loads((Path(__file__).parents[2] / "vectors" / "signed_read.json").read_text())
KEY = SigningKey(bytes.fromhex(VECTORS["key"]["seed_hex"]))
NODE = bytes.fromhex(VECTORS["node"]["public_hex"])
CHAIN = VECTORS["chain_id"]


def test_vector_key_is_the_seeds_key():
    assert KEY.public.hex() == VECTORS["key"]["public_hex"]


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: c["name"])
def test_signer_matches_vector(case):
    expected = case["expected"]
    path, query = split_target(case["target"])
    assert (path, query) == (case["path"], case["query"])
    body = bytes.fromhex(case["body_hex"])
    nonce = bytes.fromhex(case["nonce_hex"])
    preimage = digest_preimage(NODE, case["method"], path, query, case["time_ms"], nonce, KEY.public, body,
                               case["purpose"])
    assert preimage.hex() == expected["preimage_hex"]
    digest = request_digest(NODE, case["method"], path, query, case["time_ms"], nonce, KEY.public, body,
                            case["purpose"])
    assert digest.hex() == expected["digest_hex"] == hashlib.sha256(preimage).hexdigest()
    assert sign_bytes(case["domain"], CHAIN, digest).hex() == expected["sign_bytes_hex"]
    headers = sign_request(KEY, CHAIN, case["method"], case["target"], node=NODE, body=body,
                           purpose=case["purpose"] or None, domain=case["domain"], time_ms=case["time_ms"],
                           nonce=nonce)
    assert headers == expected["headers"]
    assert verify(KEY.public, case["domain"], CHAIN, digest, bytes.fromhex(expected["signature_hex"]))


def test_rejects_vector_signature_for_another_node():
    """The binding the vectors pin: the same request signed for one node does not verify for another."""
    case = VECTORS["cases"][0]
    other = SigningKey(bytes(32)).public
    path, query = split_target(case["target"])
    digest = request_digest(other, case["method"], path, query, case["time_ms"], bytes.fromhex(case["nonce_hex"]),
                            KEY.public, b"", case["purpose"])
    assert not verify(KEY.public, case["domain"], CHAIN, digest, bytes.fromhex(case["expected"]["signature_hex"]))


def test_reference_hash_matches_vector_and_reproduces_from_the_key():
    ref = VECTORS["reference"]
    digest, salt = reference_hash(KEY, ref["text"])
    assert (digest.hex(), salt.hex()) == (ref["hash_hex"], ref["salt_hex"])
    assert check_reference(bytes.fromhex(ref["salt_hex"]), ref["text"]).hex() == ref["hash_hex"]


def test_purpose_header_round_trips():
    p = Purpose("case-work", bytes(range(32)))
    assert Purpose.parse(p.header()) == p
    assert Purpose.parse("audit") == Purpose("audit")


@pytest.mark.parametrize("value", ["", "curiosity", "case-work;ref=00", "case-work; ref=" + "0" * 63,
                                   "CASE-WORK", "case-work; ref=" + "A" * 64, "audit "])
def test_rejects_malformed_purpose(value):
    with pytest.raises(BadPurpose):
        Purpose.parse(value)
