"""Simulator scenarios: what one seed decides, the toy application and a Byzantine signer.

:meth:`Scenario.from_seed` draws, from its own random stream, the validators and their
(unequal) stakes, whether one of them is Byzantine (always below a third of the stake), and the
faults before ``heal_at``: loss, duplication and delay of messages, partitions, crash-restarts
of honest validators, a slow disk, CPU starvation (stalls), and a laggard that is down while the
others move on.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from ledger.block import Vote, sign_vote
from ledger.crypto.keys import SigningKey
from node.consensus.messages import Proposal, sign_proposal
from node.consensus.simnet import NetworkFaults, Partition

CHAIN_ID = "custos-sim"



@dataclass(frozen=True)
class Crash:
    node: int
    at: int
    restart_at: int


@dataclass(frozen=True)
class Stall:
    """From ``start`` to ``end`` (ms) ``node`` gets no CPU: everything that reaches it waits."""

    node: int
    start: int
    end: int


@dataclass(frozen=True)
class Scenario:
    seed: int
    stakes: tuple[int, ...]
    byzantine: int | None
    faults: NetworkFaults
    crashes: tuple[Crash, ...]
    bad_proposal_rate: float
    heights: int
    after_heal: int
    liveness_ms: int
    slow_disk: float = 0.0  # before heal_at, the share of blocks whose write takes long
    slow_disk_ms: int = 0
    stalls: tuple[Stall, ...] = ()
    laggard: Crash | None = None  # down while the others decide; catches up by sync

    @classmethod
    def from_seed(cls, seed: int, *, heights: int = 4, after_heal: int = 2,
                  liveness_ms: int = 40_000) -> Scenario:
        rng = random.Random(f"custos-sim-scenario/{seed}")
        n = rng.choice((4, 4, 4, 5, 7))
        stakes = [rng.randint(1, 100) for _ in range(n)]
        byzantine = None
        if rng.random() < 0.6:
            byzantine = rng.randrange(n)
            rest = sum(stakes) - stakes[byzantine]
            # strictly less than a third of the total: 3 * b < b + rest
            stakes[byzantine] = max(1, min(stakes[byzantine], (rest - 1) // 2))
        heal_at = rng.randint(0, 8000) if rng.random() < 0.9 else 0
        partitions = []
        if heal_at:
            for _ in range(rng.randint(0, 2)):
                start = rng.randint(0, heal_at)
                end = rng.randint(start, heal_at)
                members = list(range(n))
                rng.shuffle(members)
                cut = rng.randint(1, n - 1)
                partitions.append(Partition(start, end, (frozenset(members[:cut]),
                                                         frozenset(members[cut:]))))
        faults = NetworkFaults(
            heal_at=heal_at,
            drop=rng.choice((0.0, 0.05, 0.2, 0.4)),
            duplicate=rng.choice((0.0, 0.1, 0.3)),
            slow=rng.choice((0.0, 0.1)),
            slow_ms=rng.randint(200, 1500),
            partitions=tuple(partitions),
        )
        crashes = []
        honest = [i for i in range(n) if i != byzantine]
        if heal_at:
            for _ in range(rng.randint(0, 2)):
                at = rng.randint(0, heal_at)
                crashes.append(Crash(rng.choice(honest), at, rng.randint(at + 1, heal_at + 1)))
        bad_rate = rng.choice((0.0, 0.1, 0.3))
        slow_disk, slow_disk_ms, stalls, laggard = 0.0, 0, [], None
        if heal_at:
            slow_disk, slow_disk_ms = rng.choice((0.0, 0.0, 0.2, 0.5)), rng.randint(200, 2000)
            for _ in range(rng.choice((0, 0, 1, 2))):
                start = rng.randint(0, heal_at)
                stalls.append(Stall(rng.randrange(n), start, start + rng.randint(100, 3000)))
            total = sum(stakes)
            # a laggard whose absence leaves the other honest validators more than 2/3 of the stake
            able = [i for i in honest if i not in {c.node for c in crashes}
                    and 3 * (total - stakes[i] - (stakes[byzantine] if byzantine is not None else 0)) > 2 * total]
            if able and rng.random() < 0.3:
                at = rng.randint(0, heal_at // 2)
                laggard = Crash(rng.choice(able), at, heal_at + rng.randint(2000, 6000))
        return cls(seed, tuple(stakes), byzantine, faults, tuple(crashes), bad_rate, heights, after_heal,
                   liveness_ms, slow_disk, slow_disk_ms, tuple(stalls), laggard)

    @property
    def heal_at(self) -> int:
        """When the last fault ends (the Byzantine validator stays Byzantine)."""
        ends = [self.faults.heal_at, *(c.restart_at for c in self.crashes), *(s.end for s in self.stalls)]
        if self.laggard is not None:
            ends.append(self.laggard.restart_at)
        return max(ends)

    def describe(self) -> str:
        f = self.faults
        parts = [f"{len(self.stakes)} validators, stakes {list(self.stakes)}",
                 f"byzantine {self.byzantine}" if self.byzantine is not None else "no byzantine",
                 f"heal at {self.heal_at} ms", f"drop {f.drop}", f"dup {f.duplicate}",
                 f"slow {f.slow}", f"{len(f.partitions)} partition(s)",
                 f"{len(self.crashes)} crash(es)", f"bad proposals {self.bad_proposal_rate}",
                 f"slow disk {self.slow_disk}", f"{len(self.stalls)} stall(s)",
                 f"laggard {self.laggard.node} down {self.laggard.at}-{self.laggard.restart_at} ms"
                 if self.laggard is not None else "no laggard"]
        return ", ".join(parts)


# --------------------------------------------------------------------------- the application


def value_id(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


class ToyApp:
    """Values are ``b"<height>|<author>|<n>"``; anything else, or another height, is invalid."""

    def __init__(self, name: str, rng: random.Random, bad_rate: float) -> None:
        self.name = name.encode()
        self.rng = rng
        self.bad_rate = bad_rate
        self.counter = 0

    def propose(self, height: int, round_: int) -> tuple[bytes, bytes]:
        self.counter += 1
        if self.rng.random() < self.bad_rate:
            value = b"malformed|%s|%d" % (self.name, self.counter)
        else:
            value = b"%d|%s|%d" % (height, self.name, self.counter)
        return value, value_id(value)

    def validate(self, height: int, round_: int, value: bytes) -> bytes | None:
        head = value.split(b"|", 1)[0]
        if head != str(height).encode():
            return None
        return value_id(value)


class UnguardedSigner:
    """Signs anything: the Byzantine validator's signer."""

    def __init__(self, key: SigningKey) -> None:
        self.key = key
        self.public = key.public

    def sign_vote(self, kind: str, height: int, round_: int, block: bytes | None) -> Vote:
        return sign_vote(self.key, CHAIN_ID, kind, height, round_, block)

    def sign_proposal(self, height: int, round_: int, pol_round: int, vid: bytes,
                      value: bytes) -> Proposal:
        return sign_proposal(self.key, CHAIN_ID, height, round_, pol_round, vid, value)
