"""The simulator's virtual clock, event queue and network model.

Everything is driven by one seeded :class:`random.Random`, and ties in the event queue are
broken by insertion order, so one seed always produces the same run.

The network delays every message by a random latency (so messages are reordered), and while
the fault window is open it also drops and duplicates messages, slows some down a lot, and cuts
the nodes into groups (partitions) that cannot reach each other until they heal. A crashed
node receives nothing. After the fault window (``heal_at``) the network is healthy: every
message between live nodes arrives within ``latency_ms`` (the paper's GST has passed).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Partition:
    """From ``start`` to ``end`` (ms), nodes in different ``groups`` cannot reach each other."""

    start: int
    end: int
    groups: tuple[frozenset[int], ...]

    def separates(self, a: int, b: int, now: int) -> bool:
        if not self.start <= now < self.end:
            return False
        for g in self.groups:
            if a in g:
                return b not in g
        return True


@dataclass(frozen=True, slots=True)
class NetworkFaults:
    """What the network does to messages sent before ``heal_at``."""

    heal_at: int = 0
    drop: float = 0.0
    duplicate: float = 0.0
    slow: float = 0.0  # probability that a message takes up to slow_ms
    slow_ms: int = 0
    partitions: tuple[Partition, ...] = ()


@dataclass
class NetStats:
    sent: int = 0
    delivered: int = 0
    dropped: int = 0
    duplicated: int = 0
    partitioned: int = 0


class EventQueue:
    """A virtual clock: events run in time order, ties in the order they were scheduled."""

    def __init__(self) -> None:
        self.now = 0
        self._heap: list[tuple[int, int, Callable[..., None], tuple]] = []
        self._seq = 0

    def at(self, when: int, action: Callable[..., None], *args: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (max(when, self.now), self._seq, action, args))

    def after(self, delay: int, action: Callable[..., None], *args: Any) -> None:
        self.at(self.now + delay, action, *args)

    def run_one(self) -> bool:
        if not self._heap:
            return False
        when, _, action, args = heapq.heappop(self._heap)
        self.now = when
        action(*args)
        return True

    def __len__(self) -> int:
        return len(self._heap)


@dataclass
class Network:
    """Sends messages between node indices through the event queue."""

    queue: EventQueue
    rng: random.Random
    faults: NetworkFaults
    deliver: Callable[[int, int, Any], None]
    latency_ms: tuple[int, int] = (2, 40)
    stats: NetStats = field(default_factory=NetStats)

    def send(self, src: int, dst: int, msg: Any) -> None:
        now = self.queue.now
        self.stats.sent += 1
        f = self.faults
        if now < f.heal_at:
            for p in f.partitions:
                if p.separates(src, dst, now):
                    self.stats.partitioned += 1
                    return
            if self.rng.random() < f.drop:
                self.stats.dropped += 1
                return
            if self.rng.random() < f.duplicate:
                self.stats.duplicated += 1
                self.queue.after(self._latency(now), self._arrive, src, dst, msg)
        self.queue.after(self._latency(now), self._arrive, src, dst, msg)

    def _latency(self, now: int) -> int:
        lo, hi = self.latency_ms
        f = self.faults
        if now < f.heal_at and f.slow and self.rng.random() < f.slow:
            hi = max(hi, f.slow_ms)
        return self.rng.randint(lo, hi)

    def _arrive(self, src: int, dst: int, msg: Any) -> None:
        self.stats.delivered += 1
        self.deliver(src, dst, msg)
