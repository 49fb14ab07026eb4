"""The engine against Algorithm 1 of "The latest gossip on BFT consensus", rule by rule.

Unless a test says otherwise: four validators of equal stake (2f+1 = 3 of them, f+1 = 2), and
the engine is validator ``net.me``, which proposes neither round 0 nor round 1 of height 1.
"""

from __future__ import annotations

import pytest
from consensus_harness import (
    CHAIN,
    Net,
    decisions,
    evidence,
    sent,
    sent_votes,
    timers,
    value_id,
)

from ledger.block import PRECOMMIT, PREVOTE, Vote
from node.consensus.config import Limits
from node.consensus.engine import Step
from node.consensus.errors import EngineUsageError
from node.consensus.messages import STEP_PRECOMMIT, STEP_PREVOTE, STEP_PROPOSE, Proposal, Timeout

V = b"value-v"
W = b"value-w"


def prevote_quorum(net: Net, round_: int, value: bytes | None, *, exclude=()) -> list[Vote]:
    """Prevotes of every validator but ``net.me`` (three: a quorum on their own)."""
    return [net.prevote(i, round_, value) for i in net.others(exclude=exclude)]


def precommit_quorum(net: Net, round_: int, value: bytes | None) -> list[Vote]:
    return [net.precommit(i, round_, value) for i in net.others()]


def lock_on(net: Net, value: bytes, round_: int = 0) -> None:
    """Drive the engine to lock ``value`` in ``round_`` (lines 22 and 36)."""
    net.feed(net.proposal(round_, value))
    net.feed(*prevote_quorum(net, round_, value)[:2])
    assert net.engine.locked_round == round_


def to_round(net: Net, round_: int) -> None:
    """Move to ``round_`` by the precommit timeouts of the rounds before it (lines 65-67)."""
    while net.engine.round < round_:
        r = net.engine.round
        net.engine.on_timeout(Timeout(STEP_PRECOMMIT, 1, r))
    assert net.engine.round == round_


# --------------------------------------------------------------------------- StartRound


def test_start_round_proposer_proposes_a_fresh_value_and_prevotes_it():
    net = Net(me="proposer")
    net.app.next_values.append(V)
    out = net.start()
    (proposal,) = [m for m in sent(out) if isinstance(m, Proposal)]  # line 18
    assert (proposal.height, proposal.round, proposal.pol_round) == (1, 0, -1)
    assert proposal.value == V and proposal.value_id == value_id(V)
    assert proposal.verify(CHAIN)
    # line 22 applies to the proposer's own proposal: it prevotes id(v)
    (pv,) = sent_votes(out, PREVOTE)
    assert pv.block == value_id(V) and pv.verify(CHAIN)
    assert net.engine.step == Step.PREVOTE
    assert not timers(out)  # a proposer does not wait for itself (line 20 is the else branch)


def test_start_round_non_proposer_schedules_the_propose_timeout(net):
    out = net.start()
    assert sent(out) == []
    (t,) = timers(out)  # line 20
    assert (t.step, t.height, t.round, t.delay_ms) == (STEP_PROPOSE, 1, 0, 1000)


def test_timeouts_grow_linearly_with_the_round(net):
    net.start()
    to_round(net, 3)
    out = net.engine.on_timeout(Timeout(STEP_PRECOMMIT, 1, 3))
    (t,) = timers(out)
    assert (t.round, t.delay_ms) == (4, 1000 + 4 * 100)
    assert net.timeouts.delay(STEP_PREVOTE, 4) == 500 + 4 * 50
    assert net.timeouts.delay(STEP_PRECOMMIT, 7) == 500 + 7 * 50


def test_rejects_starting_a_height_that_is_not_higher(net):
    net.start(1)
    with pytest.raises(EngineUsageError):
        net.start(1)


# --------------------------------------------------------------------------- line 22


def test_line22_prevotes_a_valid_proposal(net):
    net.start()
    out = net.feed(net.proposal(0, V))
    (pv,) = sent_votes(out)
    assert (pv.kind, pv.round, pv.block) == (PREVOTE, 0, value_id(V))
    assert net.engine.step == Step.PREVOTE  # line 27


def test_line22_prevotes_nil_for_an_invalid_proposal(net):
    net.app.invalid.add(V)
    net.start()
    (pv,) = sent_votes(net.feed(net.proposal(0, V)))
    assert pv.block is None  # line 26


def test_line22_prevotes_nil_if_value_id_does_not_match_the_value(net):
    net.start()
    p = net.proposal(0, V)
    forged = Proposal(1, 0, -1, value_id(W), V, p.proposer, p.signature)
    (pv,) = sent_votes(net.feed(forged))
    assert pv.block is None


def test_line22_prevotes_nil_when_locked_on_another_value(net):
    net.start()
    lock_on(net, V, 0)
    to_round(net, 1)
    (pv,) = sent_votes(net.feed(net.proposal(1, W)), PREVOTE)
    assert pv.block is None  # lockedRound != -1 and lockedValue != w


def test_line22_prevotes_the_locked_value_again(net):
    net.start()
    lock_on(net, V, 0)
    to_round(net, 1)
    (pv,) = sent_votes(net.feed(net.proposal(1, V)), PREVOTE)
    assert pv.block == value_id(V)


def test_ignores_a_proposal_from_a_validator_that_is_not_the_proposer(net):
    net.start()
    intruder = next(i for i in net.others() if i != net.proposer_index(1, 0))
    out = net.feed(net.proposal(0, V, by=intruder))
    assert out == [] and net.engine.proposal(0) is None


# --------------------------------------------------------------------------- line 28


def test_line28_prevotes_a_reproposed_value_with_a_proof_of_lock(net):
    net.start()
    to_round(net, 1)
    net.feed(*prevote_quorum(net, 0, V))  # 2f+1 prevotes for v in round 0 (vr)
    (pv,) = sent_votes(net.feed(net.proposal(1, V, pol_round=0)), PREVOTE)
    assert pv.round == 1 and pv.block == value_id(V)  # line 30


def test_line28_waits_for_the_proof_of_lock(net):
    net.start()
    to_round(net, 1)
    out = net.feed(net.proposal(1, V, pol_round=0))
    assert sent_votes(out) == [] and net.engine.step == Step.PROPOSE
    # the third prevote of round 0 completes the POL: line 28 fires now
    votes = prevote_quorum(net, 0, V)
    assert sent_votes(net.feed(*votes[:2])) == []
    (pv,) = sent_votes(net.feed(votes[2]), PREVOTE)
    assert pv.block == value_id(V)


def test_line28_unlocks_on_a_later_proof_of_lock(net):
    """Locked on v in round 0, a POL for w in round 1 lets the engine prevote w in round 2."""
    net.start()
    lock_on(net, V, 0)
    to_round(net, 2)
    net.feed(*prevote_quorum(net, 1, W))  # polka for w in round 1 > lockedRound 0
    out = net.feed(net.proposal(2, W, pol_round=1))
    (pv,) = sent_votes(out, PREVOTE)
    assert pv.block == value_id(W)  # line 29: lockedRound (0) <= vr (1)
    # and a polka for w in round 2 moves the lock (lines 36-39)
    out = net.feed(*prevote_quorum(net, 2, W)[:2])
    (pc,) = sent_votes(out, PRECOMMIT)
    assert pc.block == value_id(W)
    assert (net.engine.locked_round, net.engine.locked_value) == (2, W)


def test_line28_keeps_the_lock_against_an_older_proof_of_lock(net):
    net.start()
    to_round(net, 1)
    lock_on(net, V, 1)
    to_round(net, 2)
    net.feed(*prevote_quorum(net, 0, W))  # polka for w in round 0 < lockedRound 1
    (pv,) = sent_votes(net.feed(net.proposal(2, W, pol_round=0)), PREVOTE)
    assert pv.block is None  # line 32


# --------------------------------------------------------------------------- lines 34, 36, 44


def test_line34_schedules_the_prevote_timeout_once(net):
    net.start()
    net.feed(net.proposal(0, V))  # our prevote for v
    out = net.feed(net.prevote(net.others()[0], 0, None), net.prevote(net.others()[1], 0, W))
    (t,) = timers(out)
    assert (t.step, t.round, t.delay_ms) == (STEP_PREVOTE, 0, 500)
    assert timers(net.feed(net.prevote(net.others()[2], 0, None))) == []


def test_line36_locks_and_precommits(net):
    net.start()
    net.feed(net.proposal(0, V))
    out = net.feed(*prevote_quorum(net, 0, V)[:2])  # with our own prevote: 3 of 4
    (pc,) = sent_votes(out, PRECOMMIT)
    assert pc.block == value_id(V)  # line 40
    e = net.engine
    assert (e.locked_value, e.locked_round) == (V, 0)  # lines 38-39
    assert (e.valid_value, e.valid_round) == (V, 0)  # lines 42-43
    assert e.step == Step.PRECOMMIT  # line 41


def test_line36_needs_the_proposal(net):
    net.start()
    out = net.feed(*prevote_quorum(net, 0, V))
    assert sent_votes(out, PRECOMMIT) == [] and net.engine.locked_round == -1
    # the proposal arrives late: line 22 first (prevote), then line 36 (precommit)
    out = net.feed(net.proposal(0, V))
    assert [v.kind for v in sent_votes(out)] == [PREVOTE, PRECOMMIT]


def test_line36_does_not_lock_an_invalid_value(net):
    net.app.invalid.add(V)
    net.start()
    net.feed(net.proposal(0, V))
    out = net.feed(*prevote_quorum(net, 0, V))
    assert sent_votes(out, PRECOMMIT) == [] and net.engine.locked_round == -1


def test_line36_in_the_precommit_step_updates_only_the_valid_value(net):
    net.start()
    net.feed(net.proposal(0, V))
    net.engine.on_timeout(Timeout(STEP_PREVOTE, 1, 0))  # lines 61-64: precommit nil
    assert net.engine.step == Step.PRECOMMIT
    out = net.feed(*prevote_quorum(net, 0, V)[:2])  # then a polka for v
    assert sent_votes(out, PRECOMMIT) == []  # line 37: lock only in the prevote step
    assert net.engine.locked_round == -1
    assert (net.engine.valid_value, net.engine.valid_round) == (V, 0)  # lines 42-43


def test_line44_precommits_nil_on_a_nil_quorum(net):
    net.start()
    net.feed(net.proposal(0, V))
    out = net.feed(*prevote_quorum(net, 0, None))
    pcs = sent_votes(out, PRECOMMIT)
    assert [p.block for p in pcs] == [None]  # line 45
    assert net.engine.step == Step.PRECOMMIT and net.engine.locked_round == -1


# --------------------------------------------------------------------------- lines 47, 49


def test_line47_schedules_the_precommit_timeout_once(net):
    net.start()
    ps = [net.precommit(i, 0, None) for i in net.others()]
    out = net.feed(ps[0], ps[1])
    assert timers(out) == []
    out = net.feed(net.precommit(net.others()[2], 0, W))
    (t,) = timers(out)
    assert (t.step, t.round, t.delay_ms) == (STEP_PRECOMMIT, 0, 500)


def test_line49_decides_with_a_commit_that_checks(net):
    net.start()
    net.feed(net.proposal(0, V))
    out = net.feed(*precommit_quorum(net, 0, V))
    (d,) = decisions(out)
    assert (d.height, d.round, d.value, d.value_id) == (1, 0, V, value_id(V))
    d.commit.check(CHAIN, net.validators, height=1, block=value_id(V))  # real signatures
    assert net.engine.decision == d
    # decided: further messages of the height change nothing
    assert net.feed(net.prevote(net.others()[0], 1, W)) == []


def test_line49_decides_a_value_of_an_earlier_round(net):
    net.start()
    net.feed(net.proposal(0, V))
    to_round(net, 2)
    out = net.feed(*precommit_quorum(net, 0, V))
    (d,) = decisions(out)
    assert d.round == 0 and d.value == V


def test_line49_does_not_decide_an_invalid_value(net):
    net.app.invalid.add(V)
    net.start()
    net.feed(net.proposal(0, V))
    assert decisions(net.feed(*precommit_quorum(net, 0, V))) == []


def test_line49_waits_for_the_proposal(net):
    net.start()
    assert decisions(net.feed(*precommit_quorum(net, 0, V))) == []
    (d,) = decisions(net.feed(net.proposal(0, V)))
    assert d.value == V


def test_next_height_starts_fresh(net):
    net.start()
    lock_on(net, V, 0)
    net.feed(*precommit_quorum(net, 0, V))
    net.start(2)
    e = net.engine
    assert (e.height, e.round, e.step) == (2, 0, Step.PROPOSE)  # lines 52-54
    assert (e.locked_round, e.valid_round, e.locked_value, e.decision) == (-1, -1, None, None)


# --------------------------------------------------------------------------- line 55


def test_line55_skips_to_a_round_with_f_plus_1_messages(net):
    assert net.proposer_index(1, 5) != net.me
    net.start()
    a, b = net.others()[:2]
    assert net.feed(net.prevote(a, 5, None)) == [] and net.engine.round == 0  # f: not enough
    out = net.feed(net.precommit(b, 5, W))  # two of four validators: f+1
    assert (net.engine.round, net.engine.step) == (5, Step.PROPOSE)
    assert [(t.step, t.round) for t in timers(out)] == [(STEP_PROPOSE, 5)]


def test_line55_counts_stake_not_heads():
    net = Net(stakes=(10, 10, 10, 45), me=0)
    net.start()
    net.feed(net.prevote(1, 4, None))
    assert net.engine.round == 0  # 10 of 75: not more than a third
    net.feed(net.prevote(2, 4, None))
    assert net.engine.round == 0  # 20 of 75: still not more than a third
    net.feed(net.prevote(3, 3, None))  # 45 of 75 in round 3
    assert net.engine.round == 3


def test_line55_follows_validators_beyond_the_round_window():
    net = Net(limits=Limits(round_window=4, future_rounds=1))
    net.start()
    a, b = net.others()[:2]
    net.feed(net.prevote(a, 50, None))
    assert net.engine.round == 0 and len(net.engine.prevotes(50)) == 0  # not stored
    net.feed(net.prevote(b, 60, None))
    assert net.engine.round == 50  # f+1 have reached round 50 or beyond


# --------------------------------------------------------------------------- lines 57-67


def test_timeout_propose_prevotes_nil(net):
    net.start()
    (pv,) = sent_votes(net.engine.on_timeout(Timeout(STEP_PROPOSE, 1, 0)))  # lines 57-60
    assert (pv.kind, pv.block) == (PREVOTE, None) and net.engine.step == Step.PREVOTE


def test_timeout_prevote_precommits_nil(net):
    net.start()
    net.feed(net.proposal(0, V))
    (pc,) = sent_votes(net.engine.on_timeout(Timeout(STEP_PREVOTE, 1, 0)))  # lines 61-64
    assert (pc.kind, pc.block) == (PRECOMMIT, None) and net.engine.step == Step.PRECOMMIT


def test_timeout_precommit_starts_the_next_round(net):
    net.start()
    out = net.engine.on_timeout(Timeout(STEP_PRECOMMIT, 1, 0))  # lines 65-67
    assert net.engine.round == 1 and net.engine.step == Step.PROPOSE
    assert [(t.step, t.round) for t in timers(out)] == [(STEP_PROPOSE, 1)]


@pytest.mark.parametrize("stale", [
    Timeout(STEP_PROPOSE, 1, 1),  # another round
    Timeout(STEP_PROPOSE, 2, 0),  # another height
    Timeout(STEP_PREVOTE, 1, 0),  # step is propose, not prevote
    Timeout(STEP_PRECOMMIT, 1, 3),
])
def test_stale_timeouts_are_ignored(net, stale):
    net.start()
    assert net.engine.on_timeout(stale) == []
    assert (net.engine.round, net.engine.step) == (0, Step.PROPOSE)


# --------------------------------------------------------------------------- valid value


def test_proposer_reproposes_its_valid_value_with_its_pol_round(net):
    me_round = net.round_where(lambda i: i == net.me)
    net.start()
    net.feed(net.proposal(0, V))
    net.feed(*prevote_quorum(net, 0, V)[:2])  # polka: valid value v, round 0
    out = []
    while net.engine.round < me_round:
        out = net.engine.on_timeout(Timeout(STEP_PRECOMMIT, 1, net.engine.round))
    (p,) = [m for m in sent(out) if isinstance(m, Proposal)]  # lines 14-15, 18
    assert (p.round, p.pol_round, p.value) == (me_round, 0, V)
    assert net.app.proposed == 0  # getValue() was not called


def test_late_polka_of_an_earlier_round_updates_the_valid_value(net):
    """A proof-of-lock relayed after the round ended still teaches the valid value."""
    net.start()
    to_round(net, 2)
    net.feed(net.proposal(0, V))
    net.feed(*prevote_quorum(net, 0, V))
    assert (net.engine.valid_value, net.engine.valid_round) == (V, 0)
    assert net.engine.locked_round == -1  # a lock needs the polka in the current round


# --------------------------------------------------------------------------- observers


def test_observer_follows_and_decides_but_never_signs():
    net = Net(me=None)
    out = net.start()
    out += net.feed(net.proposal(0, V))
    out += net.feed(*[net.prevote(i, 0, V) for i in range(3)])
    out += net.engine.on_timeout(Timeout(STEP_PROPOSE, 1, 0))
    out += net.feed(*[net.precommit(i, 0, V) for i in range(3)])
    assert sent(out) == []
    (d,) = decisions(out)
    assert d.value == V and not net.engine.is_validator


def test_a_key_outside_the_validator_set_is_an_observer():
    net = Net(me=None)
    from ledger.crypto.keys import SigningKey
    from node.consensus.engine import Engine
    from node.consensus.privval import MemoryPrivValidator

    outsider = MemoryPrivValidator(SigningKey(b"\x07" * 32), CHAIN)
    net.engine = Engine(net.app, outsider)
    out = net.start()
    out += net.engine.on_timeout(Timeout(STEP_PROPOSE, 1, 0))
    assert sent(out) == [] and not net.engine.is_validator


# --------------------------------------------------------------------------- evidence


def test_conflicting_votes_yield_evidence_once(net):
    net.start()
    byz = net.others()[0]
    first, second, third = (net.prevote(byz, 0, V), net.prevote(byz, 0, W),
                            net.prevote(byz, 0, None))
    assert evidence(net.feed(first)) == []
    (ev,) = evidence(net.feed(second))
    assert {ev.evidence.a, ev.evidence.b} == {first, second}
    assert evidence(net.feed(second)) == []  # the same pair again
    assert evidence(net.feed(third)) == []  # reported once per validator, round and step
    assert net.engine.prevotes(0).votes[net.keys[byz].public] == first  # the first one counts
    assert evidence(net.feed(net.precommit(byz, 0, V), net.precommit(byz, 0, W)))  # other step


def test_equivocating_vote_counts_for_a_proposed_value():
    """A proof-of-lock may contain a Byzantine vote this node first saw for another value."""
    net = Net()
    net.start()
    byz, a, b = net.others()
    net.feed(net.prevote(byz, 0, W))  # byz told us w ...
    net.feed(net.proposal(0, V))  # we prevote v
    out = net.feed(net.prevote(a, 0, V), net.prevote(byz, 0, V))  # ... and told a, b: v
    assert evidence(out)
    (pc,) = sent_votes(out, PRECOMMIT)
    assert pc.block == value_id(V)  # me, a, byz: 3 of 4 prevoted v
    assert net.engine.prevotes(0).power_for(value_id(W)) == 1


def test_conflicting_vote_for_an_unknown_value_is_not_counted(net):
    net.start()
    byz = net.others()[0]
    net.feed(net.prevote(byz, 0, V), net.prevote(byz, 0, b"nobody proposed this"))
    assert net.engine.prevotes(0).power_for(value_id(b"nobody proposed this")) == 0


# --------------------------------------------------------------------------- bounds


def test_messages_of_other_heights_are_ignored(net):
    net.start()
    assert net.feed(net.prevote(1, 0, V, height=3), net.prevote(1, 0, V, height=0 + 1)) == []
    assert net.engine.pending_for(3) == []


def test_next_height_messages_are_buffered_boundedly_and_replayed(net):
    net.start()
    a = net.others()[0]
    p2 = net.proposal(0, V, height=2)
    keep = [p2, net.prevote(a, 0, V, height=2), net.prevote(a, 2, V, height=2)]
    drop = [net.prevote(a, 0, W, height=2),  # same slot as a kept one
            net.prevote(a, 3, V, height=2),  # round beyond future_rounds (2)
            net.proposal(1, W, height=2, by=next(i for i in range(4)
                                                 if i != net.proposer_index(2, 1)))]
    for m in keep + drop:
        net.feed(m)
    assert net.engine.pending_for(2) == keep
    lock_on(net, V, 0)
    net.feed(*precommit_quorum(net, 0, V))
    out = net.start(2)
    # replayed: the proposal of height 2 round 0 gets our prevote at once
    assert any(v.height == 2 and v.kind == PREVOTE and v.block == value_id(V)
               for v in sent_votes(out))
    assert net.engine.pending_for(2) == []


def test_rounds_beyond_the_window_are_not_stored():
    net = Net(limits=Limits(round_window=3, future_rounds=0))
    net.start()
    a = net.others()[0]
    net.feed(net.prevote(a, 3, V), net.prevote(a, 4, V))
    assert len(net.engine.prevotes(3)) == 1 and len(net.engine.prevotes(4)) == 0


def test_one_vote_per_validator_round_and_step_is_kept(net):
    net.start()
    a = net.others()[0]
    for _ in range(3):
        net.feed(net.prevote(a, 0, V))
    net.feed(net.prevote(a, 0, W))
    vs = net.engine.prevotes(0)
    assert len(vs) == 1 and vs.power == 1


# --------------------------------------------------------------------------- rebroadcast


def test_rebroadcast_reemits_own_messages_and_relays_the_proof_of_lock(net):
    net.start()
    p = net.proposal(0, V)
    polka = prevote_quorum(net, 0, V)[:2]
    net.feed(p, *polka)
    out = sent(net.engine.rebroadcast())
    own = [m for m in out if isinstance(m, Vote) and m.validator == net.keys[net.me].public]
    assert [(v.kind, v.block) for v in own] == [(PREVOTE, value_id(V)), (PRECOMMIT, value_id(V))]
    assert p in out  # the proposal of the valid round
    assert all(v in out for v in polka)  # and its 2f+1 prevotes
    # identical bytes: rebroadcast never signs anything new
    assert net.signer.state.hrs == (1, 0, 3)


def test_unstarted_engine_ignores_everything():
    net = Net()
    assert net.feed(net.proposal(0, V), net.prevote(1, 0, V)) == []
    assert net.engine.on_timeout(Timeout(STEP_PROPOSE, 1, 0)) == []
    assert net.engine.rebroadcast() == []


# --------------------------------------------------------------------------- the signer refuses


def test_a_refused_vote_is_not_sent_but_the_step_moves_on(net):
    net.signer.sign_vote(PREVOTE, 1, 0, value_id(W))  # signed before a crash, say
    net.start()
    out = net.feed(net.proposal(0, V))
    assert sent(out) == [] and net.engine.step == Step.PREVOTE
    assert net.engine.refused_signatures == 1


def test_a_proposer_whose_proposal_is_refused_waits_like_the_others():
    net = Net(me="proposer")
    net.signer.sign_vote(PREVOTE, 1, 0, None)  # already past the propose step of round 0
    out = net.start()
    assert sent(out) == []
    assert [(t.step, t.round) for t in timers(out)] == [(STEP_PROPOSE, 0)]


def test_a_lone_validator_whose_votes_were_lost_in_a_crash_moves_to_the_next_round_and_decides():
    """The signer recorded a proposal, prevote and precommit of round 0 that the consensus log
    lost (killed between the two writes). Round 0 can never gather the validator's votes again;
    it ends as a precommit timeout would, and round 1 decides a new value."""
    net = Net(stakes=(1,), me=0)
    net.signer.sign_proposal(1, 0, -1, value_id(W), W)
    net.signer.sign_vote(PREVOTE, 1, 0, value_id(W))
    net.signer.sign_vote(PRECOMMIT, 1, 0, value_id(W))
    out = net.start()  # the proposal is refused: wait for the propose timeout
    assert [(t.step, t.round) for t in timers(out)] == [(STEP_PROPOSE, 0)]
    out = net.engine.on_timeout(Timeout(STEP_PROPOSE, 1, 0))  # the nil prevote is refused too
    assert sent(out) == [] and [(t.step, t.round) for t in timers(out)] == [(STEP_PRECOMMIT, 0)]
    out = net.engine.on_timeout(Timeout(STEP_PRECOMMIT, 1, 0))
    decided = decisions(out)
    assert net.engine.round == 1 and len(decided) == 1 and decided[0].round == 1
    assert net.signer.state.hrs == (1, 1, 3)
