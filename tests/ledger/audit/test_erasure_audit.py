"""History with erased transactions: a fresh replay and an audit follow the erased children's
state from the recorded slot changes, re-execute everything else, and say what they could not."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
from chainkit import Chain

from ledger.audit.auditor import Auditor
from ledger.audit.source import StoreSource
from ledger.chain import execute_block
from ledger.errors import InvalidBlock
from ledger.privacy.tags import child_tag
from ledger.storage.chainstore import ChainStore, encode_slots
from ledger.storage.erasure import apply_purge, plan_purge

ORDER = b"\x0e" * 32


@pytest.fixture
def erased(tmp_path):
    """A node's store in which one child (consent, permitted, denied and pending crossings) was
    erased by order and purged, while another child's history goes on."""
    chain = Chain(path=tmp_path / "node")
    authority, terminal = chain.open_border()
    # a random identity id: a counter's (fifteen zero bytes and a one) also lies across the
    # empty children of tree nodes, where finding it would mean nothing
    child = replace(chain.new_child(), identity=os.urandom(16))
    chain.commit(chain.enrol(authority, child))
    other = chain.enrol_child(authority)
    chain.commit(chain.grant_consent(child))
    chain.commit(chain.crossing(terminal, child))
    denied = chain.pending_crossing(terminal, child, direction="entry")
    chain.commit(chain.deny(child.guardians[0], denied, child), chain.crossing(terminal, other))
    chain.pending_crossing(terminal, child)
    erasure = chain.commit(chain.erase(child, order=ORDER))
    chain.pending_crossing(terminal, other)
    chain.advance(2 * other.policy.deadline)  # the other child's request expires: state goes on
    purge = plan_purge(chain.store, child_tag(child.identity), child.identity)
    assert purge.stubbed, "the purge found the child's transactions"
    apply_purge(chain.store, purge)
    return chain, child, erasure.height, len(purge.stubbed)


def test_an_audit_passes_through_an_erasure_and_names_it_and_what_it_could_not_check(erased):
    chain, child, height, stubs = erased
    report = Auditor(StoreSource(chain.store.kv, "node store")).run()
    assert report.ok, report.failure
    assert report.checked_height == chain.height
    assert [(e.height, e.child, e.order, e.basis) for e in report.erasures] == [
        (height, child_tag(child.identity), ORDER, "court-order")]
    assert report.counts.erased_txs == stubs
    assert report.counts.followed_slots >= 1
    skipped = {n.check for n in report.not_checked}
    assert {"erased-transactions", "erased-children-state"} <= skipped


def test_a_fresh_node_replays_the_history_from_the_recorded_slot_changes(erased):
    chain, child, _, _ = erased
    fresh = ChainStore.memory(chain.genesis)
    for h in range(1, chain.height + 1):
        executed = execute_block(fresh, chain.store.block(h), slots=dict(chain.store.slots(h)))
        fresh.commit_block(executed, chain.store.commit(h))
    assert fresh.tip == chain.store.tip
    everything = b"".join(k + v for k, v in fresh.kv.iterate(b"", b"\xff"))
    assert child.identity not in everything and child.biometric.public not in everything


def test_rejects_a_recorded_slot_change_that_the_certified_root_does_not_cover(erased):
    chain, child, height, _ = erased
    fresh = ChainStore.memory(chain.genesis)
    tag = child_tag(child.identity)
    forged_at = next(h for h in range(1, height) if tag in dict(chain.store.slots(h)))
    for h in range(1, forged_at):
        fresh.commit_block(execute_block(fresh, chain.store.block(h), slots=dict(chain.store.slots(h))),
                           chain.store.commit(h))
    slots = dict(chain.store.slots(forged_at))
    slots[tag] = b"\x66" * 32
    with pytest.raises(InvalidBlock) as err:
        execute_block(fresh, chain.store.block(forged_at), slots=slots)
    assert err.value.check == "state-root"


def test_an_audit_catches_a_forged_slot_record_in_the_store(erased):
    chain, child, height, _ = erased
    tag = child_tag(child.identity)
    forged_at = next(h for h in range(1, height) if tag in dict(chain.store.slots(h)))
    slots = dict(chain.store.slots(forged_at))
    slots[tag] = b"\x66" * 32
    chain.store.kv.write({b"R" + forged_at.to_bytes(8, "big"): encode_slots(tuple(sorted(slots.items())))},
                         sync=True)
    report = Auditor(StoreSource(chain.store.kv, "node store")).run()
    assert report.failure is not None
    assert (report.failure.height, report.failure.check) == (forged_at, "state-root")


def test_without_recorded_slots_a_block_with_stubs_is_refused(erased):
    chain, _, _, _ = erased
    fresh = ChainStore.memory(chain.genesis)
    with pytest.raises(InvalidBlock) as err:
        for h in range(1, chain.height + 1):
            fresh.commit_block(execute_block(fresh, chain.store.block(h)), chain.store.commit(h))
    assert err.value.check == "tx-erased"


def test_recorded_slots_never_override_a_child_this_executor_holds(erased):
    chain, _, _, _ = erased
    authority, terminal = chain.open_border()
    live = chain.enrol_child(authority)
    request = chain.crossing(terminal, live)
    executed, _ = chain.propose([request])
    lying = {child_tag(live.identity): b"\x55" * 32}
    with pytest.raises(InvalidBlock) as err:  # the lie is ignored, so the executor's root is honest...
        execute_block(chain.store, replace(executed.block, header=replace(executed.block.header,
                                                                          state_root=b"\x55" * 32)), slots=lying)
    assert err.value.check == "state-root"
    checked = execute_block(chain.store, executed.block, slots=lying)  # ...and the true block passes
    assert checked.changes.state_root == executed.changes.state_root


def test_a_child_enrolled_in_the_replayed_block_is_computed_not_followed(erased):
    chain, _, _, _ = erased
    authority, _ = chain.open_border()
    newborn = chain.new_child()
    enrolment = chain.enrol(authority, newborn)
    executed, _ = chain.propose([enrolment])
    lying = {child_tag(newborn.identity): b"\x55" * 32}
    checked = execute_block(chain.store, executed.block, slots=lying)
    assert checked.changes.followed_slots == ()
    assert checked.changes.state_root == executed.changes.state_root
