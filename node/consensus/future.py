"""A bounded buffer for messages of the next height, replayed when that height starts.

A validator that is a little behind (it has not yet decided ``h`` while others vote on
``h+1``) would otherwise throw away the first messages of ``h+1`` and wait for them to be
sent again. The buffer keeps only what an honest peer would send early in a height: messages
from validators of the current set, for rounds ``0..max_round``, at most one proposal per
round (from the proposer the current set designates) and one vote per validator, round and
step. Its size is therefore at most ``(max_round + 1) * (2 * validators + 1)`` messages.
"""

from __future__ import annotations

from ledger.block import Vote
from ledger.validators import ValidatorSet
from node.consensus.messages import Proposal


class FutureBuffer:
    """Messages for one future height; adding one for another height drops the rest."""

    __slots__ = ("_items", "height", "max_round")

    def __init__(self, max_round: int) -> None:
        self.height = 0
        self.max_round = max_round
        self._items: dict[tuple, Proposal | Vote] = {}

    def _use(self, height: int) -> None:
        if height != self.height:
            self.height = height
            self._items.clear()

    def add_proposal(self, p: Proposal, validators: ValidatorSet) -> bool:
        """Keep ``p`` if its round is low enough and ``validators`` name its author as proposer."""
        if p.round > self.max_round or p.proposer != validators.proposer(p.height, p.round):
            return False
        self._use(p.height)
        return self._items.setdefault(("p", p.round), p) is p

    def add_vote(self, v: Vote, validators: ValidatorSet) -> bool:
        """Keep ``v`` if its round is low enough, its signer is in ``validators`` and its slot is free."""
        if v.round > self.max_round or v.validator not in validators:
            return False
        self._use(v.height)
        return self._items.setdefault(("v", v.kind, v.round, v.validator), v) is v

    def peek(self, height: int) -> list[Proposal | Vote]:
        """The buffered messages for ``height``, in arrival order (the buffer is unchanged)."""
        return list(self._items.values()) if height == self.height else []

    def take(self, height: int) -> list[Proposal | Vote]:
        """Remove and return the buffered messages for ``height`` (others are dropped)."""
        out = self.peek(height)
        self._items.clear()
        return out

    def __len__(self) -> int:
        return len(self._items)
