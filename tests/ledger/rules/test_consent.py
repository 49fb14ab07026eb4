"""Travel consents: guardians permit a future crossing in advance, within a window and limits."""

from __future__ import annotations

import pytest
from chainkit import DAY, HOUR, Chain

from ledger.crypto.keys import SigningKey
from ledger.errors import (
    ConsentNotActive,
    InvalidValue,
    MissingSignature,
    NotFound,
    NotGuardian,
    RevokedKey,
    UnexpectedSignature,
)
from ledger.tx.bodies import ANY, ENTRY, EXIT, Policy

AUNT = b"aunt-tag-0000001"
STRANGER = b"stranger-tag-002"


@pytest.fixture
def child(chain: Chain, authority):
    return chain.enrol_child(authority)


def test_consent_covers_a_crossing_which_is_permitted_with_the_consent_referenced(chain: Chain, child, terminal):
    consent = chain.grant_consent(child, uses=3, companion=AUNT)
    chain.commit(consent)
    assert chain.location(consent).ref == consent.id

    request = chain.crossing(terminal, child, companion=AUNT)
    block = chain.commit(request)
    record = chain.request(request)
    assert (record.status, record.consent, record.closed_height) == ("permitted", consent.id, block.height)
    assert (chain.location(request).status, chain.location(request).ref) == ("permitted", consent.id)
    assert chain.consent(consent).uses_left == 2
    assert [e.kind for e in block.changes.events] == ["crossing.closed"]  # nobody is asked to decide


def test_consent_is_used_up(chain: Chain, child, terminal):
    consent = chain.grant_consent(child, uses=1)
    chain.commit(consent)
    first, second = chain.crossing(terminal, child), chain.crossing(terminal, child)
    chain.commit(first)
    chain.commit(second)
    assert (chain.status(first), chain.status(second)) == ("permitted", "pending")
    assert chain.consent(consent).uses_left == 0


def test_revoked_consent_no_longer_covers(chain: Chain, child, terminal):
    consent = chain.grant_consent(child, uses=5)
    chain.commit(consent)
    chain.commit(chain.revoke_consent(child.guardians[1], consent, child))
    assert chain.consent(consent).revoked
    request = chain.crossing(terminal, child)
    chain.commit(request)
    assert chain.status(request) == "pending"
    assert chain.consent(consent).uses_left == 5


@pytest.mark.parametrize(
    "consent, crossing",
    [
        pytest.param(dict(direction=EXIT), dict(direction=ENTRY), id="wrong-direction"),
        pytest.param(dict(destination="RO"), dict(destination="UA"), id="wrong-destination"),
        pytest.param(dict(companion=AUNT), dict(companion=STRANGER), id="wrong-companion"),
        pytest.param(dict(companion=AUNT), dict(companion=None), id="unaccompanied"),
    ],
)
def test_consent_that_does_not_match_leaves_the_crossing_pending(chain: Chain, child, terminal, consent, crossing):
    given = chain.grant_consent(child, uses=5, **consent)
    chain.commit(given)
    request = chain.crossing(terminal, child, **crossing)
    chain.commit(request)
    assert chain.status(request) == "pending"
    assert chain.consent(given).uses_left == 5


def test_consent_does_not_cover_a_crossing_before_its_window(chain: Chain, child, terminal):
    given = chain.grant_consent(child, not_before=chain.now + HOUR, not_after=chain.now + DAY)
    chain.commit(given)
    request = chain.crossing(terminal, child)
    chain.commit(request)
    assert chain.status(request) == "pending"


def test_consent_does_not_cover_a_crossing_after_its_window(chain: Chain, child, terminal):
    given = chain.grant_consent(child, not_before=chain.now, not_after=chain.now + HOUR)
    chain.commit(given)
    chain.advance(2 * HOUR)
    request = chain.crossing(terminal, child)
    chain.commit(request)
    assert chain.status(request) == "pending"


def test_consent_covers_a_crossing_at_the_edges_of_its_window(chain: Chain, child, terminal):
    given = chain.grant_consent(child, not_before=chain.now + HOUR, not_after=chain.now + 2 * HOUR, uses=2)
    chain.commit(given)
    start, end = chain.consent(given).not_before, chain.consent(given).not_after
    at_start = chain.crossing(terminal, child, event_time=start)
    chain.commit(at_start, time=start)
    at_end = chain.crossing(terminal, child, event_time=end)
    chain.commit(at_end, time=end)
    assert (chain.status(at_start), chain.status(at_end)) == ("permitted", "permitted")


@pytest.mark.parametrize(
    "consent, crossing",
    [
        pytest.param(dict(direction=ANY), dict(direction=ENTRY), id="any-direction"),
        pytest.param(dict(destination=None), dict(destination="UA"), id="any-destination"),
        pytest.param(dict(companion=None), dict(companion=STRANGER), id="any-companion"),
    ],
)
def test_consent_without_a_restriction_covers_any_value(chain: Chain, child, terminal, consent, crossing):
    given = chain.grant_consent(child, **consent)
    chain.commit(given)
    request = chain.crossing(terminal, child, **crossing)
    chain.commit(request)
    assert (chain.status(request), chain.request(request).consent) == ("permitted", given.id)


def test_consent_stops_covering_when_a_court_order_removes_its_signer(chain: Chain, authority, terminal):
    child = chain.enrol_child(authority, guardians=2, approvals=1)
    consent = chain.grant_consent(child, signers=child.guardians[:1], uses=5)
    chain.commit(consent)
    chain.commit(chain.update_guardians(authority, child, [child.guardians[1], SigningKey.generate()],
                                        Policy(1, HOUR, True)))
    request = chain.crossing(terminal, child)
    chain.commit(request)
    assert chain.status(request) == "pending"


# --------------------------------------------------------------------------- granting


def test_rejects_a_consent_for_an_unenrolled_child(chain: Chain):
    stranger = chain.new_child()
    chain.assert_rejected(chain.grant_consent(stranger), NotFound)


def test_rejects_a_consent_signed_by_fewer_guardians_than_the_policy_needs(chain: Chain, child):
    consent = chain.grant_consent(child, signers=child.guardians[:1])
    chain.assert_rejected(consent, MissingSignature)
    assert chain.consent(consent) is None


def test_rejects_a_consent_signed_by_someone_who_is_not_a_guardian(chain: Chain, child):
    chain.assert_rejected(chain.grant_consent(child, signers=[*child.guardians, SigningKey.generate()]),
                          UnexpectedSignature)


def test_rejects_a_consent_signed_by_a_revoked_guardian(chain: Chain, child):
    chain.commit(chain.revoke(child.guardians[0].public))
    chain.assert_rejected(chain.grant_consent(child), RevokedKey)


def test_rejects_a_consent_window_that_ends_before_it_begins(chain: Chain, child):
    chain.assert_rejected(chain.grant_consent(child, not_before=chain.now + DAY, not_after=chain.now + DAY),
                          InvalidValue)


def test_rejects_a_consent_window_longer_than_allowed(chain: Chain, child):
    longest = chain.genesis.params.max_consent_ms
    chain.assert_rejected(chain.grant_consent(child, not_after=chain.now + longest + 1), InvalidValue)
    chain.commit(chain.grant_consent(child, not_after=chain.now + longest))


def test_rejects_a_consent_whose_window_is_over(chain: Chain, child):
    chain.assert_rejected(chain.grant_consent(child, not_before=chain.now - 2 * DAY, not_after=chain.now - DAY),
                          InvalidValue)


# --------------------------------------------------------------------------- revoking


def test_any_one_guardian_may_revoke_a_consent(chain: Chain, child):
    consent = chain.grant_consent(child)
    chain.commit(consent)
    revocation = chain.revoke_consent(child.guardians[0], consent, child)
    chain.commit(revocation)
    assert chain.consent(consent).revoked
    assert chain.location(revocation).ref == consent.id


def test_rejects_revoking_a_consent_twice(chain: Chain, child):
    consent = chain.grant_consent(child)
    chain.commit(consent)
    chain.commit(chain.revoke_consent(child.guardians[0], consent, child))
    chain.assert_rejected(chain.revoke_consent(child.guardians[1], consent, child), ConsentNotActive)


def test_rejects_revocation_by_someone_who_is_not_a_guardian(chain: Chain, authority, child):
    neighbour = chain.enrol_child(authority)
    consent = chain.grant_consent(child)
    chain.commit(consent)
    chain.assert_rejected(chain.revoke_consent(neighbour.guardians[0], consent, child), NotGuardian)
    assert not chain.consent(consent).revoked


def test_rejects_revoking_an_unknown_consent(chain: Chain, child):
    chain.assert_rejected(chain.revoke_consent(child.guardians[0], b"\x13" * 32, child), NotFound)


def test_rejects_revoking_a_consent_under_another_childs_name(chain: Chain, authority, child):
    sibling = chain.enrol_child(authority)
    consent = chain.grant_consent(child)
    chain.commit(consent)
    chain.assert_rejected(chain.revoke_consent(child.guardians[0], consent, sibling), NotFound)


def test_rejects_a_revocation_not_signed_by_the_guardian_it_names(chain: Chain, child):
    consent = chain.grant_consent(child)
    chain.commit(consent)
    chain.assert_rejected(chain.revoke_consent(child.guardians[0], consent, child, signers=[child.guardians[1]]),
                          MissingSignature)


def test_rejects_a_revocation_by_a_revoked_guardian(chain: Chain, child):
    consent = chain.grant_consent(child)
    chain.commit(consent)
    chain.commit(chain.revoke(child.guardians[0].public))
    chain.assert_rejected(chain.revoke_consent(child.guardians[0], consent, child), RevokedKey)


def test_consent_of_a_guardian_whose_key_was_revoked_no_longer_covers(chain, authority, terminal):
    child = chain.enrol_child(authority, guardians=2, approvals=1)
    grant = chain.grant_consent(child, signers=[child.guardians[0]])
    chain.commit(grant)
    chain.commit(chain.revoke(child.guardians[0].public, "compromised"))
    request = chain.crossing(terminal, child)
    chain.commit(request)
    assert chain.status(request) == "pending"
    assert chain.consent(grant).uses_left == 1
