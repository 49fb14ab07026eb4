"""What the engine asks its caller to do. Every input returns a list of these, in order."""

from __future__ import annotations

from dataclasses import dataclass

from ledger.block import Commit, DuplicateVoteEvidence, Vote
from node.consensus.messages import Proposal, Timeout


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Send ``message`` to every peer (a signed proposal or vote of this node, or a relay)."""

    message: Proposal | Vote


@dataclass(frozen=True, slots=True)
class ScheduleTimeout:
    """Call ``engine.on_timeout(self.timeout)`` after ``delay_ms`` milliseconds."""

    step: str
    height: int
    round: int
    delay_ms: int

    @property
    def timeout(self) -> Timeout:
        return Timeout(self.step, self.height, self.round)


@dataclass(frozen=True, slots=True)
class Decide:
    """``value`` (with id ``value_id``) is decided at ``height`` in ``round`` (line 51).

    ``commit`` holds every precommit for ``value_id`` in ``round`` the engine had: more than
    2/3 of the power. The node stores the block with its commit, then calls
    ``engine.start_height(height + 1, next_validators)``.
    """

    height: int
    round: int
    value: bytes
    value_id: bytes
    commit: Commit


@dataclass(frozen=True, slots=True)
class EvidenceFound:
    """A validator signed two different votes for one height/round/step."""

    evidence: DuplicateVoteEvidence


Output = Broadcast | ScheduleTimeout | Decide | EvidenceFound
