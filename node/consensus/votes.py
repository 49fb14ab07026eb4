"""Vote bookkeeping for one height: vote sets, senders per round, rounds seen far ahead.

What a peer can make the engine keep here is bounded by the validator set:

* :class:`VoteSet` keeps at most one vote per validator (the first one received); a second,
  different vote from the same validator for the same height/round/step is equivocation,
  reported once per (validator, round, step) and never counted.
* :class:`HeightVotes` keeps a prevote and a precommit set per round, only for rounds the
  engine accepts (it drops rounds beyond its window before they get here), and the distinct
  senders of any message per round, for the round-skip rule (Algorithm 1, line 55).
* :class:`FarRounds` keeps, for messages from rounds beyond the window, just one integer per
  validator: the highest such round it has sent something for.

Voting power is the validator's stake, read from the height's
:class:`~ledger.validators.ValidatorSet`; thresholds are its ``has_quorum`` (2f+1, i.e. more
than 2/3 of the stake) and ``exceeds_one_third`` (f+1).
"""

from __future__ import annotations

from ledger.block import PRECOMMIT, PREVOTE, DuplicateVoteEvidence, Vote
from ledger.validators import ValidatorSet


class VoteSet:
    """The votes of one kind (prevote or precommit) for one round of one height.

    The first vote of each validator counts towards :attr:`power` (the "2f+1 of anything" of
    lines 34 and 47). The paper counts messages: a validator that equivocated sent a message
    for each of its values, and each counts towards its own value (this is what lets a correct
    process verify a proof-of-lock that includes a Byzantine vote it first saw in another
    form). So a conflicting vote is also counted for its value when the caller says that value
    is *tracked* (nil, or the id of a proposal the engine holds); that bounds what one
    validator can make a set keep to one vote per tracked value.
    """

    __slots__ = ("_tally", "_voters", "kind", "power", "round", "votes")

    def __init__(self, kind: str, round_: int) -> None:
        self.kind = kind
        self.round = round_
        #: the first vote received from each validator
        self.votes: dict[bytes, Vote] = {}
        #: total power of the validators that voted (any value, nil included), each once
        self.power = 0
        self._tally: dict[bytes | None, int] = {}
        self._voters: dict[bytes | None, dict[bytes, Vote]] = {}

    def add(self, vote: Vote, power: int, tracked: bool = False) -> tuple[bool, Vote | None]:
        """Add ``vote`` with ``power``. Returns ``(counted, conflicting)``.

        ``conflicting`` is the first vote held from the same validator, if it is for another
        value (equivocation). A conflicting vote is counted for its own value only if
        ``tracked``. A repeat of a vote already counted returns ``(False, ...)``.
        """
        held = self.votes.get(vote.validator)
        if held is None:
            self.votes[vote.validator] = vote
            self.power += power
        elif held.block == vote.block:
            return False, None
        elif not tracked:
            return False, held
        voters = self._voters.get(vote.block)
        if voters is None:
            voters = self._voters[vote.block] = {}
        elif vote.validator in voters:
            return False, held
        voters[vote.validator] = vote
        self._tally[vote.block] = self._tally.get(vote.block, 0) + power
        return True, held

    def power_for(self, block: bytes | None) -> int:
        """Power of the validators that voted for ``block`` (None: for nil)."""
        return self._tally.get(block, 0)

    def votes_for(self, block: bytes | None) -> list[Vote]:
        """The counted votes for ``block``, one per validator."""
        voters = self._voters.get(block)
        return list(voters.values()) if voters else []

    def blocks(self) -> dict[bytes | None, int]:
        """Power per voted value (a copy)."""
        return dict(self._tally)

    def __len__(self) -> int:
        return len(self.votes)


_EMPTY_PREVOTES = VoteSet(PREVOTE, -1)
_EMPTY_PRECOMMITS = VoteSet(PRECOMMIT, -1)


class HeightVotes:
    """All accepted votes of one height, by round, plus the round-skip sender tally."""

    __slots__ = ("_precommits", "_prevotes", "_reported", "_sender_power", "_senders")

    def __init__(self) -> None:
        self._prevotes: dict[int, VoteSet] = {}
        self._precommits: dict[int, VoteSet] = {}
        self._senders: dict[int, set[bytes]] = {}
        self._sender_power: dict[int, int] = {}
        self._reported: set[tuple[bytes, int, str]] = set()

    def prevotes(self, round_: int) -> VoteSet:
        """The prevotes of ``round_`` (an empty, shared set if there are none: do not add to it)."""
        return self._prevotes.get(round_, _EMPTY_PREVOTES)

    def precommits(self, round_: int) -> VoteSet:
        return self._precommits.get(round_, _EMPTY_PRECOMMITS)

    def add(self, vote: Vote, power: int, tracked: bool = False
            ) -> tuple[bool, DuplicateVoteEvidence | None]:
        """Add a vote of this height. Returns ``(counted, evidence)`` (see :meth:`VoteSet.add`).

        ``evidence`` is set the first time a validator is caught with two different votes for
        one round and step; it is not repeated for that slot.
        """
        table = self._prevotes if vote.kind == PREVOTE else self._precommits
        vs = table.get(vote.round)
        if vs is None:
            vs = table[vote.round] = VoteSet(vote.kind, vote.round)
        added, held = vs.add(vote, power, tracked)
        if held is None:
            return added, None
        slot = (vote.validator, vote.round, vote.kind)
        if slot in self._reported:
            return added, None
        self._reported.add(slot)
        return added, DuplicateVoteEvidence.of(held, vote)

    def note_sender(self, round_: int, key: bytes, power: int) -> int:
        """Record that ``key`` sent a message of ``round_``; return the power of all its senders.

        This is the left-hand side of line 55: "f+1 <*, h_p, round, *, *> with round > round_p".
        """
        senders = self._senders.get(round_)
        if senders is None:
            senders = self._senders[round_] = set()
            self._sender_power[round_] = 0
        if key not in senders:
            senders.add(key)
            self._sender_power[round_] += power
        return self._sender_power[round_]

    def rounds(self) -> list[int]:
        """Rounds holding at least one vote, ascending."""
        return sorted(set(self._prevotes) | set(self._precommits))


class FarRounds:
    """The highest round beyond the engine's window that each validator sent a message for.

    The engine does not store messages that far ahead (a peer could otherwise make it keep one
    set per round number), but it must still follow honest validators that have moved on:
    when validators with more than a third of the power are all at round ``R`` or beyond, at
    least one honest validator has reached ``R``, so skipping to ``R`` is the line-55 rule
    applied to rounds the engine did not store (it never skips on Byzantine messages alone).
    """

    __slots__ = ("_highest",)

    def __init__(self) -> None:
        self._highest: dict[bytes, int] = {}

    def note(self, key: bytes, round_: int) -> None:
        if round_ > self._highest.get(key, -1):
            self._highest[key] = round_

    def skip_target(self, validators: ValidatorSet, above: int) -> int | None:
        """The highest round ``R > above`` that validators with f+1 power have reached, if any."""
        power = 0
        for key, r in sorted(self._highest.items(), key=lambda kv: -kv[1]):
            if r <= above:
                break
            power += validators.power_of(key)
            if validators.exceeds_one_third(power):
                return r
        return None

    def clear(self) -> None:
        self._highest.clear()
