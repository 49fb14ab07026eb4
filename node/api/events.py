"""The signed event stream: ``GET /v1/events`` as server-sent events.

Who hears what (decided by the subscriber's key, from the committed state):

* a guardian: every crossing of their wards that becomes pending (with what they need to
  decide: child, post, direction, destination, companion, event time, deadline), each guardian
  decision that leaves it pending, and its final status;
* a terminal: the same for the requests it submitted;
* an enrolment authority: alerts (denied and expired crossings) at every post.

Auditors and keys without any of these roles are refused: nobody else can watch a child.

The subscription is a signed request (see :mod:`node.client.signed`) in the domain
``DOMAIN_SUBSCRIBE``. Events are derived once per committed block (``NodeApp.on_commit``) and
numbered ``HEIGHT.INDEX`` in the block's deterministic order, so ids mean the same on every node
and a watcher can resume on another node. The node keeps the events of recent blocks; a
reconnecting watcher sends ``Last-Event-ID`` and gets what it missed. Every stream begins with
the current state (a guardian gets their pending requests, flagged ``"replayed": true``) and a
``sync`` event; ``sync`` says ``"complete": false`` when the cursor was older than the kept
events, so the client reconciles through signed reads. A cursor naming a height the node has not
reached is refused (503 ``behind-cursor``, which sends the client to another node) rather than
taken as a promise that the blocks in between held nothing for the watcher.

Each subscriber has a bounded queue; one that falls behind is sent a final ``dropped`` event
and disconnected (it reconnects with its cursor). Comments (``: keepalive``) keep idle
connections alive. A revoked key's streams end with ``revoked``; a node shutting down ends
every stream with ``closing``. When a child is erased, the child's events leave the kept events
and every subscriber's queue as the erasing block commits (:meth:`EventStreams.purge`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections import deque
from collections.abc import Callable

from aiohttp import web

from ledger.chain import ExecutedBlock
from ledger.crypto.keys import DOMAIN_SUBSCRIBE
from ledger.rules.crossing import EVENT_PENDING
from ledger.rules.erasure import EVENT_ERASED
from ledger.state.records import DENIED, EXPIRED, PENDING, request_by_id
from ledger.tx.bodies import DECISION, DENY_REASONS, GOV_REVOKE_KEY, GOV_ROTATE_KEY, UPDATE_GUARDIANS
from node.api.auth import Authenticator, Caller
from node.api.codec import int_arg, jsonable
from node.api.policy import Policy
from node.api.queries import pending_for_guardian, request_doc
from node.api.recorder import ReadRecorder
from node.api.refusal import Refused, forbidden, guarded
from node.app import NodeApp

log = logging.getLogger("custos.events")

END = 2**31  # index meaning "after every event of that block"
GUARDIAN, TERMINAL, AUTHORITY = "guardian", "terminal", "authority"


class Notice:
    """One event as every subscriber sees it; ``wire`` is its encoded SSE frame.

    Most events of a busy node reach no subscriber (adults' crossings, children nobody watches
    right now), so the frame is built on first use, from the request record as it is then (with
    the status the event had).
    """

    __slots__ = ("_make", "_wire", "guardians", "height", "identity", "index", "kind", "status", "terminal")

    def __init__(self, height: int, index: int, kind: str, status: str, identity: bytes,
                 guardians: tuple[bytes, ...], terminal: bytes, make: Callable[[], bytes]) -> None:
        self.height, self.index, self.kind, self.status = height, index, kind, status
        self.identity, self.guardians, self.terminal = identity, guardians, terminal
        self._make: Callable[[], bytes] | None = make
        self._wire: bytes | None = None

    @property
    def wire(self) -> bytes:
        if self._wire is None:
            self._wire = self._make()  # type: ignore[misc]
            self._make = None
        return self._wire

    @property
    def position(self) -> tuple[int, int]:
        return (self.height, self.index)

    @property
    def is_alert(self) -> bool:
        return self.kind == "closed" and self.status in (DENIED, EXPIRED)


def frame(kind: str, data: dict, event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(jsonable(data), separators=(',', ':'))}\n\n".encode()


_CURSOR = re.compile(r"([0-9]{1,19})\.([0-9]{1,9}|x)")


def parse_cursor(value: str) -> tuple[int, int]:
    """``HEIGHT.INDEX`` or ``HEIGHT.x`` (after every event of that height), in ASCII digits."""
    match = _CURSOR.fullmatch(value)
    if match is None:
        raise Refused(400, "bad-cursor", "malformed Last-Event-ID", "expected HEIGHT.INDEX or HEIGHT.x")
    height, index = match.groups()
    return int(height), END if index == "x" else int(index)


def cursor_text(position: tuple[int, int]) -> str:
    height, index = position
    return f"{height}.x" if index >= END else f"{height}.{index}"


class Subscriber:
    __slots__ = ("after", "connected", "done", "finished", "guards", "key", "kind", "limit", "queue")

    def __init__(self, kind: str, key: bytes, after: tuple[int, int], limit: int,
                 connected: Callable[[], bool] = lambda: True,
                 guards: Callable[[bytes], bool] = lambda identity: True) -> None:
        self.kind = kind
        self.key = key
        self.after = after
        self.queue: asyncio.Queue[Notice | bytes] = asyncio.Queue()
        self.limit = limit
        self.finished: str | None = None
        self.done = asyncio.Event()
        self.connected = connected  # False once the subscriber's connection is gone
        self.guards = guards  # a guardian's: is it a guardian of this child *now*

    def wants(self, notice: Notice) -> bool:
        """A live notice: concerns this subscriber and lies after what it has seen."""
        return notice.position > self.after and self.concerns(notice)

    def concerns(self, notice: Notice) -> bool:
        if self.kind == GUARDIAN:  # a guardian named then, and still a guardian of the child now
            return self.key in notice.guardians and self.guards(notice.identity)
        if self.kind == TERMINAL:
            return self.key == notice.terminal
        return notice.is_alert

    def offer(self, item: Notice | bytes) -> None:
        if self.finished is not None:
            return
        if self.queue.qsize() >= self.limit:
            self.finish("dropped", "the subscriber fell behind; reconnect with Last-Event-ID")
            return
        self.queue.put_nowait(item)

    def forget(self, identity: bytes) -> int:
        """Take the events about an erased child out of the queue; returns how many."""
        kept, dropped = [], 0
        while not self.queue.empty():
            item = self.queue.get_nowait()
            if isinstance(item, Notice) and item.identity == identity:
                dropped += 1
            else:
                kept.append(item)
        for item in kept:
            self.queue.put_nowait(item)
        return dropped

    def finish(self, kind: str, detail: str) -> None:
        """End the stream with a final event (the queue is cleared first)."""
        if self.finished is not None:
            return
        self.finished = kind
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(frame(kind, {"detail": detail}))


class EventStreams:
    def __init__(self, app: NodeApp, auth: Authenticator, policy: Policy, recorder: ReadRecorder, *,
                 keep_events: int = 10_000,
                 queue_size: int = 1024, max_subscribers: int = 10_000, max_per_key: int = 8,
                 heartbeat_ms: int = 15_000) -> None:
        self.app = app
        self.auth = auth
        self.policy = policy
        self.recorder = recorder
        self.keep_events = keep_events
        self.queue_size = queue_size
        self.max_subscribers = max_subscribers
        self.max_per_key = max_per_key
        self.heartbeat_ms = heartbeat_ms
        self._ring: deque[tuple[int, list[Notice]]] = deque()
        self._ring_size = 0
        self._ring_from = app.store.height + 1  # every event of this height and later is kept
        self._by_key: dict[bytes, set[Subscriber]] = {}
        self._authorities: set[Subscriber] = set()
        self._count = 0
        self._closing = False
        self._sweeper: asyncio.Task | None = None
        app.on_commit(self._on_commit)

    def routes(self) -> list[web.RouteDef]:
        # no HEAD: a stream has no end, so a HEAD answered by it would carry a body
        return [web.get("/v1/events", self.subscribe, allow_head=False)]

    @property
    def subscribers(self) -> int:
        return self._count

    # ------------------------------------------------------------------ deriving events
    def _on_commit(self, executed: ExecutedBlock) -> None:
        try:
            notices = self._derive(executed)
            if notices:
                self._ring.append((executed.height, notices))
                self._ring_size += len(notices)
                while self._ring_size > self.keep_events and len(self._ring) > 1:
                    height, old = self._ring.popleft()
                    self._ring_size -= len(old)
                    self._ring_from = height + 1
                for notice in notices:
                    self._fan_out(notice)
            self._end_revoked(executed)
            self._after_guardianship_changes(executed)
        except Exception:  # a listener must never break a commit
            log.exception("deriving events of block %d failed", executed.height)

    def _derive(self, executed: ExecutedBlock) -> list[Notice]:
        state = self.app.store.state
        now = self.app.clock_ms()
        height = executed.height
        out: list[Notice] = []

        def add(kind: str, rid: bytes, status: str, extra: dict, identity: bytes, guardians: tuple[bytes, ...],
                terminal: bytes) -> None:
            position = (height, len(out))

            def make() -> bytes:
                record = request_by_id(state, rid)
                doc = request_doc(state, rid, record) if record is not None else {"id": rid}
                data = {**doc, "status": status, "event": kind, "event_height": height, "committed_ms": now,
                        **extra}
                return frame(kind, data, cursor_text(position))

            out.append(Notice(height, len(out), kind, status, identity, guardians, terminal, make))

        # routing needs only who is concerned, which the events carry; the request record is
        # read when a frame is first built
        for ev in executed.changes.events:
            if ev.kind == EVENT_ERASED:
                continue
            add("pending" if ev.kind == EVENT_PENDING else "closed", ev.request, ev.status, {}, ev.identity,
                ev.guardians, ev.terminal)
        for tx, result in zip(executed.txs, executed.changes.results, strict=True):
            if tx.kind == DECISION and result.outcome.status == PENDING:
                body = tx.body
                record = request_by_id(state, body.request)
                if record is not None:
                    add("decision", body.request, PENDING,
                        {"guardian": body.guardian, "decision": body.decision,
                         "reason": DENY_REASONS[body.reason]},
                        record.identity, record.guardians, record.terminal)
        if out:
            self.app.metrics.inc("events_derived", len(out))
        return out

    def _fan_out(self, notice: Notice) -> None:
        targets: set[Subscriber] = set()
        for key in (*notice.guardians, notice.terminal):
            targets.update(self._by_key.get(key, ()))
        if notice.is_alert:
            targets.update(self._authorities)
        for sub in targets:
            if sub.wants(notice):
                _ = notice.wire  # built now, from the request record as the block left it
                sub.offer(notice)
                if sub.finished == "dropped":
                    self.app.metrics.inc("event_subscribers_dropped")

    def purge(self, identity: bytes) -> int:
        """Forget every event about an erased child: kept for reconnecting watchers, or waiting
        in a subscriber's queue. Returns how many were dropped."""
        dropped = 0
        ring: deque[tuple[int, list[Notice]]] = deque()
        for height, notices in self._ring:
            kept = [n for n in notices if n.identity != identity]
            dropped += len(notices) - len(kept)
            if kept:
                ring.append((height, kept))
        self._ring = ring
        self._ring_size -= dropped
        for group in self._by_key.values():
            for sub in group:
                dropped += sub.forget(identity)
        return dropped

    def _end_revoked(self, executed: ExecutedBlock) -> None:
        for tx in executed.txs:
            if tx.kind == GOV_REVOKE_KEY:
                key = tx.body.key
            elif tx.kind == GOV_ROTATE_KEY:
                key = tx.body.old
            else:
                continue
            for sub in list(self._by_key.get(key, ())):
                sub.finish("revoked", "the subscribing key was revoked or rotated")

    def _after_guardianship_changes(self, executed: ExecutedBlock) -> None:
        """Court orders and erasures: forget the erased children's events, and end the streams
        of guardians left with no ward (they may watch nothing any more)."""
        erased = {ev.identity for ev in executed.changes.events if ev.kind == EVENT_ERASED}
        for identity in erased:
            self.purge(identity)
        if not erased and not any(tx.kind == UPDATE_GUARDIANS for tx in executed.txs):
            return
        for group in list(self._by_key.values()):
            for sub in list(group):
                if sub.kind == GUARDIAN and not self.policy.wards(sub.key, 1):
                    sub.finish("forbidden", "the subscribing key is no longer a guardian of any child")

    # ------------------------------------------------------------------ subscriptions
    def _classify(self, caller: Caller) -> str:
        if caller.is_terminal:
            return TERMINAL
        if caller.is_authority:
            return AUTHORITY
        if caller.guardian:
            return GUARDIAN
        raise forbidden(f"{caller.describe()} is no guardian, terminal or enrolment authority; "
                        "there is nothing it may watch")

    async def _sweep(self, interval_s: float = 1.0) -> None:
        """End the streams of subscribers that went away, within a second (else a dead stream
        would linger until its next heartbeat, holding one of its key's stream slots)."""
        while True:
            await asyncio.sleep(interval_s)
            for group in list(self._by_key.values()):
                for sub in list(group):
                    if not sub.connected():
                        sub.finish("gone", "the subscriber disconnected")

    def _live_streams(self, key: bytes) -> int:
        live = 0
        for sub in list(self._by_key.get(key, ())):
            if sub.finished is None and sub.connected():
                live += 1
            else:
                sub.finish("gone", "the subscriber disconnected")
        return live

    def _add(self, sub: Subscriber) -> None:
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        self._by_key.setdefault(sub.key, set()).add(sub)
        if sub.kind == AUTHORITY:
            self._authorities.add(sub)
        self._count += 1
        self.app.metrics.gauges["event_subscribers"] = self._count

    def _remove(self, sub: Subscriber) -> None:
        subs = self._by_key.get(sub.key)
        if subs is not None and sub in subs:
            subs.discard(sub)
            if not subs:
                del self._by_key[sub.key]
            self._authorities.discard(sub)
            self._count -= 1
            self.app.metrics.gauges["event_subscribers"] = self._count
        sub.done.set()

    def _backlog(self, sub: Subscriber, cursor: tuple[int, int] | None) -> tuple[list[bytes], bool]:
        """What a new stream sends before live events: missed events, or the current state."""
        items: list[bytes] = []
        complete = True
        if cursor is not None:
            height, index = cursor
            complete = height >= self._ring_from or (index >= END and height + 1 >= self._ring_from)
            if complete:
                for _, notices in self._ring:
                    items.extend(n.wire for n in notices if n.position > cursor and sub.concerns(n))
                return items, True
        if sub.kind == GUARDIAN:
            state = self.app.store.state
            for rid, record in pending_for_guardian(state, sub.key, limit=1000):
                items.append(frame("pending", {**request_doc(state, rid, record), "event": "pending",
                                               "replayed": True}))
        return items, complete

    @guarded
    async def subscribe(self, request: web.Request) -> web.StreamResponse:
        if self._closing:
            raise Refused(503, "shutting-down", "the node is shutting down", "subscribe to another node")
        caller = self.auth.authenticate(request, domain=DOMAIN_SUBSCRIBE)
        kind = self._classify(caller)
        self.policy.require_purpose(caller)
        heartbeat = int_arg(request, "heartbeat_ms", self.heartbeat_ms, lo=200, hi=60_000) / 1000
        raw_cursor = request.headers.get("Last-Event-ID") or request.query.get("cursor")
        cursor = parse_cursor(raw_cursor) if raw_cursor else None
        if self._count >= self.max_subscribers:
            raise Refused(503, "busy", "too many event subscribers", "try another node or later")
        if self._live_streams(caller.key) >= self.max_per_key:
            raise Refused(429, "too-many-streams", "too many streams for this key",
                          f"at most {self.max_per_key} concurrent streams per key")
        # the subscription reveals the guardian's wards' crossings from now on: one entry per
        # ward; a terminal's (its own requests) and an authority's (every alert) name no child
        self.recorder.record(caller, "events", self.policy.wards(caller.key, 1000) if kind == GUARDIAN else ())
        tip = (self.app.store.height, END)
        if cursor is not None and cursor[0] > tip[0]:
            # a cursor from a node further on (or made up): resuming here would skip, unseen, the
            # events of the blocks between; the client's fail-over tries another node on a 503
            raise Refused(503, "behind-cursor", "this node has not reached the cursor",
                          f"its chain ends at height {tip[0]}, the cursor names height {cursor[0]}: "
                          "resume on another node, or here in a moment")
        after = max(cursor, tip) if cursor is not None else tip
        sub = Subscriber(kind, caller.key, after, self.queue_size, connected=lambda: _connected(request),
                         guards=lambda identity: self.policy.guardian_of(caller.key, identity))
        # from here to the first await nothing commits: the backlog and the live queue meet at ``tip``
        self._add(sub)
        try:
            backlog, complete = self._backlog(sub, cursor)
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                                   "X-Accel-Buffering": "no"})
            await response.prepare(request)
            await response.write(b"retry: 1000\n\n" + b"".join(backlog))
            await response.write(frame("sync", {"height": tip[0], "complete": complete, "role": kind},
                                       cursor_text(after)))
            await self._pump(sub, response, heartbeat)
            return response
        finally:
            self._remove(sub)

    async def _pump(self, sub: Subscriber, response: web.StreamResponse, heartbeat: float) -> None:
        while True:
            try:
                item = await asyncio.wait_for(sub.queue.get(), heartbeat)
                data = item if isinstance(item, bytes) else item.wire
            except TimeoutError:
                data = b": keepalive\n\n"
            try:
                await response.write(data)
            except (ConnectionResetError, RuntimeError):
                return  # the subscriber went away
            if sub.finished is not None and sub.queue.empty():
                with contextlib.suppress(ConnectionResetError, RuntimeError):
                    await response.write_eof()
                return

    async def close(self, timeout_s: float = 3.0) -> None:
        """End every stream with ``closing`` and wait (bounded) for the handlers to return."""
        self._closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        subs = [s for group in self._by_key.values() for s in group]
        for sub in subs:
            sub.finish("closing", "the node is shutting down; reconnect to another node")
        if subs:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(s.done.wait() for s in subs)), timeout_s)


def _connected(request: web.Request) -> bool:
    transport = request.transport
    return transport is not None and not transport.is_closing()
