"""The minor-crossing rule: adults pass, minors wait for their guardians, or are denied, or expire."""

from __future__ import annotations

import pytest
from chainkit import DAY, HOUR, MINUTE, SECOND, Chain

from ledger.chain import execute_block
from ledger.crypto.keys import SigningKey
from ledger.encoding import decode, encode
from ledger.errors import (
    BiometricMismatch,
    DuplicateDecision,
    DuplicateTransaction,
    EventTimeOutOfRange,
    InvalidBlock,
    InvalidValue,
    MissingSignature,
    NotFound,
    NotGuardian,
    RequestNotPending,
    RevokedKey,
    UnknownKey,
    WrongPost,
    WrongRole,
)
from ledger.rules.crossing import EVENT_CLOSED, EVENT_PENDING
from ledger.tx.bodies import ENTRY
from ledger.tx.envelope import decode_tx


def events_of(executed, kind: str) -> list:
    return [e for e in executed.changes.events if e.kind == kind]


# --------------------------------------------------------------------------- submission


def test_adult_crossing_is_permitted_at_once(chain: Chain, authority, terminal):
    adult = chain.enrol_child(authority, minor=False)
    request = chain.crossing(terminal, adult)
    block = chain.commit(request)
    assert chain.status(request) == "permitted"
    assert chain.location(request).status == "permitted"
    assert chain.request(request).closed_height == block.height
    assert [e.status for e in events_of(block, EVENT_CLOSED)] == ["permitted"]
    assert events_of(block, EVENT_PENDING) == []


def test_crossing_on_the_day_of_majority_counts_as_adult(chain: Chain, authority, terminal):
    child = chain.new_child()
    child.majority_day = chain.now // DAY
    chain.commit(chain.enrol(authority, child))
    request = chain.crossing(terminal, child, event_time=child.majority_day * DAY)
    chain.commit(request)
    assert chain.status(request) == "permitted"


def test_crossing_the_last_millisecond_before_the_majority_day_is_a_minor_s(chain: Chain, authority, terminal):
    child = chain.new_child()
    child.majority_day = chain.now // DAY
    chain.commit(chain.enrol(authority, child))
    request = chain.crossing(terminal, child, event_time=child.majority_day * DAY - 1)
    chain.commit(request)
    assert chain.status(request) == "pending"


def test_minor_crossing_is_pending_and_alerts_the_guardians(chain: Chain, authority, terminal):
    child = chain.enrol_child(authority)
    request = chain.crossing(terminal, child)
    block = chain.commit(request)
    record = chain.request(request)
    assert record.status == "pending" and chain.location(request).status == "pending"
    assert record.deadline == block.block.header.time + child.policy.deadline
    assert record.guardians == child.guardian_keys
    (event,) = events_of(block, EVENT_PENDING)
    assert (event.request, event.identity, event.guardians, event.post) == (
        request.id, child.identity, child.guardian_keys, terminal.post)


def test_rejects_a_crossing_from_a_revoked_terminal(chain: Chain, authority, terminal):
    child = chain.enrol_child(authority)
    chain.commit(chain.revoke(terminal.public, "compromised"))
    chain.assert_rejected(chain.crossing(terminal, child), RevokedKey)


def test_rejects_a_crossing_from_an_unregistered_terminal(chain: Chain, authority, terminal):
    child = chain.enrol_child(authority)
    terminal.key = SigningKey.generate()
    chain.assert_rejected(chain.crossing(terminal, child), UnknownKey)


def test_rejects_a_crossing_submitted_with_an_authority_key(chain: Chain, authority, terminal):
    child = chain.enrol_child(authority)
    terminal.key = authority
    chain.assert_rejected(chain.crossing(terminal, child), WrongRole)


def test_rejects_a_crossing_at_a_post_the_terminal_is_not_bound_to(chain: Chain, authority, terminal):
    child = chain.enrol_child(authority)
    chain.commit(chain.register_post("MD-OTACI"))
    chain.assert_rejected(chain.crossing(terminal, child, post="MD-OTACI"), WrongPost)


def test_rejects_a_crossing_of_an_unenrolled_child(chain: Chain, terminal):
    chain.assert_rejected(chain.crossing(terminal, chain.new_child()), NotFound)


def test_rejects_a_crossing_the_terminal_did_not_sign(chain: Chain, authority, terminal):
    child = chain.enrol_child(authority)
    chain.assert_rejected(chain.crossing(terminal, child, signers=[child.biometric]), MissingSignature)


def test_rejects_a_crossing_without_the_childs_biometric_signature(chain: Chain, authority, terminal):
    child = chain.enrol_child(authority)
    chain.assert_rejected(chain.crossing(terminal, child, signers=[terminal.key]), BiometricMismatch)


def test_rejects_a_crossing_signed_with_another_childs_biometric(chain: Chain, authority, terminal):
    child, other = chain.enrol_child(authority), chain.enrol_child(authority)
    chain.assert_rejected(chain.crossing(terminal, child, signers=[terminal.key, other.biometric]),
                          BiometricMismatch)


def test_rejects_a_crossing_with_an_extra_signature(chain: Chain, authority, terminal):
    child = chain.enrol_child(authority)
    chain.assert_rejected(chain.crossing(terminal, child, signers=[terminal.key, child.biometric,
                                                                   child.guardians[0]]), BiometricMismatch)


def test_rejects_a_crossing_signed_with_a_revoked_biometric_key(chain: Chain, authority, terminal):
    child = chain.enrol_child(authority, minor=False)
    chain.commit(chain.revoke(child.biometric.public, "compromised"))
    chain.assert_rejected(chain.crossing(terminal, child), RevokedKey)


def test_rejects_a_crossing_signed_for_another_chain(chain: Chain, authority, terminal):
    child = chain.enrol_child(authority, minor=False)
    request = chain.crossing(terminal, child)
    chain.chain_id = "custos-staging"  # the terminal is configured for the wrong network
    foreign = chain.crossing(terminal, child)
    chain.chain_id = chain.genesis.chain_id
    assert request.bad_signatures(chain.chain_id) == []
    assert set(foreign.bad_signatures(chain.chain_id)) == {terminal.public, child.biometric.public}
    height = chain.height
    proposed, _ = chain.propose([foreign])
    with pytest.raises(InvalidBlock) as exc:
        execute_block(chain.store, proposed.block)
    assert exc.value.check == "tx-signature"
    assert chain.height == height and chain.location(foreign) is None


def test_event_time_may_lag_for_an_offline_terminal(chain: Chain, authority, terminal):
    adult = chain.enrol_child(authority, minor=False)
    chain.advance(2 * 86_400_000)
    queued = chain.crossing(terminal, adult, event_time=chain.now - 86_400_000)
    chain.commit(queued)
    assert chain.status(queued) == "permitted"


def test_rejects_an_event_time_too_far_after_the_block_time(chain: Chain, authority, terminal):
    adult = chain.enrol_child(authority, minor=False)
    block_time = chain.now + SECOND
    limit = chain.genesis.params.event_future_ms
    chain.assert_rejected(chain.crossing(terminal, adult, event_time=block_time + limit + 1), EventTimeOutOfRange,
                          time=block_time)
    at_limit = chain.crossing(terminal, adult, event_time=chain.now + SECOND + limit)
    chain.commit(at_limit, time=chain.now + SECOND)
    assert chain.status(at_limit) == "permitted"


def test_rejects_an_event_older_than_the_accepted_age(chain: Chain, authority, terminal):
    adult = chain.enrol_child(authority, minor=False)
    max_age = chain.genesis.params.event_max_age_ms
    chain.advance(max_age + HOUR)
    block_time = chain.now + SECOND
    chain.assert_rejected(chain.crossing(terminal, adult, event_time=block_time - max_age - 1),
                          EventTimeOutOfRange, time=block_time)


# --------------------------------------------------------------------------- guardian decisions


def test_two_of_two_approvals_permit_the_crossing(chain: Chain, authority, terminal):
    child = chain.enrol_child(authority)
    mother, father = child.guardians
    request = chain.pending_crossing(terminal, child)

    first = chain.approve(mother, request, child)
    block = chain.commit(first)
    assert chain.status(request) == "pending" and chain.request(request).approvals == (mother.public,)
    assert chain.location(first).status == "pending" and chain.location(first).ref == request.id
    assert events_of(block, EVENT_CLOSED) == []

    block = chain.commit(chain.approve(father, request, child))
    record = chain.request(request)
    assert (record.status, record.closed_height) == ("permitted", block.height)
    assert [(e.request, e.status) for e in events_of(block, EVENT_CLOSED)] == [(request.id, "permitted")]
    assert chain.alerts() == []


def test_one_of_two_policy_needs_a_single_approval(chain: Chain, authority, terminal):
    child = chain.enrol_child(authority, approvals=1)
    request = chain.pending_crossing(terminal, child)
    chain.commit(chain.approve(child.guardians[1], request, child))
    assert chain.status(request) == "permitted"


def test_veto_denial_denies_and_raises_an_alert(chain: Chain, authority, terminal):
    child = chain.enrol_child(authority, guardians=3, approvals=2, veto=True)
    request = chain.pending_crossing(terminal, child, direction="exit")
    chain.commit(chain.approve(child.guardians[0], request, child))
    # two guardians could still approve, but with a veto one denial is enough
    block = chain.commit(chain.deny(child.guardians[1], request, child))
    record = chain.request(request)
    assert (record.status, record.denials, record.closed_height) == ("denied", (child.guardians[1].public,),
                                                                     block.height)
    assert [(e.request, e.status) for e in events_of(block, EVENT_CLOSED)] == [(request.id, "denied")]
    (alert,) = chain.alerts()
    assert (alert.kind, alert.request, alert.identity, alert.post, alert.direction, alert.time) == (
        "denied", request.id, child.identity, terminal.post, "exit", block.block.header.time)
    chain.assert_rejected(chain.approve(child.guardians[2], request, child), RequestNotPending)


def test_non_veto_denial_that_leaves_too_few_guardians_denies(chain: Chain, authority, terminal):
    child = chain.enrol_child(authority, guardians=2, approvals=2, veto=False)
    request = chain.pending_crossing(terminal, child)
    chain.commit(chain.deny(child.guardians[0], request, child))
    assert chain.status(request) == "denied"
    assert [a.kind for a in chain.alerts()] == ["denied"]


def test_non_veto_denial_that_leaves_enough_guardians_keeps_it_pending(chain: Chain, authority, terminal):
    child = chain.enrol_child(authority, guardians=3, approvals=2, veto=False)
    request = chain.pending_crossing(terminal, child)
    chain.commit(chain.deny(child.guardians[0], request, child))
    assert chain.status(request) == "pending"
    chain.commit(chain.approve(child.guardians[1], request, child))
    chain.commit(chain.approve(child.guardians[2], request, child))
    assert chain.status(request) == "permitted" and chain.alerts() == []


def test_unanswered_request_expires_and_raises_an_alert(chain: Chain, authority, terminal):
    child = chain.enrol_child(authority, deadline=10 * MINUTE)
    request = chain.pending_crossing(terminal, child, direction=ENTRY)
    deadline = chain.request(request).deadline
    chain.commit(time=deadline)
    assert chain.status(request) == "pending"  # the deadline itself is still in time
    block = chain.commit(time=deadline + 1)
    record = chain.request(request)
    assert (record.status, record.closed_height) == ("expired", block.height)
    assert [(e.request, e.status) for e in events_of(block, EVENT_CLOSED)] == [(request.id, "expired")]
    (alert,) = chain.alerts()
    assert (alert.kind, alert.request, alert.direction) == ("expired", request.id, ENTRY)


def test_approval_at_the_deadline_still_counts(chain: Chain, authority, terminal):
    child = chain.enrol_child(authority, approvals=1)
    request = chain.pending_crossing(terminal, child)
    chain.commit(chain.approve(child.guardians[0], request, child), time=chain.request(request).deadline)
    assert chain.status(request) == "permitted"


def test_rejects_an_approval_after_the_deadline(chain: Chain, authority, terminal):
    child = chain.enrol_child(authority, approvals=1, deadline=10 * MINUTE)
    request = chain.pending_crossing(terminal, child)
    late = chain.approve(child.guardians[0], request, child)
    # the block after the deadline expires the request first, then refuses the approval
    chain.assert_rejected(late, RequestNotPending, time=chain.request(request).deadline + 1)
    assert chain.status(request) == "expired"
    assert [a.kind for a in chain.alerts()] == ["expired"]


def test_rejects_a_decision_by_a_guardian_of_another_child(chain: Chain, authority, terminal):
    child, neighbour = chain.enrol_child(authority), chain.enrol_child(authority)
    request = chain.pending_crossing(terminal, child)
    chain.assert_rejected(chain.approve(neighbour.guardians[0], request, child), NotGuardian)
    chain.assert_rejected(chain.deny(neighbour.guardians[0], request, child), NotGuardian)
    assert chain.request(request).approvals == () and chain.request(request).denials == ()


def test_rejects_a_decision_that_names_another_child(chain: Chain, authority, terminal):
    child, sibling = chain.enrol_child(authority), chain.enrol_child(authority)
    request = chain.pending_crossing(terminal, child)
    chain.assert_rejected(chain.approve(child.guardians[0], request, sibling), InvalidValue)


def test_rejects_a_second_decision_by_the_same_guardian(chain: Chain, authority, terminal):
    child = chain.enrol_child(authority, guardians=3, approvals=3, veto=False)
    request = chain.pending_crossing(terminal, child)
    chain.commit(chain.approve(child.guardians[0], request, child))
    # a freshly signed second approval (new nonce, so a new transaction) counts for nothing
    chain.assert_rejected(chain.approve(child.guardians[0], request, child), DuplicateDecision)
    # nor may the guardian change their mind
    chain.assert_rejected(chain.deny(child.guardians[0], request, child), DuplicateDecision)
    assert chain.request(request).approvals == (child.guardians[0].public,)


def test_resubmitting_the_same_decision_is_recorded_once(chain: Chain, authority, terminal):
    child = chain.enrol_child(authority, guardians=3, approvals=2)
    request = chain.pending_crossing(terminal, child)
    approval = chain.approve(child.guardians[0], request, child)

    proposed, refused = chain.propose([approval, approval])
    assert proposed.txs == [approval]
    assert [type(err) for _, err in refused] == [DuplicateTransaction]
    chain.finalize(proposed)
    first = chain.location(approval)

    # a terminal or wallet that retries after a timeout gets the original answer, not a second vote
    chain.assert_rejected(approval, DuplicateTransaction)
    assert chain.location(approval) == first
    assert chain.request(request).approvals == (child.guardians[0].public,)
    assert chain.status(request) == "pending"


def test_rejects_an_approval_replayed_onto_another_request(chain: Chain, authority, terminal):
    child = chain.enrol_child(authority, approvals=1)
    a = chain.pending_crossing(terminal, child, direction="exit")
    b = chain.pending_crossing(terminal, child, direction="exit", destination="UA")
    approval_of_a = chain.approve(child.guardians[0], a, child)

    # an attacker keeps the guardian's signature and points the approval at request B
    wire = decode(approval_of_a.raw)
    wire["body"]["request"] = b.id
    replayed = decode_tx(encode(wire))
    assert replayed.id != approval_of_a.id
    assert replayed.bad_signatures(chain.chain_id) == [child.guardians[0].public]
    proposed, _ = chain.propose([replayed])
    with pytest.raises(InvalidBlock) as exc:
        execute_block(chain.store, proposed.block)
    assert exc.value.check == "tx-signature"

    chain.commit(approval_of_a)
    assert (chain.status(a), chain.status(b)) == ("permitted", "pending")
    # and the genuine approval of A, sent again, is not counted again
    chain.assert_rejected(approval_of_a, DuplicateTransaction)


def test_rejects_a_decision_on_a_closed_request(chain: Chain, authority, terminal):
    child = chain.enrol_child(authority, approvals=1)
    request = chain.pending_crossing(terminal, child)
    chain.commit(chain.approve(child.guardians[0], request, child))
    chain.assert_rejected(chain.approve(child.guardians[1], request, child), RequestNotPending)
    chain.assert_rejected(chain.deny(child.guardians[1], request, child), RequestNotPending)
    assert chain.status(request) == "permitted" and chain.alerts() == []


def test_rejects_a_decision_on_an_unknown_request(chain: Chain, authority):
    child = chain.enrol_child(authority)
    chain.assert_rejected(chain.approve(child.guardians[0], b"\x42" * 32, child), NotFound)


def test_rejects_a_decision_not_signed_by_the_guardian_it_names(chain: Chain, authority, terminal):
    child = chain.enrol_child(authority)
    request = chain.pending_crossing(terminal, child)
    forged = chain.approve(child.guardians[0], request, child, signers=[SigningKey.generate()])
    chain.assert_rejected(forged, MissingSignature)


def test_rejects_a_decision_by_a_revoked_guardian(chain: Chain, authority, terminal):
    child = chain.enrol_child(authority, approvals=1)
    request = chain.pending_crossing(terminal, child)
    chain.commit(chain.revoke(child.guardians[0].public, "compromised"))
    chain.assert_rejected(chain.approve(child.guardians[0], request, child), RevokedKey)
    assert chain.status(request) == "pending"


def test_rejects_a_decision_by_a_guardian_removed_by_court_order(chain: Chain, authority, terminal):
    child = chain.enrol_child(authority, guardians=2, approvals=1)
    request = chain.pending_crossing(terminal, child)
    removed, kept = child.guardians
    chain.commit(chain.update_guardians(authority, child, [kept]))
    chain.assert_rejected(chain.approve(removed, request, child), NotGuardian)
    chain.commit(chain.approve(kept, request, child))
    assert chain.status(request) == "permitted"


def test_a_rotated_guardian_key_decides_pending_requests_in_place_of_the_old(chain: Chain, authority, terminal):
    child = chain.enrol_child(authority, guardians=2, approvals=2)
    request = chain.pending_crossing(terminal, child)
    old, other = child.guardians
    chain.commit(chain.approve(old, request, child))
    new = SigningKey.generate()
    chain.commit(chain.rotate(old.public, new.public))
    # the old key's approval now stands for the new key: it cannot approve a second time
    chain.assert_rejected(chain.approve(new, request, child), DuplicateDecision)
    chain.assert_rejected(chain.approve(old, request, child), RevokedKey)
    chain.commit(chain.approve(other, request, child))
    assert chain.status(request) == "permitted"
    assert new.public in chain.request(request).approvals
