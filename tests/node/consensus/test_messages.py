"""Consensus messages on the wire: canonical, bounded, signed for one chain and one purpose."""

from __future__ import annotations

import hashlib

import pytest

from ledger.block import PREVOTE, DuplicateVoteEvidence, sign_vote
from ledger.crypto.keys import DOMAIN_VOTE, SigningKey
from ledger.encoding import encode
from ledger.errors import DecodeError
from node.consensus.messages import (
    MAX_VALUE_BYTES,
    PROPOSAL,
    Proposal,
    decode_message,
    encode_message,
    sign_proposal,
)

CHAIN = "custos-test"
KEY = SigningKey(hashlib.sha256(b"messages-test-key").digest())
VALUE = b"a block"
VID = hashlib.sha256(VALUE).digest()


def test_proposal_vote_and_evidence_round_trip():
    p = sign_proposal(KEY, CHAIN, 4, 2, 1, VID, VALUE)
    v = sign_vote(KEY, CHAIN, PREVOTE, 4, 2, VID)
    e = DuplicateVoteEvidence.of(v, sign_vote(KEY, CHAIN, PREVOTE, 4, 2, None))
    for msg in (p, v, e):
        assert decode_message(encode_message(msg)) == msg


def test_proposal_signature_binds_chain_and_every_signed_field():
    p = sign_proposal(KEY, CHAIN, 4, 2, 1, VID, VALUE)
    assert p.verify(CHAIN)
    assert not p.verify("another-chain")
    for changed in (Proposal(5, 2, 1, VID, VALUE, p.proposer, p.signature),
                    Proposal(4, 3, 1, VID, VALUE, p.proposer, p.signature),
                    Proposal(4, 2, 0, VID, VALUE, p.proposer, p.signature),
                    Proposal(4, 2, 1, bytes(32), VALUE, p.proposer, p.signature)):
        assert not changed.verify(CHAIN)


def test_rejects_a_vote_signature_passed_off_as_a_proposal():
    p = sign_proposal(KEY, CHAIN, 4, 2, 1, VID, VALUE)
    vote_sig = KEY.sign(DOMAIN_VOTE, CHAIN, p.digest())
    assert not Proposal(4, 2, 1, VID, VALUE, KEY.public, vote_sig).verify(CHAIN)


@pytest.mark.parametrize("round_, pol_round", [(0, 0), (2, 2), (2, 5), (3, -2)])
def test_rejects_a_pol_round_that_is_not_earlier(round_, pol_round):
    with pytest.raises(DecodeError):
        Proposal(1, round_, pol_round, VID, VALUE, KEY.public, bytes(64))


def test_rejects_an_unknown_message_type():
    with pytest.raises(DecodeError, match="unknown message type"):
        decode_message(encode({"type": "gossip", "body": {}}))


def test_rejects_extra_envelope_fields():
    p = sign_proposal(KEY, CHAIN, 1, 0, -1, VID, VALUE)
    with pytest.raises(DecodeError):
        decode_message(encode({"type": "proposal", "body": PROPOSAL.wire(p), "extra": 1}))


def test_rejects_a_value_above_the_limit():
    body = PROPOSAL.wire(sign_proposal(KEY, CHAIN, 1, 0, -1, VID, VALUE))
    body["value"] = b"\x00" * (MAX_VALUE_BYTES + 1)
    with pytest.raises(DecodeError, match="exceed"):
        decode_message(encode({"type": "proposal", "body": body}))


def test_rejects_an_oversized_message_before_parsing():
    with pytest.raises(DecodeError, match="exceed"):
        decode_message(b"\x00" * (MAX_VALUE_BYTES + 10_000))


def test_rejects_non_canonical_bytes():
    v = sign_vote(KEY, CHAIN, PREVOTE, 1, 0, VID)
    data = encode_message(v)
    with pytest.raises(DecodeError):
        decode_message(data + b"\x00")
