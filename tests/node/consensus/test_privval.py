"""The double-sign guard: what it signs, what it refuses, and what survives a crash."""

from __future__ import annotations

import hashlib
import os

import pytest

from ledger.block import PRECOMMIT, PREVOTE
from ledger.crypto.keys import SigningKey
from node.consensus.errors import DoubleSignRefused, SignerStateError
from node.consensus.privval import FilePrivValidator, MemoryPrivValidator

CHAIN = "custos-test"
KEY = SigningKey(hashlib.sha256(b"privval-test-key").digest())
A = hashlib.sha256(b"block a").digest()
B = hashlib.sha256(b"block b").digest()


@pytest.fixture
def state_path(tmp_path):
    return tmp_path / "priv_validator_state"


@pytest.fixture(params=["memory", "file"])
def signer(request, tmp_path):
    if request.param == "memory":
        return MemoryPrivValidator(KEY, CHAIN)
    return FilePrivValidator(tmp_path / "state", KEY, CHAIN)


def test_signs_votes_and_proposals_that_verify(signer):
    p = signer.sign_proposal(1, 0, -1, A, b"value")
    v = signer.sign_vote(PREVOTE, 1, 0, A)
    c = signer.sign_vote(PRECOMMIT, 1, 0, A)
    assert p.verify(CHAIN) and v.verify(CHAIN) and c.verify(CHAIN)
    assert not v.verify("another-chain")


def test_same_vote_returns_the_same_signature(signer):
    first = signer.sign_vote(PREVOTE, 3, 1, A)
    again = signer.sign_vote(PREVOTE, 3, 1, A)
    assert again.signature == first.signature


def test_rejects_a_conflicting_vote_at_the_same_height_round_step(signer):
    signer.sign_vote(PREVOTE, 3, 1, A)
    with pytest.raises(DoubleSignRefused) as info:
        signer.sign_vote(PREVOTE, 3, 1, B)
    assert info.value.last == (3, 1, 2) and info.value.asked == (3, 1, 2)
    with pytest.raises(DoubleSignRefused):
        signer.sign_vote(PREVOTE, 3, 1, None)


@pytest.mark.parametrize("kind, height, round_", [
    (PREVOTE, 3, 1),  # lower step
    (PRECOMMIT, 3, 0),  # lower round
    (PRECOMMIT, 2, 9),  # lower height
])
def test_rejects_regressions(signer, kind, height, round_):
    signer.sign_vote(PRECOMMIT, 3, 1, A)
    with pytest.raises(DoubleSignRefused):
        signer.sign_vote(kind, height, round_, A)


def test_rejects_a_proposal_after_the_prevote_of_its_round(signer):
    signer.sign_vote(PREVOTE, 1, 0, None)
    with pytest.raises(DoubleSignRefused):
        signer.sign_proposal(1, 0, -1, A, b"value")
    assert signer.sign_proposal(1, 1, -1, A, b"value").verify(CHAIN)


def test_rejects_a_different_proposal_for_the_same_round(signer):
    signer.sign_proposal(1, 0, -1, A, b"value a")
    with pytest.raises(DoubleSignRefused):
        signer.sign_proposal(1, 0, -1, B, b"value b")


def test_rejects_a_conflicting_vote_after_reopening_from_disk(state_path):
    FilePrivValidator(state_path, KEY, CHAIN).sign_vote(PRECOMMIT, 7, 2, A)
    reopened = FilePrivValidator(state_path, KEY, CHAIN, create=False)
    with pytest.raises(DoubleSignRefused):
        reopened.sign_vote(PRECOMMIT, 7, 2, B)
    with pytest.raises(DoubleSignRefused):
        reopened.sign_vote(PREVOTE, 7, 2, A)


def test_same_vote_after_reopening_returns_the_stored_signature(state_path):
    first = FilePrivValidator(state_path, KEY, CHAIN).sign_vote(PREVOTE, 7, 2, A)
    again = FilePrivValidator(state_path, KEY, CHAIN).sign_vote(PREVOTE, 7, 2, A)
    assert again.signature == first.signature


def test_crash_between_write_and_rename_leaves_the_old_state(state_path, monkeypatch):
    signer = FilePrivValidator(state_path, KEY, CHAIN)
    signer.sign_vote(PREVOTE, 5, 0, A)
    before = state_path.read_bytes()

    def crash(src, dst):
        raise OSError("power cut before the rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(SignerStateError):
        signer.sign_vote(PRECOMMIT, 5, 0, A)  # no signature is returned
    monkeypatch.undo()
    assert state_path.read_bytes() == before
    assert state_path.with_name(state_path.name + ".tmp").exists()  # the torn temporary file
    reopened = FilePrivValidator(state_path, KEY, CHAIN)
    assert reopened.state.hrs == (5, 0, 2)
    assert not state_path.with_name(state_path.name + ".tmp").exists()
    # the precommit was never released, so signing it now is fine
    assert reopened.sign_vote(PRECOMMIT, 5, 0, B).verify(CHAIN)


def test_failed_write_does_not_advance_the_state_in_memory(state_path, monkeypatch):
    signer = FilePrivValidator(state_path, KEY, CHAIN)
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError("disk gone")))
    with pytest.raises(SignerStateError):
        signer.sign_vote(PREVOTE, 1, 0, A)
    monkeypatch.undo()
    assert signer.state.hrs == (0, 0, 0)


def test_rejects_a_missing_state_file_unless_creating(state_path):
    with pytest.raises(SignerStateError):
        FilePrivValidator(state_path, KEY, CHAIN, create=False)
    FilePrivValidator(state_path, KEY, CHAIN)
    assert state_path.exists()


def test_rejects_a_corrupt_state_file(state_path):
    state_path.write_bytes(b"\x92not a state")
    with pytest.raises(SignerStateError):
        FilePrivValidator(state_path, KEY, CHAIN)


def test_rejects_a_state_file_of_another_key_or_chain(state_path):
    FilePrivValidator(state_path, KEY, CHAIN).sign_vote(PREVOTE, 1, 0, A)
    with pytest.raises(SignerStateError):
        FilePrivValidator(state_path, SigningKey(b"\x01" * 32), CHAIN)
    with pytest.raises(SignerStateError):
        FilePrivValidator(state_path, KEY, "another-chain")


def test_state_file_is_private(state_path):
    FilePrivValidator(state_path, KEY, CHAIN).sign_vote(PREVOTE, 1, 0, A)
    assert state_path.stat().st_mode & 0o077 == 0
