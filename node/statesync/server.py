"""Serving snapshots to nodes that join by state sync.

A node plans a snapshot of its state (:mod:`ledger.snapshot.make`) after each block whose height
is a multiple of ``interval``, so that honest nodes offer the same snapshots, ready before a
peer asks; and when a peer asks while it holds none (just started, or it dropped them), at its
tip. It holds the two newest, so a joining node that started on the older one can finish.
Planning (a read of the whole state: 1.4 s at 100,000 crossings) and cutting chunks run on a
worker thread; the event loop only carries messages.

**Erasure.** A store snapshot keeps whatever it could see, an erased child's records included,
and LevelDB keeps them in its files while it is held. So when a block erases a child the node
drops every snapshot it holds before the purge compacts the store (:meth:`release`, called by
:class:`node.erasure.Purger`); the next offer is planned from the state after the erasure. A
snapshot served can thus never hold what was erased before it was served.

The worker thread reads the store under its files lock, one read (or a batch of an iteration)
at a time, and stops reading a view once it is released: the purge reopens the files under
that lock, and a read in flight on a database being closed would crash the process.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice

from ledger.block import COMMIT, HEADER
from ledger.rules.validators import validator_set_at
from ledger.snapshot.make import Plan, SnapshotUnavailable, chunk_bytes, plan
from ledger.storage.chainstore import ChainStore, RawView
from node.app import NodeApp
from node.statesync.messages import (
    MAX_HEADERS_BYTES,
    ChunkReply,
    GetChunk,
    GetHeaders,
    GetManifest,
    GetOffer,
    HeaderItem,
    Headers,
    ManifestReply,
    Message,
    Offer,
)

log = logging.getLogger("custos.statesync")

#: snapshots held at once (the newest and the one before it)
KEEP = 2
#: requests one peer may have waiting on the worker thread; more are dropped
MAX_QUEUED_PER_PEER = 4


#: entries of an iteration read per hold of the files lock
_BATCH = 512


class Released(Exception):
    """The view was released (a purge is about to reopen the store's files): stop reading it."""


class _Guarded:
    """A store view read on the worker thread (see the module notes)."""

    def __init__(self, view: RawView, lock: threading.Lock, alive: Callable[[], bool]) -> None:
        self._view, self._lock, self._alive = view, lock, alive

    def get(self, key: bytes) -> bytes | None:
        with self._lock:
            if not self._alive():
                raise Released
            return self._view.get(key)

    def items(self, start: bytes, stop: bytes) -> Iterator[tuple[bytes, bytes]]:
        while True:
            with self._lock:
                if not self._alive():
                    raise Released
                it = self._view.items(start, stop)
                try:
                    batch = list(islice(it, _BATCH))
                finally:
                    it.close()
            yield from batch
            if len(batch) < _BATCH:
                return
            start = batch[-1][0] + b"\x00"


@dataclass
class _Held:
    plan: Plan
    view: RawView
    users: int = 0
    dropped: bool = False

    def close_if_unused(self) -> None:
        if self.dropped and self.users == 0:
            self.view.close()


@dataclass
class ServeStats:
    offers: int = 0
    planned: int = 0
    chunks: int = 0
    chunk_bytes: int = 0
    last_plan_ms: float = 0.0
    queued: dict[bytes, int] = field(default_factory=dict)


def headers_reply(store: ChainStore, msg: GetHeaders) -> Headers:
    """The headers ``msg`` asks for, each with its certificate (and the next validator set where
    it changes), as many as fit in a reply."""
    items: list[HeaderItem] = []
    size = 0
    for height in range(msg.start, min(msg.start + msg.limit, store.height + 1)):
        header, commit = store.header(height), store.commit(height)
        if header is None or commit is None:
            break
        nxt = None
        if header.next_validators_hash != header.validators_hash:
            nxt = validator_set_at(store.state, height + 1).encode()
        item = HeaderItem(HEADER.encode(header), COMMIT.encode(commit), nxt)
        size += len(item.header) + len(item.commit) + len(nxt or b"")
        if items and size > MAX_HEADERS_BYTES:
            break
        items.append(item)
    return Headers(msg.start, tuple(items))


class SnapshotServer:
    """Answers the state-sync requests of peers (``send(peer, message)`` replies)."""

    def __init__(self, app: NodeApp, send: Callable[[bytes, Message], object], *, interval: int = 1000,
                 enabled: bool = True) -> None:
        self.app = app
        self.send = send
        self.interval = max(1, interval)
        self.enabled = enabled
        self.stats = ServeStats()
        self._held: list[_Held] = []
        self._planning: asyncio.Future | None = None
        self._unavailable: tuple[int, str] | None = None  # (height tried, why)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="custos-snapshot")
        self._tx_chunk_hashes: dict[tuple[int, int], bytes] = {}
        self._generation = 0  # moves on at each release: a plan begun before it is dropped
        self._asked: set[bytes] = set()  # peers that asked while a snapshot was being planned

    # ------------------------------------------------------------------ status
    def status(self) -> dict:
        newest = self._held[-1].plan if self._held else None
        return {"serving": None if newest is None else {"height": newest.manifest.height,
                                                          "chunks": newest.chunk_count,
                                                          "manifest_bytes": len(newest.encoded)},
                "snapshots_planned": self.stats.planned, "last_plan_ms": round(self.stats.last_plan_ms),
                "chunks_served": self.stats.chunks,
                "unavailable": None if self._unavailable is None else self._unavailable[1]}

    # ------------------------------------------------------------------ messages
    def on_message(self, peer: bytes, msg: Message) -> None:
        if not self.enabled:
            return
        if isinstance(msg, GetOffer):
            self.stats.offers += 1
            self._maybe_plan()
            if self._planning is not None:
                self._asked.add(peer)  # it hears of the new one once planned
            self._offer(peer)
        elif isinstance(msg, GetHeaders):
            self._queue(peer, self._headers, msg)
        elif isinstance(msg, GetManifest):
            held = self._find(msg.height, msg.hash)
            self.send(peer, ManifestReply(msg.height, msg.hash, b"" if held is None else held.plan.encoded))
        elif isinstance(msg, GetChunk):
            self._queue(peer, self._chunk, msg)

    def _offer(self, peer: bytes) -> None:
        newest = self._held[-1].plan if self._held else None
        if newest is None:
            self.send(peer, Offer(0, b"", 0, 0))
        else:
            self.send(peer, Offer(newest.manifest.height, newest.hash, len(newest.encoded), newest.chunk_count))

    def _queue(self, peer: bytes, work: Callable, msg: Message) -> None:
        queued = self.stats.queued
        if queued.get(peer, 0) >= MAX_QUEUED_PER_PEER:
            return  # a peer that does not wait for answers gets none
        held = self._find(msg.height, msg.hash) if isinstance(msg, GetChunk) else None
        if held is not None:
            held.users += 1
        queued[peer] = queued.get(peer, 0) + 1
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._worker, work, msg, held)

        def done(f: asyncio.Future) -> None:
            queued[peer] -= 1
            if held is not None:
                held.users -= 1
                held.close_if_unused()
            if f.cancelled():
                return
            exc = f.exception()
            if exc is not None:
                log.warning("state sync: could not answer %s from %s: %s", type(msg).__name__, peer.hex()[:12], exc)
                if isinstance(msg, GetChunk):
                    self.send(peer, ChunkReply(msg.height, msg.hash, msg.index, b""))
                return
            self.send(peer, f.result())

        future.add_done_callback(done)

    def _find(self, height: int, digest: bytes) -> _Held | None:
        for held in self._held:
            if not held.dropped and held.plan.manifest.height == height and held.plan.hash == digest:
                return held
        return None

    # ------------------------------------------------------------------ work on the worker thread
    def _headers(self, msg: GetHeaders, _held: object) -> Headers:
        with self.app.store.files_lock:
            return headers_reply(self.app.store, msg)

    def _chunk(self, msg: GetChunk, held: _Held | None) -> ChunkReply:
        if held is None or held.dropped:
            return ChunkReply(msg.height, msg.hash, msg.index, b"")
        source = _Guarded(held.view, self.app.store.files_lock, lambda: not held.dropped)
        try:
            data = chunk_bytes(source, held.plan, msg.index)
        except (IndexError, Released):
            data = b""
        self.stats.chunks += 1
        self.stats.chunk_bytes += len(data)
        return ChunkReply(msg.height, msg.hash, msg.index, data)

    # ------------------------------------------------------------------ planning
    def start(self) -> None:
        """Plan the snapshot of the state the node starts with, so that a node that joins soon
        after finds one on offer instead of waiting for it to be planned (on a long chain that
        takes seconds: the whole state is read)."""
        if self.enabled:
            self._maybe_plan()

    def on_commit(self, height: int) -> None:
        """After a block: plan the snapshot of its state if its height is a multiple of the
        interval (every honest node plans the same one)."""
        if self.enabled and height % self.interval == 0 and self.app.store.height == height:
            try:
                asyncio.get_running_loop()
            except RuntimeError:  # a commit outside the node's loop (tools): nobody to serve
                return
            self._maybe_plan(due=True)

    def _maybe_plan(self, *, due: bool = False) -> None:
        store = self.app.store
        tip = store.height
        if self._planning is not None or tip < 1:
            return
        if not due and self._held and tip - self._held[-1].plan.manifest.height < self.interval:
            return
        if self._unavailable is not None and tip - self._unavailable[0] < self.interval:
            return
        view = store.raw_view()
        header = store.header(view.height)
        if header is None:
            view.close()
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        generation = self._generation
        source = _Guarded(view, store.files_lock, lambda: generation == self._generation)
        self._planning = loop.run_in_executor(
            self._worker, lambda: plan(source, header, tx_chunk_hashes=self._tx_chunk_hashes))

        def done(f: asyncio.Future) -> None:
            self._planning = None
            exc = None if f.cancelled() else f.exception()
            if f.cancelled() or exc is not None or generation != self._generation:
                view.close()
                if isinstance(exc, SnapshotUnavailable):
                    if self._unavailable is None:
                        log.warning("state sync: this node offers no snapshot: %s", exc)
                    self._unavailable = (view.height, str(exc))
                elif exc is not None and not isinstance(exc, Released):
                    log.error("state sync: planning a snapshot at height %d failed: %s", view.height, exc)
                return
            self._unavailable = None
            planned = f.result()
            self.stats.planned += 1
            self.stats.last_plan_ms = (loop.time() - started) * 1000
            log.info("state sync: snapshot of height %d planned in %.0f ms: %d chunks, manifest %d bytes",
                     view.height, self.stats.last_plan_ms, planned.chunk_count, len(planned.encoded))
            self._held.append(_Held(planned, view))
            while len(self._held) > KEEP:
                self._drop(self._held.pop(0))
            asked, self._asked = self._asked, set()
            for peer in asked:
                self._offer(peer)

        self._planning.add_done_callback(done)

    @staticmethod
    def _drop(held: _Held) -> None:
        held.dropped = True
        held.close_if_unused()

    def release(self) -> None:
        """Drop every snapshot held (a child was erased: they may see its records), and any
        being planned."""
        self._generation += 1
        while self._held:
            self._drop(self._held.pop())

    def close(self) -> None:
        self.release()
        self._worker.shutdown(wait=True, cancel_futures=True)


__all__ = ["SnapshotServer"]
