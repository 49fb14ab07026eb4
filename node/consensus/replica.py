"""One validator's consensus, with every decision and no I/O: the replica.

The node and the simulator run this same class. It is fed ``handle(now_ms, event)`` (a peer's
verified message, a timer it asked for, a block reaching the disk...) and returns the effects
to carry out, in order: messages to send or broadcast, timers to start, a decided block to
store, or a reason to halt. It never reads a clock (``now_ms`` is the caller's), never sleeps,
never touches a socket or a file. What it needs of the node's state comes through a
:class:`Ledger` (height, validators, mempool size, the blocks to serve or apply), and its
engine (:class:`~node.consensus.recorder.RecordedEngine`) writes through the storage it was
built with: files in a node, memory in the simulator.

It owns five decisions that used to live in the asyncio driver:

* **the engine**: every input goes through the write-ahead log; outputs become effects;
* **commit ordering**: a decision becomes :class:`StoreBlock`; the next height starts only
  after :class:`Stored` (or block sync) moved the ledger on, and never twice;
* **height pacing**: after a commit the next height begins ``block_interval_ms`` after a
  transaction is waiting, when the heartbeat is due on an idle chain, or at once when a peer's
  message for that height arrives, whichever comes first;
* **block sync**: peers' heights are tracked; this node asks the highest peer for blocks when it
  is behind by more than the height it is working on, or has spent a while on its height
  (rounds going by there do not count as progress); a peer that sends nothing within
  ``SYNC_REQUEST_TIMEOUT_MS`` (gone, or too slow) is asked again only after every other peer
  ahead has been; it serves its own blocks to others;
* **gossip and evidence**: client transactions are broadcast in batches, at most one per
  ``tx_gossip_ms`` (after a quiet spell without waiting, otherwise gathered until the time is
  up or :data:`MAX_TX_BATCH` are waiting); evidence of a double vote is checked, kept for the
  next proposals and relayed once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from ledger.block import DuplicateVoteEvidence, Vote
from ledger.validators import ValidatorSet
from node.consensus.messages import Proposal, Timeout
from node.consensus.outputs import Broadcast as EngineBroadcast
from node.consensus.outputs import Decide, EvidenceFound, Output, ScheduleTimeout
from node.consensus.recorder import RecordedEngine
from node.sync import MAX_BLOCKS_PER_RESPONSE, Blocks, Get, Item, Status

log = logging.getLogger("custos.consensus")

MAX_TX_BATCH = 1000
SYNC_REQUEST_TIMEOUT_MS = 5_000
#: how long block sync waits before asking again for a block it cannot execute (erased transactions)
SYNC_ERASED_RETRY_MS = 30_000


# --------------------------------------------------------------------------- what it asks of the node


class SyncOutcome(Enum):
    APPLIED = "applied"  # the block was the next one, verified and stored
    KNOWN = "known"  # at or below this node's height already
    GAP = "gap"  # not the next block, or without its certificate: stop here
    REFUSED = "refused"  # it does not verify: the peer is not to be asked again
    ERASED = "erased"  # it holds stubs of erased transactions this node cannot execute: wait


class Ledger(Protocol):
    """The node's state as the replica reads it (the node's store; a toy chain in the simulator)."""

    def height(self) -> int:
        """The last stored height."""
        ...

    def tip_time_ms(self) -> int:
        """The block time of the last stored block (its genesis time at height 0)."""
        ...

    def validators(self, height: int) -> ValidatorSet: ...

    def pending_txs(self) -> int:
        """Transactions waiting for a block."""
        ...

    def blocks_from(self, start: int, limit: int) -> list[Item]:
        """Stored blocks with their certificates from ``start``, at most ``limit`` (and a size bound)."""
        ...

    def apply_synced(self, item: Item) -> SyncOutcome:
        """Verify a block a peer sent (its certificate against this node's own view of the
        validators, and its re-execution) and store it if it is the next one."""
        ...

    def knows_evidence(self, evidence: DuplicateVoteEvidence) -> bool: ...

    def add_evidence(self, evidence: DuplicateVoteEvidence) -> None: ...

    def verify_vote(self, vote: Vote) -> bool:
        """The vote's signature (evidence arrives unverified)."""
        ...

    def count(self, metric: str) -> None:
        """Add one to a counter (metrics)."""
        ...


#: how long without a new block before the replica says, in the log, where consensus stands
#: (and again as often while it lasts); at least twice the heartbeat, so an idle chain is quiet
STALL_WARNING_MS = 10_000


@dataclass(frozen=True, slots=True)
class ReplicaConfig:
    heartbeat_ms: int = 5_000
    block_interval_ms: int = 200
    rebroadcast_ms: int = 1_000
    #: client transactions go to the peers in one batch per this long at most: a peer pays for
    #: each batch (decrypting, decoding, a hand-off to its signature-checking thread) besides
    #: each transaction
    tx_gossip_ms: int = 25


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Start:
    """The node starts: resume the height after the stored tip from the log."""


@dataclass(frozen=True, slots=True)
class Received:
    """A proposal or vote from ``peer`` whose signature the caller has verified."""

    peer: bytes
    message: Proposal | Vote


@dataclass(frozen=True, slots=True)
class EvidenceReceived:
    peer: bytes
    evidence: DuplicateVoteEvidence


@dataclass(frozen=True, slots=True)
class SyncReceived:
    """A block-sync message from ``peer``: its height, a request, or blocks."""

    peer: bytes
    message: Status | Get | Blocks


@dataclass(frozen=True, slots=True)
class PeerConnected:
    peer: bytes


@dataclass(frozen=True, slots=True)
class TxAdmitted:
    """Transactions entered the mempool; ``raw`` is a client's transaction to gossip (None for
    transactions a peer gossiped, which are not relayed)."""

    raw: bytes | None = None


@dataclass(frozen=True, slots=True)
class TimerFired:
    timer: Timer


@dataclass(frozen=True, slots=True)
class Stored:
    """The block decided at ``height`` is on disk."""

    height: int


@dataclass(frozen=True, slots=True)
class StoreFailed:
    height: int
    error: str


Event = (Start | Received | EvidenceReceived | SyncReceived | PeerConnected | TxAdmitted | TimerFired | Stored
         | StoreFailed)


# --------------------------------------------------------------------------- timers


@dataclass(frozen=True, slots=True)
class Pace:
    """Check whether the next height should begin (armed for ``due_ms``)."""

    due_ms: int


@dataclass(frozen=True, slots=True)
class Tick:
    """The periodic check: rebroadcast when stuck, announce the height, sync if behind."""


@dataclass(frozen=True, slots=True)
class FlushTxs:
    """Send the transactions gathered since the last flush."""


Timer = Timeout | Pace | Tick | FlushTxs


# --------------------------------------------------------------------------- effects


@dataclass(frozen=True, slots=True)
class TxBatch:
    raws: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Broadcast:
    """To every connected peer: a consensus message, this node's height, or transactions."""

    message: Proposal | Vote | Status | TxBatch


@dataclass(frozen=True, slots=True)
class Send:
    """To one peer, on the block-sync channel."""

    peer: bytes
    message: Status | Get | Blocks


@dataclass(frozen=True, slots=True)
class Relay:
    """Evidence, passed on by gossip (each peer gets it once)."""

    evidence: DuplicateVoteEvidence


@dataclass(frozen=True, slots=True)
class SetTimer:
    """Feed ``TimerFired(timer)`` back after ``delay_ms``."""

    timer: Timer
    delay_ms: int


@dataclass(frozen=True, slots=True)
class StoreBlock:
    """Write the decided block with its certificate, then feed back :class:`Stored` (or
    :class:`StoreFailed`)."""

    decision: Decide


@dataclass(frozen=True, slots=True)
class Halt:
    """The node cannot go on (it cannot store its chain); it must stop."""

    reason: str


Effect = Broadcast | Send | Relay | SetTimer | StoreBlock | Halt


# --------------------------------------------------------------------------- the replica


class Replica:
    """One validator's (or observer's) consensus decisions. Not thread-safe: feed it serially."""

    def __init__(self, engine: RecordedEngine, ledger: Ledger, config: ReplicaConfig | None = None) -> None:
        self.engine = engine
        self.ledger = ledger
        self.config = config or ReplicaConfig()
        self.running = False  # inside a height (not waiting for the next one to begin)
        self.storing: int | None = None  # the decided height on its way to disk
        self.halted: str | None = None
        self._peer_heights: dict[bytes, int] = {}
        self._sync_pending: tuple[bytes, int] | None = None  # (peer, when asked)
        self._sync_erased: tuple[int, int] | None = None  # (height it stopped at, when)
        self._cannot_serve: dict[bytes, int] = {}  # peer -> the height it had no block for
        self._progress = (0, 0, 0)  # (height, round, when it last changed)
        self._height_since = (0, 0)  # (height, when this node reached it)
        self._stall_warned = 0  # when the last "no block for a while" warning was logged
        self._pace_at: int | None = None
        self._tx_batch: list[bytes] = []
        self._flush_armed = False
        self._last_flush_ms: int | None = None  # when gathered transactions last went out
        self._out: list[Effect] = []
        self._now = 0

    # ------------------------------------------------------------------ queries
    @property
    def height(self) -> int:
        """The height the engine is at (working on, or decided and waiting for the next)."""
        return self.engine.engine.height

    def status(self) -> dict:
        e = self.engine.engine
        return {"height": e.height, "round": e.round, "step": e.step.name.lower(), "running": self.running}

    # ------------------------------------------------------------------ the one input
    def handle(self, now_ms: int, event: Event) -> list[Effect]:
        self._now = now_ms
        if self.halted is None:
            self._dispatch(event)
        out, self._out = self._out, []
        return out

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, Received):
            self._on_consensus(event.peer, event.message)
        elif isinstance(event, TimerFired):
            self._on_timer(event.timer)
        elif isinstance(event, TxAdmitted):
            self._on_tx(event.raw)
        elif isinstance(event, SyncReceived):
            self._on_sync(event.peer, event.message)
        elif isinstance(event, EvidenceReceived):
            self._evidence(event.evidence)
        elif isinstance(event, Stored):
            self._on_stored(event.height)
        elif isinstance(event, StoreFailed):
            self.storing = None
            self.halted = f"cannot store block {event.height}: {event.error}"
            self._out.append(Halt(self.halted))
        elif isinstance(event, PeerConnected):
            self._out.append(Send(event.peer, Status(self.ledger.height())))
        elif isinstance(event, Start):
            self._start()

    # ------------------------------------------------------------------ engine outputs
    def _execute(self, outputs: list[Output]) -> None:
        for o in outputs:
            if isinstance(o, EngineBroadcast):
                self._out.append(Broadcast(o.message))
            elif isinstance(o, ScheduleTimeout):
                self._out.append(SetTimer(o.timeout, o.delay_ms))
            elif isinstance(o, Decide):
                self._decided(o)
            elif isinstance(o, EvidenceFound):
                self._evidence(o.evidence)

    def _start(self) -> None:
        height = self.ledger.height() + 1
        # raises WalError if the log is ahead of the store: refuse to run rather than forget a lock
        outputs = self.engine.recover(height, self.ledger.validators(height))
        self.running = True
        self._execute(outputs)
        self._out.append(SetTimer(Tick(), self.config.rebroadcast_ms))

    def _begin_height(self) -> None:
        if self.running or self.storing is not None:
            return
        height = self.ledger.height() + 1
        self.running = True
        self._pace_at = None
        self._execute(self.engine.start_height(height, self.ledger.validators(height)))

    # ------------------------------------------------------------------ commit ordering
    def _decided(self, d: Decide) -> None:
        if d.height != self.ledger.height() + 1 or self.storing is not None:
            return  # block sync got there first
        if d.round > 0:
            self.ledger.count("heights_decided_after_round_0")
        self.storing = d.height
        self._out.append(StoreBlock(d))

    def _on_stored(self, height: int) -> None:
        if self.storing != height:
            return
        self.storing = None
        self._after_commit()

    def _after_commit(self) -> None:
        self.running = False
        self._out.append(Broadcast(Status(self.ledger.height())))
        self._pace_next_height()

    # ------------------------------------------------------------------ height pacing
    def _pace_next_height(self) -> None:
        cfg = self.config
        if self.ledger.pending_txs():
            self._arm_pace(self._now + cfg.block_interval_ms)
            return
        due = self.ledger.tip_time_ms() + cfg.heartbeat_ms
        if due <= self._now:
            self._begin_height()
        else:
            self._arm_pace(due)

    def _arm_pace(self, due: int) -> None:
        if self._pace_at is not None and self._pace_at <= due:
            return
        self._pace_at = due
        self._out.append(SetTimer(Pace(due), max(0, due - self._now)))

    def _on_pace(self, p: Pace) -> None:
        if p.due_ms != self._pace_at:
            return  # superseded by an earlier one
        self._pace_at = None
        if self.running or self.storing is not None:
            return
        if self.ledger.pending_txs() or self._now >= self.ledger.tip_time_ms() + self.config.heartbeat_ms:
            self._begin_height()
        else:
            self._pace_next_height()

    # ------------------------------------------------------------------ inputs
    def _on_timer(self, timer: Timer) -> None:
        if isinstance(timer, Timeout):
            if timer.height == self.height and self.running:
                self._execute(self.engine.on_timeout(timer))
        elif isinstance(timer, Pace):
            self._on_pace(timer)
        elif isinstance(timer, Tick):
            self._tick()
            self._out.append(SetTimer(Tick(), self.config.rebroadcast_ms))
        elif isinstance(timer, FlushTxs):
            self._flush_armed = False
            self._flush_txs()

    def _on_consensus(self, peer: bytes, msg: Proposal | Vote) -> None:
        height = msg.height
        ours = self.ledger.height()
        if self.storing is not None:
            pass  # the engine buffers the next height's messages until it starts
        elif height == ours + 1 and not self.running:
            self._begin_height()  # a peer has started it: join at once
        elif height > ours + 1:
            self._peer_heights[peer] = max(self._peer_heights.get(peer, 0), height - 1)
            self._maybe_sync()
        if isinstance(msg, Proposal):
            self._execute(self.engine.on_proposal(msg))
        else:
            self._execute(self.engine.on_vote(msg))

    def _on_tx(self, raw: bytes | None) -> None:
        if raw is not None:
            self._tx_batch.append(raw)
            if len(self._tx_batch) >= MAX_TX_BATCH:
                self._flush_txs()  # a full batch goes at once (the armed timer sends what follows)
            elif not self._flush_armed:
                # after a quiet spell at the end of this turn of the event loop (with the rest of
                # its client's request), else when tx_gossip_ms have passed since the last batch
                # (bounded: a clock stepped back does not hold gossip up)
                last, interval = self._last_flush_ms, self.config.tx_gossip_ms
                wait = 0 if last is None else min(max(0, last + interval - self._now), interval)
                self._flush_armed = True
                self._out.append(SetTimer(FlushTxs(), wait))
        if not self.running and self.storing is None:
            self._arm_pace(self._now + self.config.block_interval_ms)

    def _flush_txs(self) -> None:
        batch, self._tx_batch = self._tx_batch, []
        if not batch:
            return
        self._last_flush_ms = self._now
        # straight to every peer (validators keep a full mesh): relaying by gossip would make each
        # node receive, decrypt and hash every batch once per neighbour
        for i in range(0, len(batch), MAX_TX_BATCH):
            self._out.append(Broadcast(TxBatch(tuple(batch[i:i + MAX_TX_BATCH]))))

    def _evidence(self, ev: DuplicateVoteEvidence) -> None:
        """Keep evidence for the next proposals and pass it on (gossip sends it once per peer)."""
        if self.ledger.knows_evidence(ev):
            return
        if not (ev.a.conflicts_with(ev.b) and self.ledger.verify_vote(ev.a) and self.ledger.verify_vote(ev.b)):
            self.ledger.count("bad_evidence")
            return
        log.warning("validator %s signed conflicting %ss at height %d round %d", ev.a.validator.hex()[:12],
                    ev.a.kind, ev.a.height, ev.a.round)
        self.ledger.add_evidence(ev)
        self.ledger.count("evidence_seen")
        self._out.append(Relay(ev))

    # ------------------------------------------------------------------ block sync
    def _on_sync(self, peer: bytes, msg: Status | Get | Blocks) -> None:
        if isinstance(msg, Status):
            self._peer_heights[peer] = msg.height
            self._maybe_sync()
        elif isinstance(msg, Get):
            self._out.append(Send(peer, Blocks(tuple(self.ledger.blocks_from(msg.start, msg.limit)))))
        elif isinstance(msg, Blocks):
            self._apply_blocks(peer, msg)

    def _maybe_sync(self) -> None:
        if self.storing is not None:
            return
        ours = self.ledger.height()
        ahead = [(h, p) for p, h in self._peer_heights.items() if h > ours]
        if not ahead:
            return
        now = self._now
        unanswered = None
        if self._sync_pending is not None:
            if now - self._sync_pending[1] < SYNC_REQUEST_TIMEOUT_MS:
                return
            # No answer in time: the peer may be gone (a validator killed after it decided the
            # height we lack still heads the list of peers ahead). Ask the others first.
            unanswered = self._sync_pending[0]
            self._cannot_serve[unanswered] = ours + 1
            self._sync_pending = None
        erased = self._sync_erased
        if erased is not None and erased[0] == ours + 1 and now - erased[1] < SYNC_ERASED_RETRY_MS:
            return
        # A peer one block ahead may just be faster; sync once this node has spent a while at
        # its height. Rounds going by do not count as progress: the others may have decided
        # this height with precommits that never reached us, and they have moved on.
        # a peer that began from a state-sync snapshot holds no blocks below its snapshot, and
        # one may not answer: those that failed this height are asked only once all others have
        usable = [(h, p) for h, p in ahead if self._cannot_serve.get(p) != ours + 1]
        if not usable:  # every one failed once: start the round again, the last one asked last
            for _, p in ahead:
                self._cannot_serve.pop(p, None)
            usable = [(h, p) for h, p in ahead if p != unanswered] or ahead
        best_height, best_peer = max(usable)
        stalled = now - self._height_since[1] > 2 * self.config.rebroadcast_ms
        if best_height == ours + 1 and self.running and not stalled:
            return
        self._sync_pending = (best_peer, now)
        self._out.append(Send(best_peer, Get(ours + 1, MAX_BLOCKS_PER_RESPONSE)))

    def _apply_blocks(self, peer: bytes, msg: Blocks) -> None:
        self._sync_pending = None
        if not msg.items:  # ahead, but it does not hold the block we need: ask another peer first
            self._cannot_serve[peer] = self.ledger.height() + 1
            return
        self._cannot_serve.pop(peer, None)
        if self.storing is not None:
            return  # our own decision is being stored; ask again later if still behind
        applied = 0
        for item in msg.items:
            outcome = self.ledger.apply_synced(item)
            if outcome is SyncOutcome.KNOWN:
                continue
            if outcome is SyncOutcome.GAP:
                break
            if outcome is SyncOutcome.REFUSED:
                log.warning("peer %s sent a block that does not verify", peer.hex()[:12])
                self.ledger.count("sync_blocks_refused")
                self._peer_heights.pop(peer, None)
                break
            if outcome is SyncOutcome.ERASED:  # the peer is honest: it purged an erased child
                self.ledger.count("sync_blocks_erased")
                self._sync_erased = (self.ledger.height() + 1, self._now)
                break
            self.ledger.count("blocks_synced")
            applied += 1
        if applied:
            log.info("block sync: applied %d blocks from %s, now at height %d", applied, peer.hex()[:12],
                     self.ledger.height())
            self._after_commit()
            self._maybe_sync()

    # ------------------------------------------------------------------ periodic work
    def _tick(self) -> None:
        e = self.engine.engine
        now = self._now
        position = (e.height, e.round)
        if e.height != self._height_since[0]:
            self._height_since = (e.height, now)
        if position != self._progress[:2]:
            self._progress = (e.height, e.round, now)
        elif self.running and now - self._progress[2] >= self.config.rebroadcast_ms:
            # no progress for a while: our messages (or the proposal) may have been lost
            self._execute(self.engine.rebroadcast())
        waited = now - self._height_since[1]
        every = max(STALL_WARNING_MS, 2 * self.config.heartbeat_ms)
        if waited >= every and now - self._stall_warned >= every:
            self._stall_warned = now
            self.ledger.count("stall_warnings")
            log.warning("no block for %d s: %s", waited // 1000, self.describe())
        self._out.append(Broadcast(Status(self.ledger.height())))
        self._maybe_sync()

    def describe(self) -> str:
        """Where this node's consensus stands, in a line: the engine's height and round, whether
        it is working on a height, storing one, or waiting for the next to be due, and what its
        peers last said of their heights."""
        if self.storing is not None:
            state = f"storing block {self.storing}"
        elif self.running:
            state = "working on the height"
        elif self._pace_at is not None:
            state = f"the next height due in {self._pace_at - self._now} ms"
        else:
            state = "no height scheduled"
        peers = sorted(self._peer_heights.values())
        return f"{self.engine.engine.describe()}; {state}; stored height {self.ledger.height()}, peers at {peers}"
