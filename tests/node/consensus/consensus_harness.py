"""A small harness for the engine tests: known keys, signed messages, output filters."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from ledger.block import PRECOMMIT, PREVOTE, Vote, sign_vote
from ledger.crypto.keys import SigningKey
from ledger.validators import Validator, ValidatorSet
from node.consensus.config import Limits, TimeoutConfig
from node.consensus.engine import Engine
from node.consensus.messages import Proposal, sign_proposal
from node.consensus.outputs import Broadcast, Decide, EvidenceFound, ScheduleTimeout
from node.consensus.privval import MemoryPrivValidator

CHAIN = "custos-test"



def value_id(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


@dataclass
class ScriptedApp:
    """Values are valid unless listed in ``invalid``; proposes ``next_values`` in order."""

    next_values: list[bytes] = field(default_factory=list)
    invalid: set[bytes] = field(default_factory=set)
    validated: list[bytes] = field(default_factory=list)
    proposed: int = 0

    def propose(self, height: int, round_: int) -> tuple[bytes, bytes]:
        self.proposed += 1
        value = self.next_values.pop(0) if self.next_values else b"fresh-%d-%d" % (height, round_)
        return value, value_id(value)

    def validate(self, height: int, round_: int, value: bytes) -> bytes | None:
        self.validated.append(value)
        return None if value in self.invalid else value_id(value)


class Net:
    """Four (by default) validators with known keys, and one engine under test."""

    def __init__(self, stakes=(1, 1, 1, 1), *, me: int | str | None = "non-proposer",
                 observer: bool = False, limits: Limits | None = None,
                 timeouts: TimeoutConfig | None = None) -> None:
        self.keys = [SigningKey(hashlib.sha256(b"consensus-test-key-%d" % i).digest())
                     for i in range(len(stakes))]
        self.validators = ValidatorSet(Validator(k.public, s) for k, s in zip(self.keys, stakes, strict=True))
        self.index = {k.public: i for i, k in enumerate(self.keys)}
        if me == "non-proposer":
            me = self.first_non_proposer(rounds=(0, 1))
        elif me == "proposer":
            me = self.proposer_index(1, 0)
        self.me = me
        self.app = ScriptedApp()
        self.timeouts = timeouts or TimeoutConfig(propose_ms=1000, propose_delta_ms=100,
                                                  prevote_ms=500, prevote_delta_ms=50,
                                                  precommit_ms=500, precommit_delta_ms=50)
        signer = None if observer or me is None else MemoryPrivValidator(self.keys[me], CHAIN)
        self.signer = signer
        self.engine = Engine(self.app, signer, timeouts=self.timeouts, limits=limits)

    # who is who
    def proposer_index(self, height: int, round_: int) -> int:
        return self.index[self.validators.proposer(height, round_)]

    def first_non_proposer(self, rounds=(0,), height: int = 1) -> int:
        busy = {self.proposer_index(height, r) for r in rounds}
        return next(i for i in range(len(self.keys)) if i not in busy)

    def others(self, *, exclude: tuple[int, ...] = ()) -> list[int]:
        return [i for i in range(len(self.keys)) if i != self.me and i not in exclude]

    def round_where(self, pred, height: int = 1, start: int = 1) -> int:
        """The first round >= start whose proposer index satisfies ``pred``."""
        r = start
        while not pred(self.proposer_index(height, r)):
            r += 1
        return r

    # messages
    def proposal(self, round_: int, value: bytes, pol_round: int = -1, height: int = 1,
                 by: int | None = None) -> Proposal:
        i = self.proposer_index(height, round_) if by is None else by
        return sign_proposal(self.keys[i], CHAIN, height, round_, pol_round, value_id(value), value)

    def vote(self, kind: str, i: int, round_: int, value: bytes | None, height: int = 1) -> Vote:
        block = None if value is None else value_id(value)
        return sign_vote(self.keys[i], CHAIN, kind, height, round_, block)

    def prevote(self, i, round_, value, height=1):
        return self.vote(PREVOTE, i, round_, value, height)

    def precommit(self, i, round_, value, height=1):
        return self.vote(PRECOMMIT, i, round_, value, height)

    # driving
    def start(self, height: int = 1) -> list:
        return self.engine.start_height(height, self.validators)

    def feed(self, *msgs) -> list:
        out = []
        for m in msgs:
            out += self.engine.on_proposal(m) if isinstance(m, Proposal) else self.engine.on_vote(m)
        return out


def sent(outputs: list) -> list:
    return [o.message for o in outputs if isinstance(o, Broadcast)]


def sent_votes(outputs: list, kind: str | None = None) -> list[Vote]:
    return [m for m in sent(outputs) if isinstance(m, Vote) and (kind is None or m.kind == kind)]


def timers(outputs: list) -> list[ScheduleTimeout]:
    return [o for o in outputs if isinstance(o, ScheduleTimeout)]


def decisions(outputs: list) -> list[Decide]:
    return [o for o in outputs if isinstance(o, Decide)]


def evidence(outputs: list) -> list[EvidenceFound]:
    return [o for o in outputs if isinstance(o, EvidenceFound)]
