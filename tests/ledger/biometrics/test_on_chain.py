"""The chain checks biometric presence: a crossing must be signed with the key a fresh scan of
the enrolled child unlocks; another key, or the commitment replaced by a re-enrolment, is refused."""

from __future__ import annotations

import pytest
from chainkit import Chain

from ledger.biometrics import ReproductionFailed, enrol, new_secret, reproduce, transaction_key
from ledger.errors import BiometricMismatch


def _enrolled(chain: Chain, authority, pairs, i: int):
    """Enrol eye ``i`` of the synthetic set: the chain sees only the derived public key."""
    secret = new_secret()
    enrolment = enrol(pairs.enrol.codes[i], pairs.enrol.masks[i], secret)
    child = chain.new_child()
    child.biometric = transaction_key(secret)
    assert child.biometric.public == enrolment.commitment
    chain.commit(chain.enrol(authority, child))
    return child, enrolment.helper


def _scan_key(pairs, i, helper):
    """What a terminal does: unlock the card's helper data with a fresh scan."""
    return transaction_key(reproduce(pairs.probe.codes[i], pairs.probe.masks[i], helper))


def test_crossing_signed_with_the_key_a_fresh_scan_unlocks_is_accepted(chain: Chain, authority, terminal, pairs):
    child, helper = _enrolled(chain, authority, pairs, 0)
    child.biometric = _scan_key(pairs, 0, helper)
    request = chain.crossing(terminal, child)
    chain.commit(request)
    assert chain.status(request) == "pending"


def test_rejects_a_crossing_signed_with_another_eyes_key(chain: Chain, authority, terminal, pairs):
    child, helper = _enrolled(chain, authority, pairs, 1)
    _other, other_helper = _enrolled(chain, authority, pairs, 2)
    # the other child's eye unlocks only its own card; its key does not match this child
    with pytest.raises(ReproductionFailed):
        reproduce(pairs.probe.codes[2], pairs.probe.masks[2], helper)
    child.biometric = _scan_key(pairs, 2, other_helper)
    chain.assert_rejected(chain.crossing(terminal, child), BiometricMismatch)


def test_reenrolment_keeps_the_history_and_retires_the_old_commitment(chain: Chain, authority, terminal, pairs):
    child, helper = _enrolled(chain, authority, pairs, 3)
    child.biometric = _scan_key(pairs, 3, helper)
    first = chain.crossing(terminal, child)
    chain.commit(first)
    old_key = child.biometric
    # years later: a new scan, a fresh secret, a new commitment for the same identity
    secret = new_secret()
    fresh = enrol(pairs.probe.codes[3], pairs.probe.masks[3], secret)
    new_key = transaction_key(secret)
    chain.commit(chain.reenrol(authority, child, new_key))
    assert chain.identity(child).commitment == fresh.commitment
    assert chain.request(first).identity == child.identity  # the history stays with the identity
    child.biometric = old_key
    err = chain.assert_rejected(chain.crossing(terminal, child), BiometricMismatch)
    assert "retired" in str(err)  # the terminal is told the child was re-enrolled
    child.biometric = new_key
    second = chain.crossing(terminal, child)
    chain.commit(second)
    assert chain.status(second) == "pending"
