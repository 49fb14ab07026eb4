"""Readiness: may a load balancer send this node clients' requests now?

A node is ready when its last committed block is recent: its block time lies at most
``max_block_age_ms`` behind this node's clock. That one test covers both ways a node can be
unfit to serve while its process is healthy:

* it is catching up (block sync replays old blocks: the tip's time is old), and
* the network does not commit (too little stake online, or this node is cut off): the idle
  chain's heartbeat blocks stop coming, and the tip grows old.

``/healthz`` (liveness: the process serves) stays 200 in both cases; ``/readyz`` turns 503.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ledger.storage.chainstore import ChainStore


@dataclass(frozen=True)
class Readiness:
    ready: bool
    height: int
    last_block_age_ms: int
    max_block_age_ms: int
    reason: str = ""

    def to_json(self) -> dict:
        doc: dict[str, bool | int | str] = {"ready": self.ready, "height": self.height,
                                            "last_block_age_ms": self.last_block_age_ms,
                                            "max_block_age_ms": self.max_block_age_ms}
        if self.reason:
            doc["reason"] = self.reason
        return doc


def readiness(store: ChainStore, max_block_age_ms: int, *,
              clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000) -> Readiness:
    tip = store.tip
    age = max(0, clock_ms() - tip.time)
    if store.damage is not None:
        return Readiness(False, store.height, age, max_block_age_ms, f"the chain store is damaged: {store.damage}")
    if store.height == 0:
        return Readiness(False, 0, age, max_block_age_ms, "no block committed yet")
    if age > max_block_age_ms:
        return Readiness(False, store.height, age, max_block_age_ms,
                         f"the last block (height {store.height}) is {age / 1000:.1f} s old, more than "
                         f"{max_block_age_ms / 1000:.1f} s: this node is catching up or the network does not commit")
    return Readiness(True, store.height, age, max_block_age_ms)
