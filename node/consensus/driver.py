"""The adapter between the pure consensus engine and the running node.

It owns the engine (fed through its write-ahead log), turns the engine's outputs into network
messages, timers and commits, checks every signature before a message reaches the engine,
gossips transactions and evidence, runs block sync, and keeps an idle chain from making empty
blocks faster than the heartbeat.

Heights start like this: after a commit, the next height begins once the mempool holds a
transaction (and ``block_interval_ms`` has passed, to batch more), once the heartbeat is due,
or at once when a peer's message for that height arrives, whichever comes first.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import msgpack

from ledger.block import COMMIT, Block, DuplicateVoteEvidence, Vote
from ledger.crypto.keys import SigningKey
from ledger.errors import ChainError, CustosError, DecodeError, RejectedTransaction
from ledger.rules.validators import validator_set_at
from ledger.tx.envelope import decode_tx_batch
from ledger.validators import ValidatorSet
from node.app import NodeApp
from node.config import ConsensusSection
from node.consensus.config import TimeoutConfig
from node.consensus.engine import Engine
from node.consensus.messages import Proposal, decode_message, encode_message
from node.consensus.outputs import Broadcast, Decide, EvidenceFound, Output, ScheduleTimeout
from node.consensus.privval import FilePrivValidator
from node.consensus.recorder import RecordedEngine
from node.consensus.wal import ConsensusWal
from node.p2p.frames import BLOCK_SYNC, CONSENSUS, EVIDENCE, TRANSACTIONS
from node.sync import (
    MAX_BLOCKS_PER_RESPONSE,
    MAX_RESPONSE_BYTES,
    Blocks,
    Get,
    Item,
    Status,
    decode_sync,
    encode_sync,
)

log = logging.getLogger("custos.consensus")

MAX_TX_BATCH = 1000
SYNC_REQUEST_TIMEOUT_S = 5.0


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


class ConsensusDriver:
    def __init__(self, app: NodeApp, key: SigningKey, config: ConsensusSection, directory: Path,
                 network: Network, *, observer: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.key = key
        self.config = config
        self.network = network
        self.observer = observer
        self.clock = clock
        self.chain_id = app.chain_id
        directory.mkdir(parents=True, exist_ok=True)
        self._privval = None
        if not observer:
            state_file = directory / "privval.json"
            self._privval = FilePrivValidator(state_file, key, self.chain_id, create=not state_file.exists())
        self.wal = ConsensusWal.open(directory / "wal")
        if self.wal.recovery.problem:
            log.warning("consensus log repaired at start-up: %s", self.wal.recovery.problem)
        timeouts = TimeoutConfig(
            propose_ms=config.timeout_propose_ms, propose_delta_ms=config.timeout_propose_delta_ms,
            prevote_ms=config.timeout_prevote_ms, prevote_delta_ms=config.timeout_prevote_delta_ms,
            precommit_ms=config.timeout_precommit_ms, precommit_delta_ms=config.timeout_precommit_delta_ms,
        )
        self.engine = RecordedEngine(Engine(_Application(self), self._privval, timeouts=timeouts), self.wal)
        self._timers: set[asyncio.TimerHandle] = set()
        self._tasks: list[asyncio.Task] = []
        self._running = False  # the engine is inside a height (not waiting for the next one)
        self._start_next = asyncio.Event()
        self._progress = (0, 0, 0.0)  # (height, round, when it last changed)
        self._height_since = (0, 0.0)  # (height, when this node reached it)
        self._peer_heights: dict[bytes, int] = {}
        self._sync_pending: tuple[bytes, float] | None = None
        self._tx_batch: list[bytes] = []
        self._tx_flush_scheduled = False
        self._storing: asyncio.Task | None = None  # the decided block on its way to disk
        #: fails if the node can no longer work (it cannot store blocks); the node then stops
        self.fatal: asyncio.Future | None = None
        app.on_new_tx(self._gossip_tx)

    # ------------------------------------------------------------------ lifecycle
    def validators(self, height: int) -> ValidatorSet:
        return validator_set_at(self.app.store.state, height)

    async def start(self) -> None:
        self.fatal = asyncio.get_running_loop().create_future()
        height = self.app.store.height + 1
        # raises WalError if the log is ahead of the store: refuse to run rather than forget a lock
        outputs = self.engine.recover(height, self.validators(height))
        self._running = True
        self._execute(outputs)
        self._tasks = [
            asyncio.create_task(self._height_loop(), name="consensus-heights"),
            asyncio.create_task(self._tick_loop(), name="consensus-ticks"),
        ]

    async def stop(self) -> None:
        if self._storing is not None:
            await asyncio.wait([self._storing], timeout=10)  # let a decided block reach the disk
        for t in self._timers:
            t.cancel()
        self._timers.clear()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self.wal.close()

    @property
    def tasks(self) -> list[asyncio.Task]:
        """The driver's background tasks (the node watches them for failures)."""
        return list(self._tasks)

    @property
    def height(self) -> int:
        return self.engine.engine.height

    def status(self) -> dict:
        e = self.engine.engine
        return {
            "consensus": {"height": e.height, "round": e.round, "step": e.step.name.lower(),
                          "running": self._running},
            "peers": len(self.network.connected_peers()),
        }

    # ------------------------------------------------------------------ engine outputs
    def _execute(self, outputs: list[Output]) -> None:
        for out in outputs:
            if isinstance(out, Broadcast):
                self.broadcast(out.message)
            elif isinstance(out, ScheduleTimeout):
                self._schedule(out)
            elif isinstance(out, Decide):
                self._decided(out)
            elif isinstance(out, EvidenceFound):
                self._evidence(out.evidence)

    def broadcast(self, message: Proposal | Vote) -> None:
        """The one place this node's consensus messages leave it (a test harness that makes a
        validator misbehave wraps this: ``tests/node/byzantine_node.py``)."""
        self.network.broadcast(CONSENSUS, encode_message(message))

    def _schedule(self, out: ScheduleTimeout) -> None:
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def fire() -> None:
            self._timers.discard(handle)
            if out.height == self.height and self._running:
                self._execute(self.engine.on_timeout(out.timeout))

        handle = loop.call_later(out.delay_ms / 1000, fire)
        self._timers.add(handle)

    def _decided(self, d: Decide) -> None:
        if d.height != self.app.store.height + 1 or self._storing is not None:
            return  # block sync got there first
        if d.round > 0:
            self.app.metrics.inc("heights_decided_after_round_0")
        self._storing = asyncio.get_running_loop().create_task(self._store(d), name=f"store-{d.height}")

    async def _store(self, d: Decide) -> None:
        """Store the decided block (executed already when it was validated), then move on."""
        try:
            await self.app.commit_async(d.value_id, d.commit, d.value)
        except Exception as exc:  # a validator that cannot store its chain must not go on voting
            log.critical("cannot store block %d: %s", d.height, exc)
            if self.fatal is not None and not self.fatal.done():
                self.fatal.set_exception(exc)
            return
        finally:
            self._storing = None
        self._after_commit()

    def _after_commit(self) -> None:
        for t in self._timers:
            t.cancel()
        self._timers.clear()
        self._running = False
        self._start_next.set()
        self._announce_height()

    # ------------------------------------------------------------------ heights
    async def _height_loop(self) -> None:
        """Start each next height when there is work, the heartbeat is due, or a peer moved on."""
        cfg = self.config
        while True:
            await self._start_next.wait()
            self._start_next.clear()
            while not self._running:
                store = self.app.store
                idle_for = max(0, (self.app.clock_ms() - store.tip.time))
                if len(self.app.mempool):
                    await asyncio.sleep(cfg.block_interval_ms / 1000)
                    self._begin_height()
                    break
                wait = max(0.0, (cfg.heartbeat_ms - idle_for) / 1000)
                if wait == 0:
                    self._begin_height()
                    break
                try:
                    await asyncio.wait_for(self.app.new_txs.wait(), timeout=wait)
                except TimeoutError:
                    pass

    def _begin_height(self) -> None:
        if self._running:
            return
        height = self.app.store.height + 1
        self._running = True
        self._execute(self.engine.start_height(height, self.validators(height)))

    # ------------------------------------------------------------------ inbound
    def on_message(self, peer: bytes, channel: int, payload: bytes) -> None:
        try:
            if channel == CONSENSUS:
                self._on_consensus(peer, payload)
            elif channel == TRANSACTIONS:
                self._on_transactions(payload)
            elif channel == EVIDENCE:
                self._on_evidence(payload)
            elif channel == BLOCK_SYNC:
                self._on_sync(peer, payload)
        except (DecodeError, RejectedTransaction) as exc:
            self.app.metrics.inc("peer_messages_refused")
            log.debug("refused a message from %s on channel %d: %s", peer.hex()[:12], channel, exc)

    def _on_consensus(self, peer: bytes, payload: bytes) -> None:
        msg = decode_message(payload)
        if isinstance(msg, DuplicateVoteEvidence):
            self._evidence(msg)
            return
        if not msg.verify(self.chain_id):
            self.app.metrics.inc("bad_signatures")
            log.info("dropping a %s with a bad signature from peer %s", type(msg).__name__, peer.hex()[:12])
            return
        height = msg.height
        if self._storing is not None:
            pass  # the engine buffers the next height's messages until it starts
        elif height == self.app.store.height + 1 and not self._running:
            self._begin_height()  # a peer has started it: join at once
        elif height > self.app.store.height + 1:
            self._peer_heights[peer] = max(self._peer_heights.get(peer, 0), height - 1)
            self._maybe_sync()
        if isinstance(msg, Proposal):
            self._execute(self.engine.on_proposal(msg))
        else:
            self._execute(self.engine.on_vote(msg))

    def _on_transactions(self, payload: bytes) -> None:
        for raw in decode_tx_batch(payload, max_items=MAX_TX_BATCH):
            try:
                self.app.submit(raw, from_peer=True)
            except RejectedTransaction:
                pass  # e.g. committed meanwhile, or already refused here; never relayed further

    def _gossip_tx(self, tx) -> None:
        self._tx_batch.append(tx.raw)
        if not self._tx_flush_scheduled:
            self._tx_flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_txs)

    def _flush_txs(self) -> None:
        self._tx_flush_scheduled = False
        batch, self._tx_batch = self._tx_batch, []
        # straight to every peer (validators keep a full mesh): relaying by gossip would make each
        # node receive, decrypt and hash every batch once per neighbour
        for i in range(0, len(batch), MAX_TX_BATCH):
            self.network.broadcast(TRANSACTIONS, msgpack.packb(batch[i:i + MAX_TX_BATCH], use_bin_type=True))

    def _on_evidence(self, payload: bytes) -> None:
        msg = decode_message(payload)
        if isinstance(msg, DuplicateVoteEvidence):
            self._evidence(msg)

    def _evidence(self, ev: DuplicateVoteEvidence) -> None:
        """Keep evidence for the next proposals and pass it on (gossip sends it once per peer)."""
        if ev.hash in self.app.evidence_pool:
            return
        if not (ev.a.conflicts_with(ev.b) and ev.a.verify(self.chain_id) and ev.b.verify(self.chain_id)):
            self.app.metrics.inc("bad_evidence")
            return
        log.warning("validator %s signed conflicting %ss at height %d round %d", ev.a.validator.hex()[:12],
                    ev.a.kind, ev.a.height, ev.a.round)
        self.app.add_evidence(ev)
        self.app.metrics.inc("evidence_seen")
        self.network.gossip(EVIDENCE, encode_message(ev))

    # ------------------------------------------------------------------ block sync
    def greet(self, peer: bytes) -> None:
        """A peer just connected: tell it our height."""
        self.network.send(peer, BLOCK_SYNC, encode_sync(Status(self.app.store.height)))

    def _announce_height(self) -> None:
        self.network.broadcast(BLOCK_SYNC, encode_sync(Status(self.app.store.height)))

    def _on_sync(self, peer: bytes, payload: bytes) -> None:
        msg = decode_sync(payload)
        if isinstance(msg, Status):
            self._peer_heights[peer] = msg.height
            self._maybe_sync()
        elif isinstance(msg, Get):
            self._serve_blocks(peer, msg)
        elif isinstance(msg, Blocks):
            self._apply_blocks(peer, msg)

    def _serve_blocks(self, peer: bytes, req: Get) -> None:
        store = self.app.store
        items: list[Item] = []
        size = 0
        for height in range(req.start, min(req.start + req.limit, store.height + 1)):
            raw, commit = store.block_bytes(height), store.commit(height)
            if raw is None or commit is None:
                break
            size += len(raw)
            if items and size > MAX_RESPONSE_BYTES - 64 * 1024:
                break
            items.append(Item(raw, COMMIT.encode(commit)))
        self.network.send(peer, BLOCK_SYNC, encode_sync(Blocks(tuple(items))))

    def _maybe_sync(self) -> None:
        if self._storing is not None:
            return
        ours = self.app.store.height
        ahead = [(h, p) for p, h in self._peer_heights.items() if h > ours]
        if not ahead:
            return
        now = self.clock()
        if self._sync_pending is not None and now - self._sync_pending[1] < SYNC_REQUEST_TIMEOUT_S:
            return
        # A peer one block ahead may just be faster; sync once this node has spent a while at
        # its height. Rounds going by do not count as progress: the others may have decided
        # this height with precommits that never reached us, and they have moved on.
        best_height, best_peer = max(ahead)
        stalled = now - self._height_since[1] > 2 * self.config.rebroadcast_ms / 1000
        if best_height == ours + 1 and self._running and not stalled:
            return
        self._sync_pending = (best_peer, now)
        self.network.send(best_peer, BLOCK_SYNC, encode_sync(Get(ours + 1, MAX_BLOCKS_PER_RESPONSE)))

    def _apply_blocks(self, peer: bytes, msg: Blocks) -> None:
        self._sync_pending = None
        if self._storing is not None:
            return  # our own decision is being stored; ask again later if still behind
        applied = 0
        for item in msg.items:
            store = self.app.store
            try:
                block = Block.decode(item.block)
                if block.height <= store.height:
                    continue
                if block.height != store.height + 1 or item.commit is None:
                    break
                commit = COMMIT.decode(item.commit)
                commit.check(self.chain_id, self.validators(block.height), height=block.height, block=block.hash)
                self.app.validate(block, check_clock=False)
            except (DecodeError, ChainError) as exc:
                log.warning("peer %s sent a block that does not verify: %s", peer.hex()[:12], exc)
                self.app.metrics.inc("sync_blocks_refused")
                self._peer_heights.pop(peer, None)
                break
            self.app.commit(block.hash, commit, block)
            self.app.metrics.inc("blocks_synced")
            applied += 1
        if applied:
            log.info("block sync: applied %d blocks from %s, now at height %d", applied, peer.hex()[:12],
                     self.app.store.height)
            self._after_commit()
            self._maybe_sync()

    # ------------------------------------------------------------------ periodic work
    async def _tick_loop(self) -> None:
        interval = self.config.rebroadcast_ms / 1000
        while True:
            await asyncio.sleep(interval)
            try:
                self._tick()
            except CustosError as exc:
                log.warning("consensus tick failed: %s", exc)

    def _tick(self) -> None:
        e = self.engine.engine
        now = self.clock()
        position = (e.height, e.round)
        if e.height != self._height_since[0]:
            self._height_since = (e.height, now)
        if position != self._progress[:2]:
            self._progress = (e.height, e.round, now)
        elif self._running and now - self._progress[2] >= self.config.rebroadcast_ms / 1000:
            # no progress for a while: our messages (or the proposal) may have been lost
            self._execute(self.engine.rebroadcast())
        self._announce_height()
        self._maybe_sync()
