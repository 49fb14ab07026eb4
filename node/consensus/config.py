"""Engine settings: round timeouts and the bounds on what peers can make the engine store."""

from __future__ import annotations

from dataclasses import dataclass

from node.consensus.messages import STEP_PRECOMMIT, STEP_PREVOTE, STEP_PROPOSE


@dataclass(frozen=True, slots=True)
class TimeoutConfig:
    """Round timeouts that grow linearly with the round: ``base + round * delta`` (ms).

    Algorithm 1 needs timeoutPropose/Prevote/Precommit(round) to grow with the round so that,
    after GST, some round lasts long enough for every correct process to hear every other
    (the paper's liveness argument, section 4).
    """

    propose_ms: int = 3000
    propose_delta_ms: int = 500
    prevote_ms: int = 1000
    prevote_delta_ms: int = 500
    precommit_ms: int = 1000
    precommit_delta_ms: int = 500

    def __post_init__(self) -> None:
        for name in ("propose_ms", "propose_delta_ms", "prevote_ms", "prevote_delta_ms",
                     "precommit_ms", "precommit_delta_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if min(self.propose_delta_ms, self.prevote_delta_ms, self.precommit_delta_ms) == 0:
            raise ValueError("timeouts must grow with the round (every delta > 0)")

    def delay(self, step: str, round_: int) -> int:
        """Milliseconds to wait for ``step`` in ``round_``."""
        if step == STEP_PROPOSE:
            return self.propose_ms + round_ * self.propose_delta_ms
        if step == STEP_PREVOTE:
            return self.prevote_ms + round_ * self.prevote_delta_ms
        if step == STEP_PRECOMMIT:
            return self.precommit_ms + round_ * self.precommit_delta_ms
        raise ValueError(f"unknown step {step!r}")


@dataclass(frozen=True, slots=True)
class Limits:
    """What the engine keeps from peers, beyond one vote per validator, round and step.

    ``round_window``: messages for rounds above ``round + round_window`` are not stored; only
    the highest such round per validator is remembered, to follow honest validators that are
    ahead (see :class:`~node.consensus.votes.FarRounds`).
    ``future_rounds``: for height ``h+1`` the engine buffers at most one proposal and one vote
    per validator and step for rounds ``0..future_rounds``, replayed when that height starts.
    """

    round_window: int = 10
    future_rounds: int = 2

    def __post_init__(self) -> None:
        if self.round_window < 1 or self.future_rounds < 0:
            raise ValueError("round_window must be at least 1 and future_rounds at least 0")
