"""After a block erases a child: the node removes every copy of the child's data it keeps.

The state machine deleted the child's records in the erasing block (ledger/rules/erasure.py),
the chain store recorded the pending purge in that block's batch, and the commit listeners that
keep derived data dropped the child at once: the event streams its kept and queued events
(node/api/events.py), the request index its list (node/api/index.py, which names children by
tag only). This module does the rest, in order, without stalling consensus:

1. on the event loop: the mempool's pending transactions about the child (a peer's gossip is
   not checked against the state, so the commit's re-check may have kept some); then, off the
   loop, the child's record in an enrolment authority's gallery if this node serves
   identification;
2. on the writer thread, in order with block commits, one synchronous batch
   (ledger/storage/erasure.py): each of the child's transactions replaced by its stub in the
   stored blocks, the subject index and the durable mempool cleaned, the pending record
   replaced by the compaction marker;
3. on a thread of its own, while the node goes on: the store compacted, so deleted values leave
   the table and log files;
4. with the writer held idle and the event loop inside (a few milliseconds): the store reopened
   (LevelDB names keys in its MANIFEST until then; its diagnostic logs, which name keys of
   manual compactions, are removed), the consensus write-ahead log cut to its start record if
   its height is stored (a proposal holding the child's transactions may be in it), then the
   marker cleared. Every file of the store is then checked for the child's identity and
   biometric commitments; a hit (which the compaction rules out) means compacting again.

A crash anywhere leaves the pending record or the marker: :meth:`Purger.resume` finishes the
work at the next start, before the node serves or votes. Log lines name the child by its tag.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ledger.chain import ExecutedBlock
from ledger.privacy.tags import child_tag
from ledger.rules.erasure import EVENT_ERASED
from ledger.storage.erasure import Purge, apply_purge, plan_purge
from ledger.tx.bodies import ENROL, REENROL
from node.app import NodeApp

log = logging.getLogger("custos.erasure")

#: compactions tried before what is left of an erased child in the files is reported as an error
MAX_COMPACTIONS = 3


@dataclass
class PurgeStats:
    """What the last purge did, for ``/v1/status`` and the operator."""

    tag: bytes
    stubs: int
    blocks: int
    mempool: int
    batch_ms: float
    compact_ms: float = 0.0
    reopen_ms: float = 0.0

    def to_json(self) -> dict:
        return {"tag": self.tag.hex(), "stubs": self.stubs, "blocks": self.blocks, "mempool": self.mempool,
                "batch_ms": round(self.batch_ms, 1), "compact_ms": round(self.compact_ms, 1),
                "reopen_ms": round(self.reopen_ms, 1)}


def _ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000


class Purger:
    """Purges erased children from one node (see the module doc). Attach the optional parts
    (the write-ahead log's hook, other holders) before :meth:`resume`."""

    def __init__(self, app: NodeApp) -> None:
        self.app = app
        self.forget_decided_inputs: Callable[[], bool] | None = None
        #: other holders of children's data on this node (the identification gallery), each told
        #: the erased identity off the event loop
        self.also_forget: list[Callable[[bytes], object]] = []
        #: holders of store snapshots (the proof routes): a snapshot taken before the purge pins
        #: the erased bytes through compaction, so they release them before it and take fresh ones
        #: once the store is reopened (called on the event loop)
        self.release_snapshots: list[Callable[[], object]] = []
        self.retake_snapshots: list[Callable[[], object]] = []
        self.purged = 0
        self.last: PurgeStats | None = None
        self._queue: list[tuple[bytes, bytes]] = []
        self._wake: asyncio.Event | None = None
        self._busy = False
        self._compactor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="custos-compact")
        app.on_commit(self.on_commit)

    # ------------------------------------------------------------------ status
    @property
    def pending(self) -> int:
        """Erasures committed and not yet purged from every file."""
        return len(self._queue) + int(self._busy)

    def status(self) -> dict:
        return {"erasure": {"pending": self.pending, "purged": self.purged,
                            "last": None if self.last is None else self.last.to_json()}}

    # ------------------------------------------------------------------ at start
    def resume(self) -> None:
        """Finish purges a crash interrupted (synchronously: the node neither serves nor votes yet)."""
        store = self.app.store
        for tag, identity in store.pending_erasures():
            log.info("resuming the purge of erased child %s", tag.hex()[:16])
            for forget in self.also_forget:
                forget(identity)
            purge = self._purge_files(tag, identity)
            self._count(purge, 0, 0.0)
        if store.compaction_due:
            self._release_snapshots()
            self._compact()
            self._reopen()
            store.compaction_done()

    # ------------------------------------------------------------------ while running
    def on_commit(self, executed: ExecutedBlock) -> None:
        """A commit listener: queue the children this block erased."""
        for event in executed.changes.events:
            if event.kind == EVENT_ERASED:
                self._queue.append((child_tag(event.identity), event.identity))
        if self._queue and self._wake is not None:
            self._wake.set()

    async def run(self) -> None:
        """The purge worker: runs until cancelled; an exception means the node must stop (the
        pending records make the next start finish the purge)."""
        self._wake = asyncio.Event()
        if self._queue:
            self._wake.set()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch, self._queue = self._queue, []
                self._busy = True
                try:
                    await self._purge(batch)
                finally:
                    self._busy = False

    async def _purge(self, children: list[tuple[bytes, bytes]]) -> None:
        needles: list[bytes] = []
        stats = []
        for tag, identity in children:
            # memory first: nothing new about the child may be served from here on
            dropped_txs = self.app.forget_child(identity)
            for forget in self.also_forget:
                await asyncio.get_running_loop().run_in_executor(self._compactor, forget, identity)
            started = time.perf_counter()
            purge = await self.app.in_writer(self._purge_files, tag, identity)
            stats.append(self._count(purge, dropped_txs, _ms(started)))
            needles += _needles(purge)
        loop = asyncio.get_running_loop()
        for attempt in range(1, MAX_COMPACTIONS + 1):
            self._release_snapshots()
            started = time.perf_counter()
            await loop.run_in_executor(self._compactor, self._compact)
            compact_ms = _ms(started)
            async with self.app.writer_paused():
                started = time.perf_counter()
                self._reopen()
                if self.forget_decided_inputs is not None:
                    self.forget_decided_inputs()
                reopen_ms = _ms(started)
            for s in stats:
                s.compact_ms += compact_ms
                s.reopen_ms += reopen_ms
            residue = await loop.run_in_executor(self._compactor, self._residue, needles)
            if not residue:
                break
            log.warning("after compaction %d, %s still name an erased child; compacting again", attempt,
                        ", ".join(residue))
        else:
            log.error("LevelDB files %s still name an erased child after %d compactions; the next start "
                      "compacts again", ", ".join(residue), MAX_COMPACTIONS)
            return
        await self.app.in_writer(self.app.store.compaction_done)
        for s in stats:
            log.info("erased child %s purged: %d transactions in %d blocks replaced by stubs, %d pending "
                     "transactions dropped (batch %.0f ms, compaction %.0f ms, reopen %.0f ms)",
                     s.tag.hex()[:16], s.stubs, s.blocks, s.mempool, s.batch_ms, s.compact_ms, s.reopen_ms)

    def _count(self, purge: Purge, mempool: int, batch_ms: float) -> PurgeStats:
        self.purged += 1
        self.last = PurgeStats(purge.tag, len(purge.stubbed), purge.blocks, mempool + len(purge.accepted), batch_ms)
        self.app.metrics.inc("erasures_purged")
        self.app.metrics.inc("txs_stubbed", len(purge.stubbed))
        return self.last

    # ------------------------------------------------------------------ the steps
    def _purge_files(self, tag: bytes, identity: bytes) -> Purge:
        """Step 2: the chain store's one batch."""
        store = self.app.store
        purge = plan_purge(store, tag, identity)
        apply_purge(store, purge)
        return purge

    def _compact(self) -> None:
        """Step 3."""
        self.app.store.compact_files()

    def _release_snapshots(self) -> None:
        for release in self.release_snapshots:
            release()

    def _reopen(self) -> None:
        """Step 4 (nothing else may use the store meanwhile). Snapshots die with the old handle,
        also one a proof request took since the release: all go first, fresh ones come after."""
        self._release_snapshots()
        self.app.store.reopen_files()
        for retake in self.retake_snapshots:
            retake()

    def _residue(self, needles: list[bytes]) -> list[str]:
        check = getattr(self.app.store.kv, "files_holding", None)
        return [] if check is None else check(needles)

    async def close(self) -> None:
        """Let a running compaction finish (the stores close after this)."""
        await asyncio.get_running_loop().run_in_executor(None, self._compactor.shutdown, True)


def _needles(purge: Purge) -> list[bytes]:
    """What may not remain in any file: the child's identity id and biometric commitments."""
    out = [purge.identity]
    for _, _, tx in purge.stubbed:
        if tx.kind in (ENROL, REENROL):
            out.append(tx.body.commitment)
    return out

