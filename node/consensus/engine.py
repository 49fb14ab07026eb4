"""The Tendermint consensus algorithm as a pure state machine.

This is Algorithm 1 of Buchman, Kwon, Milosevic, "The latest gossip on BFT consensus" (2018),
one height at a time. Line numbers in comments are the paper's. Voting power is the stake in
the height's :class:`~ledger.validators.ValidatorSet`: "2f+1" is ``has_quorum`` (more than 2/3
of the power) and "f+1" is ``exceeds_one_third``. The proposer of a round is
``validators.proposer(height, round)``, weighted by stake.

No I/O, no clock, no randomness. Inputs are method calls:

* :meth:`Engine.start_height` (line 10, "upon start do StartRound(0)", and line 52-54 for
  every later height: the node calls it once it has stored the decided block);
* :meth:`Engine.on_proposal`, :meth:`Engine.on_vote`: messages from peers;
* :meth:`Engine.on_timeout`: a timer the engine asked for has fired;
* :meth:`Engine.rebroadcast`: re-emit this node's signed messages of the height (call it
  periodically: after a partition heals, every honest message then arrives eventually, the
  gossip assumption of the paper's liveness proof).

Each returns a list of outputs (:mod:`node.consensus.outputs`): ``Broadcast``,
``ScheduleTimeout``, ``Decide`` and ``EvidenceFound``, to be carried out in order.

Contract with the caller:

* **Signatures are verified before messages reach the engine.** The engine trusts that a
  ``Vote`` was signed by ``vote.validator`` and a ``Proposal`` by ``proposal.proposer`` on this
  chain; it checks everything else (height, round window, membership, proposer of the round).
* The application's ``validate(height, round, value)`` executes the value and returns its id
  (block hash), or None if the value is invalid; the engine compares it with the proposal's
  ``value_id``. Results are cached per value for the height, so the value must not depend on
  the round to be valid. The node's own proposals are validated too (line 22 applies to the
  proposer's own message): an application can answer that from what ``propose`` just built.
* The engine signs through a signer (:mod:`node.consensus.privval`), which may refuse
  (:class:`~node.consensus.errors.DoubleSignRefused`); the engine then sends nothing for that
  step but moves on as if it had (refusal only happens when replaying after a restart, where
  the message was sent before the crash). An engine without a signer, or whose key is not in
  the height's set, is an observer: it follows and decides, but never signs.

Bounds on what a peer can make it store: messages for other heights are dropped, except a
bounded buffer for the next height (:mod:`node.consensus.future`); messages for rounds beyond
``round + limits.round_window`` are not stored; the first vote per validator, round and step
is kept, and a second, different one yields evidence once (it is counted for its own value
only if that value is nil or proposed, see :class:`~node.consensus.votes.VoteSet`); one
proposal per round is kept (see :meth:`Engine.on_proposal` for when a second one replaces it).

Where the code says more than the paper's pseudocode, and why (none of it touches safety,
which rests on lines 22-33 and the signer):

* Line 55 for rounds beyond the window: the engine does not store such messages but follows
  validators with f+1 power that have all reached round R or beyond
  (:class:`~node.consensus.votes.FarRounds`).
* Lines 42-43 for an earlier round (:meth:`Engine._learn_valid_value`): a polka of a past
  round, relayed late, still updates validValue, so a lock formed before the network
  stabilised and seen by one correct validator only does not stall the height until that
  validator proposes again.
* Line 49 needs the value: a node that has 2f+1 precommits but never got the proposal
  waits for it (``rebroadcast`` relays it) or for block sync.
* A proposer whose signer refuses (a replay after a restart) waits with timeoutPropose like
  the others instead of stalling its round.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Protocol

from ledger.block import PRECOMMIT, PREVOTE, Commit, Vote
from ledger.validators import ValidatorSet
from node.consensus.config import Limits, TimeoutConfig
from node.consensus.errors import DoubleSignRefused, EngineUsageError
from node.consensus.future import FutureBuffer
from node.consensus.messages import (
    STEP_PRECOMMIT,
    STEP_PREVOTE,
    STEP_PROPOSE,
    Proposal,
    Timeout,
)
from node.consensus.outputs import Broadcast, Decide, EvidenceFound, Output, ScheduleTimeout
from node.consensus.votes import FarRounds, HeightVotes, VoteSet


class Step(IntEnum):
    """step_p: the order matters (line 36: "step_p >= prevote")."""

    PROPOSE = 0
    PREVOTE = 1
    PRECOMMIT = 2


class Application(Protocol):
    """What the engine needs from the node's state machine (synchronous calls)."""

    def propose(self, height: int, round_: int) -> tuple[bytes, bytes]:
        """getValue() (line 17): a new value to propose and its id (the block and its hash)."""
        ...

    def validate(self, height: int, round_: int, value: bytes) -> bytes | None:
        """valid(v): execute ``value``; return its id, or None if it is invalid."""
        ...


class Signer(Protocol):
    """Signs this node's messages; refuses (raises ``DoubleSignRefused``) on any conflict."""

    public: bytes

    def sign_vote(self, kind: str, height: int, round_: int, block: bytes | None) -> Vote: ...

    def sign_proposal(self, height: int, round_: int, pol_round: int, value_id: bytes,
                      value: bytes) -> Proposal: ...


class Engine:
    """One node's consensus state machine (Algorithm 1). Not thread-safe: feed it serially."""

    def __init__(self, app: Application, signer: Signer | None = None, *,
                 timeouts: TimeoutConfig | None = None, limits: Limits | None = None) -> None:
        """``signer`` (bound to the chain id) signs this node's messages; None: an observer."""
        self.app = app
        #: public so that a WAL replay can wrap it (see :mod:`node.consensus.recorder`)
        self.signer = signer
        self.timeouts = timeouts or TimeoutConfig()
        self.limits = limits or Limits()
        self.height = 0
        self.round = 0
        self.step = Step.PROPOSE
        self.validators: ValidatorSet | None = None
        self.refused_signatures = 0
        self._future = FutureBuffer(self.limits.future_rounds)
        self._out: list[Output] = []
        self._reset_height(None)

    def _reset_height(self, validators: ValidatorSet | None) -> None:
        """Line 53: reset locked/valid value and round, and empty the message log."""
        self.validators = validators
        self.round = 0
        self.step = Step.PROPOSE
        self.decision: Decide | None = None
        self.locked_value: bytes | None = None
        self.locked_value_id: bytes | None = None
        self.locked_round = -1
        self.valid_value: bytes | None = None
        self.valid_value_id: bytes | None = None
        self.valid_round = -1
        self._me: bytes | None = None
        if validators is not None and self.signer is not None and self.signer.public in validators:
            self._me = self.signer.public
        self._proposals: dict[int, Proposal] = {}
        self._proposal_ids: set[bytes] = set()
        self._votes = HeightVotes()  # empty, and unused, until a height starts
        self._far = FarRounds()
        self._validity: dict[bytes, tuple[bytes, bool]] = {}
        self._own: dict[tuple[str, int], Proposal | Vote] = {}
        # "for the first time" guards of lines 34, 36 and 47: the round in which each fired
        self._prevote_timer_round = -1
        self._lock_rule_round = -1
        self._precommit_timer_round = -1

    # ------------------------------------------------------------------ queries

    @property
    def is_validator(self) -> bool:
        """True if this engine signs at the current height (its key is in the set)."""
        return self._me is not None

    def proposal(self, round_: int) -> Proposal | None:
        return self._proposals.get(round_)

    def prevotes(self, round_: int) -> VoteSet:
        """The prevotes of ``round_`` at this height (read only)."""
        return self._votes.prevotes(round_) if self.validators is not None else VoteSet(PREVOTE, round_)

    def precommits(self, round_: int) -> VoteSet:
        return self._votes.precommits(round_) if self.validators is not None else VoteSet(PRECOMMIT, round_)

    def own_messages(self) -> list[Proposal | Vote]:
        """This node's signed messages of the current height, in signing order."""
        return list(self._own.values())

    def pending_for(self, height: int) -> list[Proposal | Vote]:
        """Messages buffered for ``height`` that :meth:`start_height` would replay."""
        return self._future.peek(height)

    # ------------------------------------------------------------------ inputs

    def start_height(self, height: int, validators: ValidatorSet) -> list[Output]:
        """Begin ``height`` with ``validators``: StartRound(0) (lines 10, 52-54).

        Buffered messages for this height are then processed as if they had just arrived.
        """
        if height <= self.height:
            raise EngineUsageError(f"cannot start height {height}: already at {self.height}")
        pending = self._future.take(height)
        self.height = height
        self._reset_height(validators)
        self._start_round(0)
        self._run_rules()
        for msg in pending:
            if self.decision is not None:
                break
            if isinstance(msg, Proposal):
                self._on_proposal(msg)
            else:
                self._on_vote(msg)
        return self._flush()

    def on_proposal(self, p: Proposal) -> list[Output]:
        """A proposal whose signature the caller has verified.

        Kept only if it comes from proposer(h_p, round). One proposal per round is kept; a
        different one from the same proposer (equivocation) replaces it only if 2f+1 prevotes
        or precommits of that round are for the newcomer's value, since only then can it
        matter to lines 36 and 49.
        """
        self._on_proposal(p)
        return self._flush()

    def on_vote(self, v: Vote) -> list[Output]:
        """A prevote or precommit whose signature the caller has verified."""
        self._on_vote(v)
        return self._flush()

    def on_timeout(self, t: Timeout) -> list[Output]:
        """OnTimeoutPropose/Prevote/Precommit (lines 57-67); stale timeouts are ignored."""
        if t.height == self.height and self.decision is None and self.validators is not None:
            if t.step == STEP_PROPOSE:
                self._on_timeout_propose(t.round)
            elif t.step == STEP_PREVOTE:
                self._on_timeout_prevote(t.round)
            elif t.step == STEP_PRECOMMIT:
                self._on_timeout_precommit(t.round)
            self._run_rules()
        return self._flush()

    def describe(self) -> str:
        """Where this height stands, in a line for an operator: round, step, what this round has
        seen of the proposal and the votes, and the lock."""
        total = self.validators.total_power if self.validators is not None else 0
        prevotes = self._votes.prevotes(self.round).power
        precommits = self._votes.precommits(self.round).power
        proposal = "seen" if self.round in self._proposals else "not seen"
        return (f"height {self.height} round {self.round} step {self.step.name.lower()}: proposal {proposal}, "
                f"prevotes {prevotes} and precommits {precommits} of {total} stake, locked round "
                f"{self.locked_round}")

    def rebroadcast(self) -> list[Output]:
        """Re-emit this node's signed messages of the height, and relay what proves its lock.

        Besides its own messages, the engine relays the proposals of the current round and of
        ``valid_round``, and the 2f+1 prevotes of ``valid_round`` for ``valid_value``. The
        paper's liveness proof assumes gossip (what one correct process receives, all do);
        these are the messages it needs: a value a Byzantine proposer showed to only some
        validators, and a proof-of-lock that counts a Byzantine vote other validators first
        saw for another value, reach every honest validator, so the re-proposal of
        ``valid_value`` (line 15) is accepted by line 28 everywhere.
        """
        me = self._me
        out: list[Output] = [Broadcast(m) for m in self._own.values()]
        for r in sorted({self.round, self.valid_round}):
            p = self._proposals.get(r)
            if p is not None and p.proposer != me:
                out.append(Broadcast(p))
        if self.valid_round >= 0 and self.validators is not None:
            for v in self._votes.prevotes(self.valid_round).votes_for(self.valid_value_id):
                if v.validator != me:
                    out.append(Broadcast(v))
        return out

    # ------------------------------------------------------------------ message handling

    def _flush(self) -> list[Output]:
        out, self._out = self._out, []
        return out

    def _on_proposal(self, p: Proposal) -> None:
        vals = self.validators
        if vals is None:
            return
        if p.height != self.height or self.decision is not None:
            if p.height == self.height + 1:
                self._future.add_proposal(p, vals)
            return
        # "from proposer(h_p, round)" (lines 22, 28, 36, 49)
        if p.proposer != vals.proposer(p.height, p.round):
            return
        if p.round > self.round + self.limits.round_window:
            self._far.note(p.proposer, p.round)
            self._skip_to_far_round()
            self._run_rules()
            return
        held = self._proposals.get(p.round)
        if held is not None and (held.same_content(p) or not self._may_replace(held, p)):
            return
        self._proposals[p.round] = p
        self._proposal_ids.add(p.value_id)
        if p.proposer == self._me:
            self._own[(STEP_PROPOSE, p.round)] = p
        self._after_message(p.round, p.proposer, vals.power_of(p.proposer))

    def _may_replace(self, held: Proposal, new: Proposal) -> bool:
        vals = self._vals()
        votes = self._votes
        for vs in (votes.prevotes(new.round), votes.precommits(new.round)):
            if vals.has_quorum(vs.power_for(new.value_id)) and not vals.has_quorum(
                    vs.power_for(held.value_id)):
                return True
        return False

    def _on_vote(self, v: Vote) -> None:
        vals = self.validators
        if vals is None:
            return
        if v.height != self.height or self.decision is not None:
            if v.height == self.height + 1:
                self._future.add_vote(v, vals)
            return
        power = vals.power_of(v.validator)
        if power == 0:
            return
        if v.round > self.round + self.limits.round_window:
            self._far.note(v.validator, v.round)
            self._skip_to_far_round()
            self._run_rules()
            return
        tracked = v.block is None or v.block in self._proposal_ids
        added, evidence = self._votes.add(v, power, tracked)
        if evidence is not None:
            self._out.append(EvidenceFound(evidence))
        if not added:
            return
        if v.validator == self._me:
            self._own[(v.kind, v.round)] = v
        self._after_message(v.round, v.validator, power)

    def _after_message(self, round_: int, sender: bytes, power: int) -> None:
        if round_ != self.round and self._try_decide(round_):  # line 49, any round r
            return
        if self.valid_round < round_ < self.round:
            self._learn_valid_value(round_)
        # line 55: upon f+1 <*, h_p, round, *, *> with round > round_p do StartRound(round)
        if round_ > self.round and self._vals().exceeds_one_third(
                self._votes.note_sender(round_, sender, power)):
            self._start_round(round_)
        self._run_rules()

    def _skip_to_far_round(self) -> None:
        """Line 55 for rounds beyond the window (see :class:`~node.consensus.votes.FarRounds`)."""
        target = self._far.skip_target(self._vals(), self.round)
        if target is not None:
            self._start_round(target)

    # ------------------------------------------------------------------ the rules

    def _start_round(self, round_: int) -> None:
        """StartRound(round) (lines 11-21)."""
        h = self.height
        self.round = round_  # line 11
        self.step = Step.PROPOSE  # line 12
        if self._me is not None and self._vals().proposer(h, round_) == self._me:  # line 13
            if self.valid_value is not None and self.valid_value_id is not None:  # line 14
                value, value_id = self.valid_value, self.valid_value_id  # line 15
            else:
                value, value_id = self.app.propose(h, round_)  # line 17
            p = self._sign_proposal(round_, self.valid_round, value_id, value)
            if p is not None:
                self._proposals[round_] = p
                self._proposal_ids.add(p.value_id)
                self._own[(STEP_PROPOSE, round_)] = p
                self._out.append(Broadcast(p))  # line 18
                return
            # Signing refused (replay after a restart): wait like any other validator, so that
            # this round cannot stall here.
        self._out.append(ScheduleTimeout(STEP_PROPOSE, h, round_,
                                         self.timeouts.delay(STEP_PROPOSE, round_)))  # line 20

    def _run_rules(self) -> None:
        """Fire every rule of the current round whose condition holds, until none does."""
        vals = self._vals()
        votes = self._votes
        while self.decision is None:
            r = self.round
            if self._try_decide(r):  # line 49 for r = round_p
                return
            prop = self._proposals.get(r)
            prevotes = votes.prevotes(r)
            if self.step == Step.PROPOSE and prop is not None:
                if prop.pol_round == -1:
                    # line 22: <PROPOSAL, h_p, round_p, v, -1> while step_p = propose
                    ok = self._valid(prop) and (self.locked_round == -1
                                                or self.locked_value_id == prop.value_id)  # 23
                    self._prevote(prop.value_id if ok else None)  # lines 24, 26
                    self.step = Step.PREVOTE  # line 27
                    continue
                vr = prop.pol_round
                # line 28: ... AND 2f+1 <PREVOTE, h_p, vr, id(v)> while step_p = propose
                # and 0 <= vr < round_p (the Proposal type guarantees the bounds)
                if vals.has_quorum(votes.prevotes(vr).power_for(prop.value_id)):
                    ok = self._valid(prop) and (self.locked_round <= vr
                                                or self.locked_value_id == prop.value_id)  # 29
                    self._prevote(prop.value_id if ok else None)  # lines 30, 32
                    self.step = Step.PREVOTE  # line 33
                    continue
            if self.step >= Step.PREVOTE:
                # line 34: 2f+1 <PREVOTE, h_p, round_p, *> while step_p = prevote, first time
                if (self.step == Step.PREVOTE and self._prevote_timer_round != r
                        and vals.has_quorum(prevotes.power)):
                    self._prevote_timer_round = r
                    self._out.append(ScheduleTimeout(STEP_PREVOTE, self.height, r,
                                                     self.timeouts.delay(STEP_PREVOTE, r)))  # 35
                # line 36: <PROPOSAL, h_p, round_p, v, *> AND 2f+1 <PREVOTE, h_p, round_p, id(v)>
                # while valid(v) and step_p >= prevote, for the first time
                if (self._lock_rule_round != r and prop is not None
                        and vals.has_quorum(prevotes.power_for(prop.value_id))
                        and self._valid(prop)):
                    self._lock_rule_round = r
                    if self.step == Step.PREVOTE:  # line 37
                        self.locked_value, self.locked_value_id = prop.value, prop.value_id  # 38
                        self.locked_round = r  # line 39
                        self._precommit(prop.value_id)  # line 40
                        self.step = Step.PRECOMMIT  # line 41
                    self.valid_value, self.valid_value_id = prop.value, prop.value_id  # line 42
                    self.valid_round = r  # line 43
                    continue
                # line 44: 2f+1 <PREVOTE, h_p, round_p, nil> while step_p = prevote
                if self.step == Step.PREVOTE and vals.has_quorum(prevotes.power_for(None)):
                    self._precommit(None)  # line 45
                    self.step = Step.PRECOMMIT  # line 46
                    continue
            # line 47: 2f+1 <PRECOMMIT, h_p, round_p, *> for the first time
            if self._precommit_timer_round != r and vals.has_quorum(votes.precommits(r).power):
                self._precommit_timer_round = r
                self._out.append(ScheduleTimeout(STEP_PRECOMMIT, self.height, r,
                                                 self.timeouts.delay(STEP_PRECOMMIT, r)))  # 48
            return

    def _try_decide(self, r: int) -> bool:
        """Line 49: <PROPOSAL, h_p, r, v, *> AND 2f+1 <PRECOMMIT, h_p, r, id(v)>,
        while decision_p[h_p] = nil; line 50: if valid(v), decide (line 51)."""
        prop = self._proposals.get(r)
        if prop is None or self.decision is not None:
            return False
        precommits = self._votes.precommits(r)
        if not self._vals().has_quorum(precommits.power_for(prop.value_id)):
            return False
        if not self._valid(prop):
            return False
        commit = Commit.from_votes(precommits.votes_for(prop.value_id))
        self.decision = Decide(self.height, r, prop.value, prop.value_id, commit)
        self._out.append(self.decision)
        # Lines 52-54 (next height, reset, StartRound(0)) happen in start_height, once the node
        # has stored the block and knows the next height's validator set.
        return True

    def _learn_valid_value(self, r: int) -> None:
        """Lines 42-43 for an earlier round: a polka seen late still updates validValue.

        The paper updates validValue/validRound only for a polka of the current round (line
        36). A polka formed before the network stabilised, seen then by one correct process
        only (a Byzantine validator can arrange that), leaves that process locked on a value
        no other correct proposer knows (a "hidden lock"); until that process is proposer
        again, no round can gather 2f+1 prevotes. Once gossip (``rebroadcast`` relays the
        proof-of-lock) brings that polka to the others, recording it here lets every correct
        proposer re-propose the value with ``vr = r`` (line 15), which line 28 accepts
        everywhere. Safety is untouched: validValue only decides what is proposed, and
        line 29 still rejects any proposal whose POL round is below the receiver's lock.
        """
        prop = self._proposals.get(r)
        if (prop is not None
                and self._vals().has_quorum(self._votes.prevotes(r).power_for(prop.value_id))
                and self._valid(prop)):
            self.valid_value, self.valid_value_id = prop.value, prop.value_id
            self.valid_round = r

    def _on_timeout_propose(self, round_: int) -> None:
        if round_ == self.round and self.step == Step.PROPOSE:  # line 58
            self._prevote(None)  # line 59
            self.step = Step.PREVOTE  # line 60

    def _on_timeout_prevote(self, round_: int) -> None:
        if round_ == self.round and self.step == Step.PREVOTE:  # line 62
            self._precommit(None)  # line 63
            self.step = Step.PRECOMMIT  # line 64

    def _on_timeout_precommit(self, round_: int) -> None:
        if round_ == self.round:  # line 66
            self._start_round(self.round + 1)  # line 67

    # ------------------------------------------------------------------ helpers

    def _vals(self) -> ValidatorSet:
        """The current height's validators; messages and timeouts reach the rules only after
        :meth:`start_height`, so an engine without them is being misused."""
        vals = self.validators
        if vals is None:
            raise EngineUsageError("no height started")
        return vals

    def _valid(self, p: Proposal) -> bool:
        """valid(v), with id(v) = the proposal's value_id; cached per value for the height."""
        cached = self._validity.get(p.value_id)
        if cached is not None and (cached[0] is p.value or cached[0] == p.value):
            return cached[1]
        ok = self.app.validate(self.height, p.round, p.value) == p.value_id
        self._validity[p.value_id] = (p.value, ok)
        return ok

    def _prevote(self, block: bytes | None) -> None:
        self._vote(PREVOTE, block)

    def _precommit(self, block: bytes | None) -> None:
        self._vote(PRECOMMIT, block)

    def _vote(self, kind: str, block: bytes | None) -> None:
        """Broadcast <kind, h_p, round_p, block> and count it, as every other process will."""
        signer = self.signer
        if self._me is None or signer is None:
            return  # an observer never signs
        try:
            v = signer.sign_vote(kind, self.height, self.round, block)
        except DoubleSignRefused:
            # The signer signed at this height and round, or later, what this engine no longer
            # knows (a crash between the signer's record and the consensus log's). Without its
            # vote the round may never gather 2f+1 votes of any kind (one validator alone never
            # does), so end it as a precommit timeout would: moving to a higher round signs
            # nothing and keeps every lock (lines 65-67).
            self.refused_signatures += 1
            self._out.append(ScheduleTimeout(STEP_PRECOMMIT, self.height, self.round,
                                             self.timeouts.delay(STEP_PRECOMMIT, self.round)))
            return
        added, evidence = self._votes.add(v, self._vals().power_of(self._me))
        if evidence is not None:  # only if the signer let a conflict through: report it
            self._out.append(EvidenceFound(evidence))
        if added:
            self._own[(kind, self.round)] = v
        self._out.append(Broadcast(v))

    def _sign_proposal(self, round_: int, pol_round: int, value_id: bytes,
                       value: bytes) -> Proposal | None:
        if self.signer is None:
            return None  # an observer never signs
        try:
            return self.signer.sign_proposal(self.height, round_, pol_round, value_id, value)
        except DoubleSignRefused:
            self.refused_signatures += 1
            return None

    def __repr__(self) -> str:
        return (f"Engine(h={self.height}, r={self.round}, step={self.step.name.lower()}, "
                f"locked={self.locked_round}, valid={self.valid_round}, "
                f"{'decided' if self.decision else 'undecided'})")
