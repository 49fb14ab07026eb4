"""One authenticated connection to one peer: its handshake, queue, writer and rate-limited reader.

The websocket may be either side's (aiohttp's server ``WebSocketResponse`` or client
``ClientWebSocketResponse``: both offer ``send_bytes``, ``receive`` and ``close``). After
:func:`perform_handshake`, a :class:`PeerConnection` owns it:

* ``enqueue`` puts a frame in a bounded :class:`~node.p2p.outqueue.OutQueue` and returns at
  once; a writer task seals and sends. A peer that stops reading fills its own queue (oldest
  non-priority messages are dropped) and is closed after ``send_timeout_s``.
* ``run`` reads until the connection ends. Each frame is opened (authenticated), charged to the
  peer's token bucket (excess dropped and counted; drops that persist close the connection),
  decoded with bounds (malformed closes the connection) and handed to ``on_frame``.
* ``retire`` ends this end's direction: the frames still queued are handed back (for the
  connection that replaces this one), a FIN frame goes out after whatever is being sent, and
  reading goes on. Once both ends have sent FIN the connection closes, so nothing either end
  sent on it is lost; a peer that never answers FIN is closed after ``handshake_timeout_s``
  (the network's timer).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import aiohttp
from aiohttp import WSMsgType

from ledger.errors import DecodeError
from node.p2p.errors import HandshakeRejected, Reason
from node.p2p.frames import FIN_FRAME, Control, Frame, decode_frame
from node.p2p.handshake import Handshake
from node.p2p.limits import FloodGuard, Limits, TokenBucket
from node.p2p.outqueue import OutQueue
from node.p2p.session import Session
from node.p2p.stats import Counters

log = logging.getLogger("custos.p2p")

# websocket close codes (4000-4999 are the application's)
CLOSE_SHUTDOWN = 1001
CLOSE_TOO_BIG = 1009
CLOSE_REJECTED = 4001
CLOSE_MALFORMED = 4002
CLOSE_RATE_LIMIT = 4003
CLOSE_DUPLICATE = 4004
CLOSE_NOT_PERMITTED = 4005
CLOSE_STALLED = 4006

_WRITE_ERRORS = (ConnectionError, OSError, RuntimeError, aiohttp.ClientError)


def close_message(reason: str) -> bytes:
    """A close frame's reason: at most 123 bytes of UTF-8."""
    return reason.encode("utf-8")[:123]


async def close_ws(ws, code: int, reason: str, timeout: float) -> None:
    """Close ``ws`` with ``code`` and ``reason``, within ``timeout`` whatever the peer does.

    A peer that neither reads nor answers the close loses its socket when the time is up.
    """
    with contextlib.suppress(Exception):
        async with asyncio.timeout(timeout):
            await ws.close(code=code, message=close_message(reason))


#: what a websocket raises when the connection went away under it (a reset, a closing transport:
#: aiohttp answers a ping inside ``receive`` and that write fails once the peer has gone)
_CONNECTION_ERRORS = (ConnectionError, OSError, aiohttp.ClientError)


async def _send(ws, data: bytes) -> None:
    try:
        await ws.send_bytes(data)
    except _WRITE_ERRORS:
        raise HandshakeRejected(Reason.CLOSED, "the connection closed during the handshake") from None


async def _receive(ws) -> bytes:
    try:
        msg = await ws.receive()
    except _CONNECTION_ERRORS as exc:
        raise HandshakeRejected(Reason.CLOSED, f"the connection failed during the handshake: {exc}") from None
    if msg.type is WSMsgType.BINARY:
        return msg.data
    if msg.type is WSMsgType.CLOSE and msg.data == CLOSE_REJECTED:
        raise HandshakeRejected(Reason.REFUSED, f"the peer refused this node: {msg.extra or 'no reason'}")
    if msg.type is WSMsgType.TEXT:
        raise HandshakeRejected(Reason.MALFORMED, "a text message in the handshake")
    raise HandshakeRejected(Reason.CLOSED, f"the connection closed during the handshake ({msg.type.name})")


async def perform_handshake(ws, handshake: Handshake,
                            on_hello: Callable[[bytes], None] | None = None) -> Session:
    """Run ``handshake`` over ``ws``; the caller bounds it in time.

    The dialler speaks first. The listener says nothing until the dialler's hello names this
    chain, its genesis and a permitted key, and sends its own signature only once the
    dialler's has verified: a caller that is not a permitted node learns nothing, not even
    which chain it reached. ``on_hello`` is told the key a dialler claims, once its hello checked.
    """
    if handshake.initiator:
        await _send(ws, handshake.hello_bytes())
        auth = handshake.receive_hello(await _receive(ws))
        await _send(ws, auth)
        return handshake.receive_auth(await _receive(ws))
    auth = handshake.receive_hello(await _receive(ws))
    if on_hello is not None and handshake.peer_key is not None:
        on_hello(handshake.peer_key)
    await _send(ws, handshake.hello_bytes())
    session = handshake.receive_auth(await _receive(ws))
    await _send(ws, auth)
    return session


class PeerConnection:
    """An authenticated connection. ``key`` is the peer's proven public key."""

    def __init__(self, ws, session: Session, *, local_key: bytes, address: str, limits: Limits,
                 peer_rate: float, max_frame_bytes: int, priority: frozenset[int], counters: Counters,
                 on_frame: Callable[[PeerConnection, Frame], None],
                 on_fin: Callable[[PeerConnection], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.key = session.peer_key
        #: True if this node dialed
        self.outbound = session.initiator
        #: the key of the node that dialed: the one-per-pair tie-break compares these
        self.initiator_key = local_key if session.initiator else session.peer_key
        self.address = address
        self.connected_at = time.time()
        self.queue = OutQueue(limits.queue_messages, max(limits.queue_bytes, 2 * max_frame_bytes), priority)
        #: per-connection counts (the network's ``counters`` hold the totals)
        self.frames_received = 0
        self.frames_sent = 0
        self.dropped_rate_limited = 0
        self._ws = ws
        self._session = session
        self._limits = limits
        self._max_frame = max_frame_bytes
        self._counters = counters
        self._on_frame = on_frame
        self._on_fin = on_fin
        self._clock = clock
        self._bucket = TokenBucket(peer_rate, max(1.0, peer_rate * limits.rate_burst_s), clock())
        self._flood = FloodGuard(limits.flood_windows, limits.flood_window_s)
        self._wake = asyncio.Event()
        self._writer: asyncio.Task | None = None
        self._retired = False
        self._sent_fin = False
        self._got_fin = False
        self._closing = False
        self._close_code = CLOSE_SHUTDOWN
        self._close_reason = "connection closed"
        self._closed = asyncio.Event()

    def __repr__(self) -> str:
        way = "to" if self.outbound else "from"
        return f"<PeerConnection {way} {self.key.hex()[:16]}... at {self.address}>"

    # ---------------------------------------------------------------- sending

    @property
    def sending(self) -> bool:
        return self._writer is not None and not self._retired and not self._closing

    def start(self) -> None:
        """Start the writer; from now on ``enqueue`` sends."""
        if self._writer is None and not self._closing:
            self._writer = asyncio.get_running_loop().create_task(self._write_loop(), name=f"p2p-writer {self!r}")

    def enqueue(self, channel: int, frame: bytes) -> bool:
        """Queue a frame's plaintext; False if this connection no longer sends."""
        if not self.sending:
            return False
        dropped = self.queue.push(channel, frame)
        self._counters.dropped_queue_full += dropped
        self._wake.set()
        return True

    def adopt(self, items: list[tuple[bool, bytes]]) -> None:
        """Queue frames taken from a retired connection to the same peer, in their order."""
        for urgent, frame in items:
            self._counters.dropped_queue_full += self.queue.push_item(urgent, frame)
        self._wake.set()

    def retire(self) -> list[tuple[bool, bytes]]:
        """Stop sending here (the peer is reached through another connection now), keep reading.

        Returns the frames still queued, so they go out on the connection that replaces this one.
        """
        self._retired = True
        items = self.queue.take_all()
        if self._writer is None:
            self.start()  # to send the FIN
        self._wake.set()
        return items

    async def _write_loop(self) -> None:
        try:
            await self._write_frames()
        except Exception:
            # a writer that died would leave a connection that looks alive and sends nothing
            self._counters.task_failures += 1
            log.exception("the writer of %s failed; closing the connection", self)
            await self.close(CLOSE_SHUTDOWN, "writer failed")

    async def _write_frames(self) -> None:
        while not self._closing:
            if self._retired:
                if not self._sent_fin:
                    if not await self._write(FIN_FRAME):
                        return
                    self._sent_fin = True
                if self._got_fin:
                    await self.close(CLOSE_DUPLICATE, "duplicate connection")
                return
            frame = self.queue.pop()
            if frame is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            if not await self._write(frame):
                return
            self.frames_sent += 1

    async def _write(self, frame: bytes) -> bool:
        sealed = self._session.seal(frame)
        try:
            async with asyncio.timeout(self._limits.send_timeout_s):
                await self._ws.send_bytes(sealed)
        except TimeoutError:
            log.warning("peer %s does not read; closing", self)
            await self.close(CLOSE_STALLED, "peer does not read")
            return False
        except _WRITE_ERRORS:
            await self.close(CLOSE_SHUTDOWN, "write failed")
            return False
        self._counters.frames_sent += 1
        self._counters.bytes_sent += len(sealed)
        return True

    # ---------------------------------------------------------------- receiving

    async def run(self) -> None:
        """Read frames until the connection ends; then release everything."""
        try:
            while not self._closing:
                try:
                    msg = await self._ws.receive()
                except _CONNECTION_ERRORS as exc:
                    # the peer went away while aiohttp answered its ping, or the socket reset
                    log.info("connection to %s lost: %s", self, exc.__class__.__name__)
                    break
                if msg.type is WSMsgType.BINARY:
                    if not self._on_binary(msg.data):
                        break
                elif msg.type is WSMsgType.TEXT:
                    self._counters.malformed_frames += 1
                    self._set_close(CLOSE_MALFORMED, "text message")
                    break
                elif msg.type is WSMsgType.ERROR:
                    if getattr(msg.data, "code", None) == CLOSE_TOO_BIG:
                        self._counters.oversized_frames += 1
                        log.warning("peer %s sent a frame over %d bytes; closed", self, self._max_frame)
                    else:
                        log.info("connection to %s failed: %s", self, msg.data)
                    break
                else:  # CLOSE, CLOSING, CLOSED
                    if msg.type is WSMsgType.CLOSE and msg.data not in (CLOSE_SHUTDOWN, CLOSE_DUPLICATE, 1000):
                        log.info("peer %s closed the connection: %s %s", self, msg.data, msg.extra or "")
                    break
        finally:
            self._closing = True
            self._wake.set()
            await close_ws(self._ws, self._close_code, self._close_reason, self._limits.close_timeout_s)
            if self._writer is not None:
                # the writer sees the flag at once, or its send fails now that the socket closed
                done, _ = await asyncio.wait({self._writer}, timeout=self._limits.close_timeout_s)
                if not done:
                    self._writer.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await self._writer
            self._counters.connections_closed += 1
            self._closed.set()

    def _on_binary(self, data: bytes) -> bool:
        """Handle one frame; False if the connection must close."""
        self._counters.bytes_received += len(data)
        try:
            plaintext = self._session.open(data)
        except DecodeError as exc:
            self._counters.malformed_frames += 1
            self._fail(CLOSE_MALFORMED, str(exc))
            return False
        now = self._clock()
        if not self._bucket.take(now):
            self.dropped_rate_limited += 1
            self._counters.dropped_rate_limited += 1
            if self._flood.dropped(now):
                self._counters.rate_limit_disconnects += 1
                self._fail(CLOSE_RATE_LIMIT, "rate limit exceeded")
                return False
            return True
        try:
            frame = decode_frame(plaintext, max_size=self._max_frame)
        except DecodeError as exc:
            self._counters.malformed_frames += 1
            self._fail(CLOSE_MALFORMED, f"malformed frame: {exc}")
            return False
        self._counters.frames_received += 1
        if isinstance(frame, Control):  # FIN: the peer sends nothing more here
            self._got_fin = True
            if self._sent_fin:
                self._set_close(CLOSE_DUPLICATE, "duplicate connection")
                return False
            self._on_fin(self)
            return True
        self.frames_received += 1
        self._on_frame(self, frame)
        return True

    def _fail(self, code: int, reason: str) -> None:
        log.warning("closing connection to %s: %s", self, reason)
        self._set_close(code, reason)

    def _set_close(self, code: int, reason: str) -> None:
        self._close_code = code
        self._close_reason = reason

    # ---------------------------------------------------------------- closing

    async def close(self, code: int = CLOSE_SHUTDOWN, reason: str = "shutting down") -> None:
        """Close from any task; ``run`` then returns. Bounded by the websocket's close timeout."""
        if not self._closing:
            self._set_close(code, reason)
            self._closing = True
            self._wake.set()
            await close_ws(self._ws, code, reason, self._limits.close_timeout_s)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def wait_closed(self) -> None:
        await self._closed.wait()
