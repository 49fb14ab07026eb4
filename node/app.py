"""The node's application: the ledger seen from consensus, the API and the event streams.

It owns the chain store and the mempool. Consensus asks it to propose a block, to validate a
proposal, and to commit a decided block with its certificate; clients submit transactions and
wait for their commit; subscribers hear about crossings as blocks commit them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import OrderedDict, defaultdict
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ledger.block import Block, Commit, DuplicateVoteEvidence
from ledger.chain import ExecutedBlock, build_block, execute_block
from ledger.errors import ChainError, DecodeError, Erased, MalformedTransaction, RejectedTransaction
from ledger.privacy.subjects import subject_of
from ledger.storage.chainstore import ChainStore, TxLocation
from ledger.tx.envelope import Transaction, decode_tx
from node.mempool import Mempool, check_signatures
from node.sigcheck import SigChecker

log = logging.getLogger("custos.app")


#: transactions of a batch decoded and signature-checked per turn of the checker thread
CHECK_SLICE = 256
#: dropped transactions whose reason a node keeps for their status (in memory: a restart forgets)
DROPPED_KEPT = 10_000


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def _precheck(raws: list[bytes], chain_id: str) -> list[Transaction | RejectedTransaction]:
    """Decode and check the signatures of each of ``raws`` (pure: runs in a worker thread)."""
    out: list[Transaction | RejectedTransaction] = []
    for raw in raws:
        try:
            tx = decode_tx(raw)
            check_signatures(tx, chain_id)
            out.append(tx)
        except DecodeError as exc:
            out.append(MalformedTransaction(str(exc)))
        except RejectedTransaction as exc:
            out.append(exc)
    return out


@dataclass(frozen=True, slots=True)
class Submitted:
    """The answer to a submission: ``committed`` (with where) or ``accepted`` (in the mempool)."""

    tx_id: bytes
    status: str
    location: TxLocation | None = None


@dataclass
class Metrics:
    counters: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    gauges: dict[str, float] = field(default_factory=dict)

    def inc(self, name: str, by: int = 1) -> None:
        self.counters[name] += by


class NodeApp:
    def __init__(self, store: ChainStore, *, clock_ms: Callable[[], int] = wall_clock_ms,
                 max_mempool_txs: int = 100_000, max_mempool_bytes: int = 256 * 1024 * 1024,
                 max_clock_drift_ms: int = 10_000, signature_workers: int | None = None) -> None:
        self.store = store
        self.clock_ms = clock_ms
        self.chain_id = store.chain.chain_id
        self.mempool = Mempool(store, clock_ms, max_txs=max_mempool_txs, max_bytes=max_mempool_bytes)
        self.max_clock_drift_ms = max_clock_drift_ms
        self.metrics = Metrics()
        self.evidence_pool: dict[bytes, DuplicateVoteEvidence] = {}
        self._executed: dict[bytes, ExecutedBlock] = {}
        self._waiters: dict[bytes, list[asyncio.Future]] = defaultdict(list)
        #: why the latest transactions were dropped after admission (a conflicting one committed
        #: first, an event grew too old): what their status answers, newest last
        self.dropped: OrderedDict[bytes, RejectedTransaction] = OrderedDict()
        self._tx_listeners: list[Callable[[Transaction], None]] = []
        self._commit_listeners: list[Callable[[ExecutedBlock], None]] = []
        self.new_txs = asyncio.Event()
        # durable acceptance: tx id -> sequence number of its record in the store
        self._accepted_seq: dict[bytes, int] = {}
        self._next_seq = 0
        self._to_persist: dict[int, bytes] = {}
        self._flush_future: asyncio.Future | None = None
        self._last_write: asyncio.Future | None = None
        self._closed = False
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="custos-accept")
        self._sigcheck = SigChecker(signature_workers, count=self.metrics.inc)
        self._checker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="custos-check")
        self._restore_accepted()

    def _restore_accepted(self) -> None:
        """Re-admit transactions accepted before a restart, in their original order."""
        stale = []
        for seq, raw in self.store.accepted():
            self._next_seq = seq + 1
            try:
                tx = decode_tx(raw)
                if self.store.has_tx(tx.id) or not self.mempool.add(tx):
                    stale.append(seq)
                    continue
            except (DecodeError, RejectedTransaction):
                stale.append(seq)
                continue
            self._accepted_seq[tx.id] = seq
        if stale:
            self.store.forget_accepted(stale)
        if len(self.mempool):
            self.new_txs.set()

    # ------------------------------------------------------------------ submissions
    def submit(self, raw: bytes, *, from_peer: bool = False) -> Submitted:
        """Admit a transaction. Idempotent: a committed one answers with its original result."""
        try:
            tx = decode_tx(raw)
        except DecodeError as exc:
            self.metrics.inc("tx_rejected")
            raise MalformedTransaction(str(exc)) from None
        return self._admit(tx, from_peer=from_peer)

    async def submit_many(self, raws: list[bytes], *,
                          from_peer: bool = False) -> list[Submitted | RejectedTransaction]:
        """Admit a batch without holding the event loop: decoding and signature checks, the
        costly part, run in a worker thread :data:`CHECK_SLICE` at a time (one slice at a
        time for the whole node, so concurrent batches share it in turns); admission against
        the state runs here between slices. One outcome per transaction, in order.
        ``from_peer``: a peer's gossip (see :meth:`submit`); transactions the mempool holds
        already are not checked again."""
        loop = asyncio.get_running_loop()
        outcomes: list[Submitted | RejectedTransaction] = []
        for start in range(0, len(raws), CHECK_SLICE):
            chunk = raws[start:start + CHECK_SLICE]
            held = [self.mempool.admitted(raw) for raw in chunk]
            fresh = [raw for raw, tx in zip(chunk, held, strict=True) if tx is None]
            checked = iter(await loop.run_in_executor(self._checker, _precheck, fresh, self.chain_id)
                           if fresh else ())
            for tx in held:
                item = tx if tx is not None else next(checked)
                if isinstance(item, RejectedTransaction):
                    self.metrics.inc("tx_rejected")
                    outcomes.append(item)
                    continue
                try:
                    outcomes.append(self._admit(item, from_peer=from_peer, signatures_checked=True))
                except RejectedTransaction as exc:
                    outcomes.append(exc)
        return outcomes

    def _admit(self, tx: Transaction, *, from_peer: bool = False, signatures_checked: bool = False) -> Submitted:
        location = self.store.tx_location(tx.id)
        if location is not None:
            # the id leaves the signatures out: forged ones must not learn the committed result
            if not signatures_checked:
                try:
                    check_signatures(tx, self.chain_id)
                except RejectedTransaction:
                    self.metrics.inc("tx_rejected")
                    raise
            return Submitted(tx.id, "committed", location)
        try:
            added = self.mempool.add(tx, check_rules=not from_peer, signatures_checked=signatures_checked)
        except RejectedTransaction:
            self.metrics.inc("tx_rejected")
            raise
        if added:
            self.metrics.inc("tx_admitted")
            self.new_txs.set()
            if not from_peer:
                for listener in self._tx_listeners:
                    listener(tx)
        if not from_peer and tx.id not in self._accepted_seq:
            # this node answers the client "accepted": it must survive a crash here, even if
            # the transaction first came by gossip
            self._accepted_seq[tx.id] = self._next_seq
            self._to_persist[self._next_seq] = tx.raw
            self._next_seq += 1
        return Submitted(tx.id, "accepted")

    async def durable(self) -> None:
        """Return once every transaction accepted so far is on disk.

        Group commit: one synchronous write at a time, made by a dedicated writer thread so the
        event loop keeps serving while the disk syncs; submissions accepted while a write is on
        its way all share the next one, which starts when it ends. Writes happen in order, so
        awaiting the latest covers all earlier ones.
        """
        loop = asyncio.get_running_loop()
        if self._to_persist and self._flush_future is None:
            self._flush_future = loop.create_future()
            if self._last_write is None or self._last_write.done():
                loop.call_soon(self._flush)
            # else the write on its way starts this one when it ends
        latest = self._flush_future or self._last_write
        if latest is not None:
            await asyncio.shield(latest)

    def _flush(self) -> None:
        batch, self._to_persist = self._to_persist, {}
        future, self._flush_future = self._flush_future, None
        if not batch:  # every one of them committed or dropped meanwhile: nothing to keep
            if future is not None and not future.done():
                future.set_result(None)
            return
        written = asyncio.wrap_future(self._writer.submit(self.store.accept, batch))
        self._last_write = written

        def done(f: asyncio.Future) -> None:
            if future is not None and not future.done():
                exc = f.exception()
                if exc is not None:  # the caller must not acknowledge what is not on disk
                    log.error("could not persist accepted transactions: %s", exc)
                    future.set_exception(exc)
                else:
                    future.set_result(None)
            if self._flush_future is not None and not self._closed:
                self._flush()  # what was accepted meanwhile

        written.add_done_callback(done)

    def _settle(self, tx_ids) -> None:
        """Forget the acceptance records of transactions committed or dropped.

        Deletions go through the writer thread after any pending write of the same records;
        a crash in between leaves a stale record, which the restart finds committed and drops.
        """
        seqs = []
        for tx_id in tx_ids:
            seq = self._accepted_seq.pop(tx_id, None)
            if seq is None:
                continue
            if self._to_persist.pop(seq, None) is None:
                seqs.append(seq)
        if seqs:
            self._writer.submit(self.store.forget_accepted, seqs)

    async def wait_commit(self, tx_id: bytes, timeout_s: float) -> TxLocation | None:
        """Wait until ``tx_id`` commits (its location) or is dropped (raises the rejection)."""
        location = self.store.tx_location(tx_id)
        if location is not None:
            return location
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._waiters[tx_id].append(future)
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except TimeoutError:
            return None
        finally:
            waiters = self._waiters.get(tx_id)
            if waiters and future in waiters:
                waiters.remove(future)
                if not waiters:
                    del self._waiters[tx_id]

    def on_new_tx(self, listener: Callable[[Transaction], None]) -> None:
        """Called for each transaction admitted from a client (peers gossip them)."""
        self._tx_listeners.append(listener)

    def on_commit(self, listener: Callable[[ExecutedBlock], None]) -> None:
        self._commit_listeners.append(listener)

    # ------------------------------------------------------------------ consensus side
    def build(self, *, proposer: bytes, last_commit: Commit | None, max_txs: int | None = None) -> ExecutedBlock:
        """Build the next block from the mempool and remember its execution."""
        candidates = self.mempool.reap(max_txs)
        now = self.clock_ms()
        executed, rejected = build_block(self.store, candidates, time=now, proposer=proposer,
                                         last_commit=last_commit, evidence=list(self.evidence_pool.values()))
        if rejected:
            for tx, exc in rejected:
                self.mempool.remove(tx.id)
                self._drop(tx.id, exc)
            self._settle(tx.id for tx, _ in rejected)
            self.mempool.update((), ())  # only what the dropped ones wrote may have changed
        self._executed[executed.hash] = executed
        return executed

    def validate(self, block: Block, *, check_clock: bool = True,
                 slots: dict[bytes, bytes | None] | None = None) -> ExecutedBlock:
        """Execute a proposed block; raises :class:`ChainError` if it is invalid. ``slots``: the
        recorded slot changes of a decided block fetched by block sync (ledger.chain.execute_block)."""
        cached = self._executed.get(block.hash)
        if cached is not None:
            return cached
        if check_clock:
            drift = block.header.time - self.clock_ms()
            if drift > self.max_clock_drift_ms:
                raise ChainError("time", f"block time is {drift} ms ahead of this node's clock",
                                 height=block.height)
        # signatures the mempool did not check are checked in worker processes as execution goes
        ahead = self._sigcheck.ahead(self.store.chain.chain_id, block.txs, already=self.mempool.admitted)
        executed = execute_block(self.store, block, known=self.mempool.admitted, verified=ahead.verified,
                                 slots=slots)
        self._executed[block.hash] = executed
        return executed

    def commit(self, block_hash: bytes, commit: Commit, block: Block | bytes | None = None) -> ExecutedBlock:
        """Store a decided block with its certificate; wake waiters; publish events.

        ``block`` (or its bytes) is needed only if this node has not executed it already."""
        executed = self._decided_block(block_hash, block)
        self.store.commit_block(executed, commit)
        return self._committed(executed)

    async def commit_async(self, block_hash: bytes, commit: Commit,
                           block: Block | bytes | None = None) -> ExecutedBlock:
        """:meth:`commit`, with the synchronous disk write made by the writer thread while the
        event loop goes on serving clients and peers (it would otherwise stall every node at
        once while their disks sync). Writes stay in order with the acceptance records."""
        executed = self._decided_block(block_hash, block)
        await asyncio.wrap_future(self._writer.submit(self.store.commit_block, executed, commit))
        return self._committed(executed)

    def _decided_block(self, block_hash: bytes, block: Block | bytes | None) -> ExecutedBlock:
        executed = self._executed.get(block_hash)
        if executed is None:
            if block is None:
                raise ChainError("commit", "decided block is unknown to this node", obj="block")
            executed = execute_block(self.store, Block.decode(block) if isinstance(block, bytes) else block)
        return executed

    def _committed(self, executed: ExecutedBlock) -> ExecutedBlock:
        """Everything that follows a block reaching the disk."""
        self._settle(tx.id for tx in executed.txs)
        self._executed.clear()
        self.metrics.inc("blocks_committed")
        self.metrics.inc("txs_committed", len(executed.txs))
        ids = [tx.id for tx in executed.txs]
        dropped = self.mempool.update(ids, [key for key, _ in executed.changes.writes])
        for ev in executed.block.evidence:
            self.evidence_pool.pop(ev.hash, None)
        for tx_id in ids:
            waiters = self._waiters.pop(tx_id, None)
            if waiters:  # most transactions have nobody waiting: no index read for them
                location = self.store.tx_location(tx_id)
                for future in waiters:
                    if not future.done():
                        future.set_result(location)
        self._settle(tx.id for tx, _ in dropped)
        for tx, exc in dropped:
            self._drop(tx.id, exc)
        for listener in self._commit_listeners:
            listener(executed)
        if len(self.mempool):
            self.new_txs.set()
        else:
            self.new_txs.clear()
        return executed

    def _drop(self, tx_id: bytes, exc: RejectedTransaction) -> None:
        """An admitted transaction will not commit: tell its waiters, and keep why for its status."""
        self.dropped[tx_id] = exc
        self.dropped.move_to_end(tx_id)
        while len(self.dropped) > DROPPED_KEPT:
            self.dropped.popitem(last=False)
        self._fail_waiters(tx_id, exc)

    def _fail_waiters(self, tx_id: bytes, exc: RejectedTransaction) -> None:
        for future in self._waiters.pop(tx_id, []):
            if not future.done():
                future.set_exception(exc)

    # ------------------------------------------------------------------ erasure (node/erasure.py)
    def forget_child(self, identity: bytes) -> int:
        """Drop every pending transaction about an erased child (those a peer gossiped were never
        checked against the state, so the commit's re-check may have kept them); returns how many."""
        gone = [tx for tx in self.mempool.reap() if subject_of(tx) == identity]
        for tx in gone:
            self.mempool.remove(tx.id)
            self._fail_waiters(tx.id, Erased("the child's records were erased by order"))
        self._settle(tx.id for tx in gone)
        self._executed.clear()  # executed proposals may hold them too
        return len(gone)

    async def in_writer(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on the writer thread, in order with block commits and acceptance
        records, while the event loop goes on."""
        return await asyncio.wrap_future(self._writer.submit(fn, *args))

    @contextlib.asynccontextmanager
    async def writer_paused(self) -> AsyncIterator[None]:
        """Hold the writer thread idle (after the writes queued before) for the body of the
        ``async with``: with the event loop busy in it, nothing else touches the store."""
        loop = asyncio.get_running_loop()
        parked: asyncio.Future = loop.create_future()
        release = threading.Event()

        def parked_now() -> None:
            if not parked.done():
                parked.set_result(None)

        def park() -> None:
            loop.call_soon_threadsafe(parked_now)
            release.wait()

        self._writer.submit(park)
        try:
            await parked
            yield
        finally:
            release.set()

    def signature_workers(self) -> int:
        """Worker processes checking the signatures of blocks' unadmitted transactions now."""
        return self._sigcheck.running()

    def close(self) -> None:
        """Finish pending acceptance writes (the store closes after this)."""
        self._closed = True
        self._checker.shutdown(wait=True, cancel_futures=True)
        if self._to_persist:  # accepted while the last write was on its way
            batch, self._to_persist = self._to_persist, {}
            self._writer.submit(self.store.accept, batch)
        self._writer.shutdown(wait=True)
        self._sigcheck.close()

    def add_evidence(self, evidence: DuplicateVoteEvidence) -> None:
        if len(self.evidence_pool) < 1000:
            self.evidence_pool.setdefault(evidence.hash, evidence)
