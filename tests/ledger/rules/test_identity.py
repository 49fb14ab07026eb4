"""Enrolment authorities: enrol a child, change guardianship by court order, re-enrol."""

from __future__ import annotations

import pytest
from chainkit import Chain, keys

from ledger.crypto.keys import SigningKey
from ledger.errors import (
    AlreadyExists,
    BiometricMismatch,
    DecodeError,
    InvalidValue,
    MissingSignature,
    NotFound,
    NotGuardian,
    RevokedKey,
    UnexpectedSignature,
    UnknownKey,
    WrongRole,
)
from ledger.state.records import COMMITMENT_INDEX, k_commitment, k_ward, load
from ledger.state.view import scan_prefix
from ledger.tx.bodies import ENROL, Enrol, Policy
from ledger.tx.envelope import make_tx


def wards_of(chain: Chain, guardian: SigningKey) -> list[bytes]:
    prefix = k_ward(guardian.public)
    return [key[len(prefix):] for key, _ in scan_prefix(chain.store.state, prefix)]


# --------------------------------------------------------------------------- enrolment


def test_authority_enrols_a_child_with_guardians_and_policy(chain: Chain, authority):
    child = chain.new_child(guardians=3, approvals=2, veto=False)
    chain.commit(chain.enrol(authority, child))
    record = chain.identity(child)
    assert record.commitment == child.biometric.public
    assert record.guardians == child.guardian_keys
    assert record.policy == Policy(2, child.policy.deadline, False)
    assert record.majority_day == child.majority_day
    assert (record.authority, record.version, record.enrolled_height) == (authority.public, 1, chain.height)
    assert all(wards_of(chain, g) == [child.identity] for g in child.guardians)
    index = load(chain.store.state, k_commitment(child.biometric.public), COMMITMENT_INDEX)
    assert (index.identity, index.active) == (child.identity, True)


def test_rejects_enrolment_by_an_unregistered_key(chain: Chain, border):
    chain.assert_rejected(chain.enrol(SigningKey.generate(), chain.new_child()), UnknownKey)


def test_rejects_enrolment_by_a_terminal(chain: Chain, terminal):
    child = chain.new_child()
    chain.assert_rejected(chain.enrol(terminal.key, child), WrongRole)
    assert chain.identity(child) is None


def test_rejects_enrolment_by_a_revoked_authority(chain: Chain, authority):
    chain.commit(chain.revoke(authority.public))
    chain.assert_rejected(chain.enrol(authority, chain.new_child()), RevokedKey)


def test_rejects_enrolment_without_the_biometric_signature(chain: Chain, authority):
    # the authority must prove it derived the commitment from a scan: the commitment co-signs
    child = chain.new_child()
    chain.assert_rejected(chain.enrol(authority, child, signers=[authority]), MissingSignature)


def test_rejects_enrolment_with_an_extra_signature(chain: Chain, authority):
    child = chain.new_child()
    chain.assert_rejected(chain.enrol(authority, child, signers=[authority, child.biometric, child.guardians[0]]),
                          UnexpectedSignature)


def test_rejects_enrolling_an_identity_twice(chain: Chain, authority):
    child = chain.enrol_child(authority)
    again = chain.new_child()
    again.identity = child.identity
    chain.assert_rejected(chain.enrol(authority, again), AlreadyExists)


def test_rejects_a_biometric_commitment_used_by_another_child(chain: Chain, authority):
    child = chain.enrol_child(authority)
    other = chain.new_child()
    other.biometric = child.biometric
    chain.assert_rejected(chain.enrol(authority, other), AlreadyExists)


def test_rejects_a_policy_that_needs_more_approvals_than_guardians(chain: Chain, authority):
    chain.assert_rejected(chain.enrol(authority, chain.new_child(guardians=2, approvals=3)), InvalidValue)


def test_rejects_the_child_as_its_own_guardian(chain: Chain, authority):
    child = chain.new_child()
    child.guardians = [child.biometric, child.guardians[0]]
    chain.assert_rejected(chain.enrol(authority, child), InvalidValue)


def test_rejects_a_guardian_key_that_holds_an_authority_role(chain: Chain, border):
    authority, terminal = border
    child = chain.new_child()
    child.guardians = [terminal.key, child.guardians[0]]
    chain.assert_rejected(chain.enrol(authority, child), InvalidValue)


def test_rejects_a_revoked_guardian_key(chain: Chain, authority):
    first = chain.enrol_child(authority)
    chain.commit(chain.revoke(first.guardians[0].public))
    sibling = chain.new_child()
    sibling.guardians = [first.guardians[0], sibling.guardians[0]]
    chain.assert_rejected(chain.enrol(authority, sibling), RevokedKey)


@pytest.mark.parametrize(
    "guardians, policy",
    [
        ("unsorted", Policy(1, 60_000, True)),
        ("duplicate", Policy(1, 60_000, True)),
        ("nine", Policy(1, 60_000, True)),
        ("none", Policy(1, 60_000, True)),
        ("two", Policy(0, 60_000, True)),  # zero approvals
        ("two", Policy(1, 0, True)),  # no time to decide
        ("two", Policy(1, 31 * 86_400_000, True)),  # more than 30 days
    ],
)
def test_rejects_malformed_enrolment_before_it_is_signed(chain: Chain, guardians, policy):
    g = sorted(k.public for k in keys(9))
    lists = {"unsorted": (g[1], g[0]), "duplicate": (g[0], g[0]), "nine": tuple(g), "none": (), "two": (g[0], g[1])}
    child = SigningKey.generate()
    body = Enrol(SigningKey.generate().public, b"\x07" * 16, child.public, 0, lists[guardians], policy)
    with pytest.raises(DecodeError):
        make_tx(ENROL, body, 1, [child], chain.chain_id)


# --------------------------------------------------------------------------- court orders


def test_court_order_replaces_guardians_and_policy(chain: Chain, authority, terminal):
    child = chain.enrol_child(authority)
    mother, father = child.guardians
    foster = SigningKey.generate()
    chain.commit(chain.update_guardians(authority, child, [mother, foster], Policy(1, child.policy.deadline, False)))

    record = chain.identity(child)
    assert record.guardians == tuple(sorted([mother.public, foster.public]))
    assert record.policy.approvals == 1 and record.version == 2
    assert wards_of(chain, father) == [] and wards_of(chain, foster) == [child.identity]

    request = chain.pending_crossing(terminal, child)
    chain.assert_rejected(chain.approve(father, request, child), NotGuardian)
    chain.commit(chain.approve(foster, request, child))
    assert chain.status(request) == "permitted"


def test_court_order_applies_to_pending_requests_at_once(chain: Chain, authority, terminal):
    # 2-of-2, the father approved; the order replaces him with a foster parent: his approval no
    # longer counts, the request waits for the mother and the foster parent
    child = chain.enrol_child(authority, guardians=2, approvals=2, veto=True)
    request = chain.pending_crossing(terminal, child)
    mother, father = child.guardians
    chain.commit(chain.approve(father, request, child))
    foster = SigningKey.generate()
    chain.commit(chain.update_guardians(authority, child, [mother, foster]))
    record = chain.request(request)
    assert record.status == "pending" and record.approvals == ()
    assert record.guardians == tuple(sorted([mother.public, foster.public]))
    chain.assert_rejected(chain.approve(father, request, child), NotGuardian)
    chain.commit(chain.approve(mother, request, child), chain.approve(foster, request, child))
    assert chain.status(request) == "permitted"


def test_court_order_that_settles_a_pending_request_closes_it(chain: Chain, authority, terminal):
    # the mother approved; an order leaves her sole guardian needing one approval: permitted now
    child = chain.enrol_child(authority, guardians=2, approvals=2)
    request = chain.pending_crossing(terminal, child)
    mother, _ = child.guardians
    chain.commit(chain.approve(mother, request, child))
    block = chain.commit(chain.update_guardians(authority, child, [mother], Policy(1, child.policy.deadline, True)))
    assert chain.status(request) == "permitted"
    assert chain.request(request).closed_height == block.height


def test_court_order_leaving_too_few_guardians_to_approve_denies_and_alerts(chain: Chain, authority, terminal):
    # 2-of-3 without veto, one guardian denied; the order removes a guardian who had not decided:
    # two remain, one of whom denied, so two approvals can no longer come
    child = chain.enrol_child(authority, guardians=3, approvals=2, veto=False)
    request = chain.pending_crossing(terminal, child)
    a, b, c = child.guardians
    chain.commit(chain.deny(a, request, child))
    assert chain.status(request) == "pending"
    chain.commit(chain.update_guardians(authority, child, [a, b]))
    assert chain.status(request) == "denied"
    assert [alert.request for alert in chain.alerts()] == [request.id]


def test_any_registered_authority_may_record_a_court_order(chain: Chain, authority):
    child = chain.enrol_child(authority)
    court_registry = SigningKey.generate()
    chain.commit(chain.register_authority(court_registry.public, "family court"))
    chain.commit(chain.update_guardians(court_registry, child, child.guardians[:1], Policy(1, 60_000, True)))
    assert chain.identity(child).guardians == (child.guardians[0].public,)


def test_rejects_a_court_order_for_an_unenrolled_child(chain: Chain, authority):
    child = chain.new_child()
    chain.assert_rejected(chain.update_guardians(authority, child, child.guardians), NotFound)


def test_rejects_a_court_order_from_a_key_without_the_authority_role(chain: Chain, border):
    authority, terminal = border
    child = chain.enrol_child(authority)
    chain.assert_rejected(chain.update_guardians(SigningKey.generate(), child, child.guardians[:1]), UnknownKey)
    chain.assert_rejected(chain.update_guardians(terminal.key, child, child.guardians[:1]), WrongRole)


def test_rejects_a_court_order_not_signed_by_the_authority_it_names(chain: Chain, authority):
    child = chain.enrol_child(authority)
    order = chain.update_guardians(authority, child, child.guardians[:1], Policy(1, 60_000, True),
                                   signers=[child.guardians[0]])
    chain.assert_rejected(order, MissingSignature)
    assert chain.identity(child).version == 1


def test_rejects_a_court_order_whose_policy_cannot_be_met(chain: Chain, authority):
    child = chain.enrol_child(authority)
    chain.assert_rejected(chain.update_guardians(authority, child, child.guardians[:1]), InvalidValue)
    assert chain.identity(child).guardians == child.guardian_keys


# --------------------------------------------------------------------------- re-enrolment


def test_reenrolment_replaces_the_commitment(chain: Chain, authority, terminal):
    child = chain.enrol_child(authority, minor=False)
    old, new = child.biometric, SigningKey.generate()
    chain.commit(chain.reenrol(authority, child, new))
    record = chain.identity(child)
    assert (record.commitment, record.version) == (new.public, 2)
    retired = load(chain.store.state, k_commitment(old.public), COMMITMENT_INDEX)
    assert (retired.identity, retired.active) == (child.identity, False)

    # a crossing signed with the old biometric key is refused; the new one works
    chain.assert_rejected(chain.crossing(terminal, child), BiometricMismatch)
    child.biometric = new
    request = chain.crossing(terminal, child)
    chain.commit(request)
    assert chain.status(request) == "permitted"


def test_rejects_reenrolment_with_a_retired_commitment(chain: Chain, authority):
    child = chain.enrol_child(authority)
    old = child.biometric
    chain.commit(chain.reenrol(authority, child, SigningKey.generate()))
    chain.assert_rejected(chain.reenrol(authority, child, old), AlreadyExists)


def test_rejects_reenrolment_with_another_childs_commitment(chain: Chain, authority):
    child, other = chain.enrol_child(authority), chain.enrol_child(authority)
    chain.assert_rejected(chain.reenrol(authority, child, other.biometric), AlreadyExists)


def test_rejects_reenrolment_without_the_new_biometric_signature(chain: Chain, authority):
    child = chain.enrol_child(authority)
    chain.assert_rejected(chain.reenrol(authority, child, SigningKey.generate(), signers=[authority]),
                          MissingSignature)
    assert chain.identity(child).commitment == child.biometric.public


def test_rejects_reenrolment_of_an_unenrolled_child(chain: Chain, authority):
    chain.assert_rejected(chain.reenrol(authority, chain.new_child(), SigningKey.generate()), NotFound)


def test_rejects_reenrolment_with_a_guardians_key(chain: Chain, authority):
    child = chain.enrol_child(authority)
    chain.assert_rejected(chain.reenrol(authority, child, child.guardians[0]), InvalidValue)


def test_rejects_reenrolment_by_a_terminal(chain: Chain, border):
    authority, terminal = border
    child = chain.enrol_child(authority)
    chain.assert_rejected(chain.reenrol(terminal.key, child, SigningKey.generate()), WrongRole)
