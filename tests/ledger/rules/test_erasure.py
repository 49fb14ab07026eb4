"""Erasure: a council order, or the end of the retention period, removes a child's records."""

from __future__ import annotations

from dataclasses import replace

from chainkit import DAY, Chain

from ledger.errors import AlreadyExists, Erased, InsufficientCouncilSignatures, NotFound
from ledger.privacy.tags import child_tag
from ledger.rules.erasure import EVENT_ERASED, NO_ORDER
from ledger.state.records import DEFAULT_PARAMS, ERASED, k_erased, load
from ledger.state.records import Erased as Tombstone
from ledger.tx.bodies import ERASE_BASES


def state_mentions(chain: Chain, needle: bytes) -> list[bytes]:
    """Every state key whose key or value holds ``needle``."""
    return [k for k, v in chain.store.kv.iterate(b"S", b"T") if needle in k or needle in v]


def child_with_history(chain: Chain, authority, terminal):
    """A child with a consent, a permitted, a denied and a pending crossing."""
    child = chain.enrol_child(authority)
    consent = chain.grant_consent(child)
    chain.commit(consent)
    covered = chain.crossing(terminal, child)
    chain.commit(covered)
    denied = chain.pending_crossing(terminal, child, direction="entry")
    chain.commit(chain.deny(child.guardians[0], denied, child))
    pending = chain.pending_crossing(terminal, child)
    assert (chain.status(covered), chain.status(denied)) == ("permitted", "denied")
    return child, pending


def test_council_erases_every_record_of_a_child_and_leaves_a_tombstone(chain: Chain, authority, terminal):
    child, _ = child_with_history(chain, authority, terminal)
    other = chain.enrol_child(authority)
    assert state_mentions(chain, child.identity)
    block = chain.commit(chain.erase(child, order=b"\x05" * 32))
    assert state_mentions(chain, child.identity) == []
    assert state_mentions(chain, child.biometric.public) == []
    assert all(state_mentions(chain, g.public) == [] for g in child.guardians)
    assert load(chain.store.state, k_erased(child_tag(child.identity)), ERASED) == Tombstone(
        block.height, b"\x05" * 32, ERASE_BASES.index("court-order"))
    assert [e.kind for e in block.changes.events] == [EVENT_ERASED]
    assert chain.identity(other) is not None  # nobody else is touched
    assert chain.alerts() == []  # the denied crossing's alert went with the child


def test_an_erased_childs_pending_request_never_expires_later(chain: Chain, authority, terminal):
    child, pending = child_with_history(chain, authority, terminal)
    chain.commit(chain.erase(child))
    block = chain.advance(2 * child.policy.deadline)
    assert block.changes.events == [] and chain.alerts() == []


def test_rejects_erasure_without_a_council_quorum(chain: Chain, authority):
    child = chain.enrol_child(authority)
    chain.assert_rejected(chain.erase(child, signers=chain.council[:1]), InsufficientCouncilSignatures)
    assert chain.identity(child) is not None


def test_rejects_erasing_a_child_twice(chain: Chain, authority):
    child = chain.enrol_child(authority)
    chain.commit(chain.erase(child))
    chain.assert_rejected(chain.erase(child), AlreadyExists)


def test_rejects_erasing_a_tag_no_child_has(chain: Chain):
    chain.assert_rejected(chain.erase(chain.new_child()), NotFound)


def test_rejects_enrolling_an_erased_identity_id_again(chain: Chain, authority):
    child = chain.enrol_child(authority)
    chain.commit(chain.erase(child))
    again = replace(chain.new_child(), identity=child.identity)
    chain.assert_rejected(chain.enrol(authority, again), Erased)


def test_rejects_crossings_and_decisions_for_an_erased_child(chain: Chain, authority, terminal):
    child, pending = child_with_history(chain, authority, terminal)
    chain.commit(chain.erase(child))
    chain.assert_rejected(chain.crossing(terminal, child), NotFound)
    chain.assert_rejected(chain.approve(child.guardians[0], pending, child), NotFound)


def test_an_adult_enrolled_long_after_majority_is_kept_for_the_retention_period(chain: Chain, authority):
    adult = chain.enrol_child(authority, minor=False)
    adult_record = chain.identity(adult)
    assert adult_record.erase_day == chain.now // DAY + chain.genesis.params.retention_days


def test_records_are_erased_when_the_retention_period_after_majority_ends():
    chain = Chain(params=replace(DEFAULT_PARAMS, retention_days=1))
    authority, terminal = chain.open_border()
    child = chain.new_child()
    today = chain.now // DAY
    child.majority_day = today + 1  # of age tomorrow, records kept one day more
    chain.commit(chain.enrol(authority, child))
    chain.commit(chain.crossing(terminal, child))
    assert chain.identity(child).erase_day == today + 2
    chain.commit(time=(today + 2) * DAY - 1)  # the last millisecond before
    assert chain.identity(child) is not None
    block = chain.commit(time=(today + 2) * DAY)
    assert [e.kind for e in block.changes.events] == [EVENT_ERASED]
    assert state_mentions(chain, child.identity) == []
    tombstone = load(chain.store.state, k_erased(child_tag(child.identity)), ERASED)
    assert tombstone == Tombstone(block.height, NO_ORDER, ERASE_BASES.index("retention-expired"))
