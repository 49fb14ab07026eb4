"""The asyncio shell around the consensus replica: bytes in, bytes out, timers, the disk.

Every decision is :class:`~node.consensus.replica.Replica`'s (the simulator runs the same
class). This module only carries things across the boundary: it decodes what peers send and
checks signatures before the replica sees a message, feeds each event with the wall clock's
time, and carries out the effects the replica returns (encode and send, start a timer, write
a decided block in the writer thread and report back). It also adapts the node to the
replica's :class:`~node.consensus.replica.Ledger` and the engine's application interface.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Protocol

from ledger.block import COMMIT, Block, DuplicateVoteEvidence, Vote
from ledger.crypto.keys import SigningKey
from ledger.encoding import pack
from ledger.errors import ChainError, CustosError, DecodeError, ErasedTransactions, RejectedTransaction
from ledger.rules.validators import validator_set_at
from ledger.storage.chainstore import decode_slots
from ledger.tx.envelope import decode_tx_batch
from ledger.validators import ValidatorSet
from node.app import NodeApp, Submitted
from node.config import ConsensusSection
from node.consensus.config import TimeoutConfig
from node.consensus.engine import Engine
from node.consensus.messages import Proposal, decode_message, encode_message
from node.consensus.outputs import Decide
from node.consensus.privval import PRIVVAL_FILE, FilePrivValidator
from node.consensus.recorder import RecordedEngine
from node.consensus.replica import (
    MAX_TX_BATCH,
    Broadcast,
    Effect,
    Event,
    EvidenceReceived,
    Halt,
    PeerConnected,
    Received,
    Relay,
    Replica,
    ReplicaConfig,
    Send,
    SetTimer,
    Start,
    StoreBlock,
    Stored,
    StoreFailed,
    SyncOutcome,
    SyncReceived,
    TimerFired,
    TxAdmitted,
    TxBatch,
)
from node.consensus.wal import ConsensusWal
from node.p2p.frames import BLOCK_SYNC, CONSENSUS, EVIDENCE, TRANSACTIONS
from node.sync import MAX_RESPONSE_BYTES, Item, Status, decode_sync, encode_sync

log = logging.getLogger("custos.consensus")

#: peers' gossiped transactions waiting to be checked, at most (64 full batches)
MAX_GOSSIP_QUEUED = 64 * MAX_TX_BATCH


class Network(Protocol):
    """What the driver needs from the transport (see :class:`node.p2p.network.PeerNetwork`)."""

    def send(self, peer_key: bytes, channel: int, payload: bytes) -> bool: ...

    def broadcast(self, channel: int, payload: bytes) -> int: ...

    def gossip(self, channel: int, payload: bytes) -> int: ...

    def connected_peers(self) -> list[bytes]: ...


class _Application:
    """The engine's view of the node: build a block to propose, execute one to validate."""

    def __init__(self, driver: ConsensusDriver) -> None:
        self.driver = driver

    def propose(self, height: int, round_: int) -> tuple[bytes, bytes]:
        d = self.driver
        store = d.app.store
        last_commit = store.commit(height - 1) if height > 1 else None
        executed = d.app.build(proposer=d.key.public, last_commit=last_commit)
        return executed.block.encode(), executed.hash

    def validate(self, height: int, round_: int, value: bytes) -> bytes | None:
        d = self.driver
        try:
            block = Block.decode(value)
            if block.height != height:
                raise ChainError("height", "proposal for another height", height=height)
            d.app.validate(block)
        except (DecodeError, ChainError) as exc:
            log.warning("refusing proposal at height %d round %d: %s", height, round_, exc)
            d.app.metrics.inc("proposals_refused")
            return None
        return block.hash


class NodeLedger:
    """The node's state as the replica sees it (:class:`~node.consensus.replica.Ledger`)."""

    def __init__(self, app: NodeApp) -> None:
        self.app = app
        self.chain_id = app.chain_id
        #: block sync cannot go on: the next block holds stubs of erased transactions
        self.sync_blocked: ErasedTransactions | None = None

    def height(self) -> int:
        return self.app.store.height

    def tip_time_ms(self) -> int:
        return self.app.store.tip.time

    def validators(self, height: int) -> ValidatorSet:
        return validator_set_at(self.app.store.state, height)

    def pending_txs(self) -> int:
        return len(self.app.mempool)

    def blocks_from(self, start: int, limit: int) -> list[Item]:
        store = self.app.store
        items: list[Item] = []
        size = 0
        for height in range(start, min(start + limit, store.height + 1)):
            raw, commit = store.block_bytes(height), store.commit(height)
            if raw is None or commit is None:
                break
            size += len(raw)
            if items and size > MAX_RESPONSE_BYTES - 64 * 1024:
                break
            items.append(Item(raw, COMMIT.encode(commit), store.slots_bytes(height)))
        return items

    def apply_synced(self, item: Item) -> SyncOutcome:
        store = self.app.store
        try:
            block = Block.decode(item.block)
            if block.height <= store.height:
                return SyncOutcome.KNOWN
            if block.height != store.height + 1 or item.commit is None:
                return SyncOutcome.GAP
            commit = COMMIT.decode(item.commit)
            commit.check(self.chain_id, self.validators(block.height), height=block.height, block=block.hash)
            slots = dict(decode_slots(item.slots)) if item.slots is not None else {}
            self.app.validate(block, check_clock=False, slots=slots)
        except ErasedTransactions as exc:
            if self.sync_blocked is None or self.sync_blocked.height != exc.height:
                log.error("block sync stops at height %d: transactions %s of that block were erased by order, "
                          "and this node cannot execute it without them (it needs the erased children's "
                          "recorded state)", exc.height, ", ".join(map(str, exc.positions)))
            self.sync_blocked = exc
            return SyncOutcome.ERASED
        except (DecodeError, ChainError) as exc:
            log.warning("a synced block does not verify: %s", exc)
            return SyncOutcome.REFUSED
        self.app.commit(block.hash, commit, block)
        self.sync_blocked = None
        return SyncOutcome.APPLIED

    def knows_evidence(self, evidence: DuplicateVoteEvidence) -> bool:
        return evidence.hash in self.app.evidence_pool

    def add_evidence(self, evidence: DuplicateVoteEvidence) -> None:
        self.app.add_evidence(evidence)

    def verify_vote(self, vote: Vote) -> bool:
        return vote.verify(self.chain_id)

    def count(self, metric: str) -> None:
        self.app.metrics.inc(metric)


class ConsensusDriver:
    def __init__(self, app: NodeApp, key: SigningKey, config: ConsensusSection, directory: Path,
                 network: Network, *, observer: bool = False) -> None:
        self.app = app
        self.key = key
        self.config = config
        self.network = network
        self.observer = observer
        self.chain_id = app.chain_id
        directory.mkdir(parents=True, exist_ok=True)
        self._privval = None
        if not observer:
            # never made up here: a new node's is created by `node start --init` (node/runner.py)
            self._privval = FilePrivValidator(directory / PRIVVAL_FILE, key, self.chain_id, create=False)
        self.wal = ConsensusWal.open(directory / "wal")
        if self.wal.recovery.problem:
            log.warning("consensus log repaired at start-up: %s", self.wal.recovery.problem)
        timeouts = TimeoutConfig(
            propose_ms=config.timeout_propose_ms, propose_delta_ms=config.timeout_propose_delta_ms,
            prevote_ms=config.timeout_prevote_ms, prevote_delta_ms=config.timeout_prevote_delta_ms,
            precommit_ms=config.timeout_precommit_ms, precommit_delta_ms=config.timeout_precommit_delta_ms,
        )
        engine = RecordedEngine(Engine(_Application(self), self._privval, timeouts=timeouts), self.wal)
        self.ledger = NodeLedger(app)
        self.replica = Replica(engine, self.ledger, ReplicaConfig(
            heartbeat_ms=config.heartbeat_ms, block_interval_ms=config.block_interval_ms,
            rebroadcast_ms=config.rebroadcast_ms, tx_gossip_ms=config.tx_gossip_ms))
        self.engine = engine
        self._timers: set[asyncio.TimerHandle] = set()
        self._storing: asyncio.Task | None = None  # the decided block on its way to disk
        self._gossip_queue: list[bytes] = []  # peers' transactions waiting to be checked
        self._gossip_check: asyncio.Task | None = None  # checks them, all that wait at a time
        self._stopped = False
        #: fails if the node can no longer work (it cannot store blocks); the node then stops
        self.fatal: asyncio.Future | None = None
        app.on_new_tx(lambda tx: self.feed(TxAdmitted(tx.raw)))

    # ------------------------------------------------------------------ lifecycle
    def validators(self, height: int) -> ValidatorSet:
        return validator_set_at(self.app.store.state, height)

    async def start(self) -> None:
        self.fatal = asyncio.get_running_loop().create_future()
        self.feed(Start())  # raises WalError if the log is ahead of the store

    async def stop(self) -> None:
        if self._storing is not None:
            await asyncio.wait([self._storing], timeout=10)  # let a decided block reach the disk
        self._stopped = True
        for t in self._timers:
            t.cancel()
        self._timers.clear()
        if self._gossip_check is not None:
            self._gossip_check.cancel()
        self.wal.close()

    def forget_decided_inputs(self) -> bool:
        """Cut the write-ahead log to its start record if its height is stored already (its
        proposals and votes are needed no more); True if it was cut."""
        if self.wal.height is not None and self.wal.height <= self.app.store.height:
            self.wal.drop_inputs()
            return True
        return False

    @property
    def tasks(self) -> list[asyncio.Task]:
        """The driver's background tasks (the node watches them for failures): none; a failure
        to store a block ends :attr:`fatal`."""
        return []

    @property
    def height(self) -> int:
        return self.replica.height

    def status(self) -> dict:
        blocked = self.ledger.sync_blocked
        return {"consensus": self.replica.status(), "peers": len(self.network.connected_peers()),
                "sync": None if blocked is None else {"blocked_at": blocked.height,
                                                      "erased_positions": blocked.positions}}

    # ------------------------------------------------------------------ events in, effects out
    def feed(self, event: Event) -> None:
        """Hand one event to the replica, with the wall clock's time, and carry out its effects."""
        if self._stopped:
            return
        self._perform(self.replica.handle(self.app.clock_ms(), event))

    def _perform(self, effects: list[Effect]) -> None:
        for e in effects:
            if isinstance(e, Broadcast):
                m = e.message
                if isinstance(m, (Proposal, Vote)):
                    self.broadcast(m)
                elif isinstance(m, Status):
                    self.network.broadcast(BLOCK_SYNC, encode_sync(m))
                elif isinstance(m, TxBatch):
                    self.network.broadcast(TRANSACTIONS, pack(list(m.raws)))
            elif isinstance(e, SetTimer):
                self._set_timer(e)
            elif isinstance(e, Send):
                self.network.send(e.peer, BLOCK_SYNC, encode_sync(e.message))
            elif isinstance(e, Relay):
                self.network.gossip(EVIDENCE, encode_message(e.evidence))
            elif isinstance(e, StoreBlock):
                self._store(e.decision)
            elif isinstance(e, Halt):
                log.critical("%s", e.reason)
                if self.fatal is not None and not self.fatal.done():
                    self.fatal.set_exception(RuntimeError(e.reason))

    def broadcast(self, message: Proposal | Vote) -> None:
        """The one place this node's consensus messages leave it (a test harness that makes a
        validator misbehave wraps this: ``tests/node/byzantine_node.py``)."""
        self.network.broadcast(CONSENSUS, encode_message(message))

    def _set_timer(self, e: SetTimer) -> None:
        handle: asyncio.TimerHandle

        def fire() -> None:
            self._timers.discard(handle)
            try:
                self.feed(TimerFired(e.timer))
            except CustosError as exc:
                log.warning("consensus timer %s failed: %s", type(e.timer).__name__, exc)

        handle = asyncio.get_running_loop().call_later(e.delay_ms / 1000, fire)
        self._timers.add(handle)

    def _store(self, d: Decide) -> None:
        """Store the decided block (executed already when it was validated) in the writer thread."""

        async def store() -> None:
            try:
                await self.app.commit_async(d.value_id, d.commit, d.value)
            except Exception as exc:  # a validator that cannot store its chain must not go on voting
                self._storing = None
                self.feed(StoreFailed(d.height, str(exc)))
                return
            self._storing = None
            self.feed(Stored(d.height))

        self._storing = asyncio.get_running_loop().create_task(store(), name=f"store-{d.height}")

    # ------------------------------------------------------------------ inbound
    def on_message(self, peer: bytes, channel: int, payload: bytes) -> None:
        try:
            if channel == CONSENSUS:
                self._on_consensus(peer, payload)
            elif channel == TRANSACTIONS:
                self._on_transactions(payload)
            elif channel == EVIDENCE:
                self._on_evidence(peer, payload)
            elif channel == BLOCK_SYNC:
                self.feed(SyncReceived(peer, decode_sync(payload)))
        except (DecodeError, RejectedTransaction) as exc:
            self.app.metrics.inc("peer_messages_refused")
            log.debug("refused a message from %s on channel %d: %s", peer.hex()[:12], channel, exc)

    def _on_consensus(self, peer: bytes, payload: bytes) -> None:
        msg = decode_message(payload)
        if isinstance(msg, DuplicateVoteEvidence):
            self.feed(EvidenceReceived(peer, msg))
            return
        if not msg.verify(self.chain_id):
            self.app.metrics.inc("bad_signatures")
            log.info("dropping a %s with a bad signature from peer %s", type(msg).__name__, peer.hex()[:12])
            return
        self.feed(Received(peer, msg))

    def _on_transactions(self, payload: bytes) -> None:
        """A peer's gossip: checked off the event loop (signatures are most of a transaction's
        admission cost), so consensus messages are not kept waiting behind it. Batches that come
        while others are being checked wait, and are then checked together (one hand-off to the
        checking thread for all of them, however many peers sent them). Beyond
        :data:`MAX_GOSSIP_QUEUED` transactions waiting, a batch is dropped: gossip only warms the
        mempool, and a proposal carrying those transactions has them checked when it is validated."""
        raws = decode_tx_batch(payload, max_items=MAX_TX_BATCH)
        if len(self._gossip_queue) + len(raws) > MAX_GOSSIP_QUEUED:
            self.app.metrics.inc("tx_gossip_dropped")
            return
        self._gossip_queue.extend(raws)
        if self._gossip_check is None:
            self._gossip_check = asyncio.get_running_loop().create_task(self._admit_gossip(), name="gossip-check")

    async def _admit_gossip(self) -> None:
        try:
            while self._gossip_queue:
                raws, self._gossip_queue = self._gossip_queue, []
                outcomes = await self.app.submit_many(raws, from_peer=True)
                # refusals (committed meanwhile, or refused here already) are never relayed further
                if any(isinstance(o, Submitted) and o.status == "accepted" for o in outcomes):
                    self.feed(TxAdmitted(None))
        finally:
            self._gossip_check = None

    def _on_evidence(self, peer: bytes, payload: bytes) -> None:
        msg = decode_message(payload)
        if isinstance(msg, DuplicateVoteEvidence):
            self.feed(EvidenceReceived(peer, msg))

    def greet(self, peer: bytes) -> None:
        """A peer just connected: tell it our height."""
        self.feed(PeerConnected(peer))
