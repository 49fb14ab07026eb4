"""The peer network: a websocket endpoint, a dialer per configured peer, one connection per pair.

:class:`PeerNetwork` listens on ``GET /p2p`` of its own aiohttp server and dials every configured
peer, redialing with exponential backoff and jitter. Every connection runs the mutual, chain-bound
handshake of :mod:`node.p2p.handshake` and is then sealed (:mod:`node.p2p.session`). What the
application sees is authenticated ``(peer_key, channel, payload)`` tuples through
``on_message``; the transport knows nothing of consensus.

**One connection per pair.** Both ends dial (the end with the higher key a moment later, to
make a race rare), so two connections between the same nodes can still complete. Both ends
then keep the one whose *initiator* has the lower public key
(:func:`keeps_new`); a newer connection from the same initiator replaces an older one (the
older is stale: its initiator would not have redialed otherwise). The loser is *retired* on
each end: its queued frames move to the winner, a FIN frame ends that end's direction, and the
loser is still read until the peer's FIN arrives, then closed. So every message travels on
exactly one connection, and none is lost to the switch. Timers bound the odd cases: a retired
connection whose peer never sends FIN, and a registered one whose peer sent FIN (it switched)
while the replacement never completes here, are closed after ``handshake_timeout_s``.

**Gossip.** :meth:`PeerNetwork.gossip` sends a message to every peer with a hop count; each node
delivers it once and relays it once to its other peers (a bounded LRU of message ids drops
copies), so a partially connected network still spreads transactions and votes. A message
delivered through gossip names the neighbour it came from, not its author: gossiped payloads
must authenticate themselves (signed votes and transactions do).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web

from ledger.crypto.keys import PUBLIC_KEY_SIZE, SigningKey
from node.edge.connections import ConnectionGuard, ConnectionLimits, GuardedRunner, busy_middleware
from node.p2p.admission import Admission, Ticket
from node.p2p.errors import FrameTooLarge, HandshakeRejected, P2PError, Reason
from node.p2p.frames import CONSENSUS, Frame, check_channel, encode_frame, max_payload
from node.p2p.gossip import SeenCache, message_id
from node.p2p.handshake import Handshake
from node.p2p.limits import Limits, backoff_ms
from node.p2p.peer import (
    CLOSE_DUPLICATE,
    CLOSE_NOT_PERMITTED,
    CLOSE_REJECTED,
    CLOSE_SHUTDOWN,
    PeerConnection,
    close_ws,
    perform_handshake,
)
from node.p2p.stats import Counters

if TYPE_CHECKING:
    from node.config import P2PSection

log = logging.getLogger("custos.p2p")

PATH = "/p2p"
#: the smallest frame limit the transport accepts (handshake messages must fit)
MIN_FRAME_BYTES = 1024

#: ``on_message(peer_key, channel, payload)``; for a gossip message, returning False stops the relay
OnMessage = Callable[[bytes, int, bytes], "bool | None"]
#: ``on_peer(peer_key, connected)``: a peer became reachable (True) or is no longer (False)
OnPeer = Callable[[bytes, bool], None]


def _split_hostport(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise P2PError(f"{value!r} is not HOST:PORT")
    return host, int(port)


def keeps_new(new_initiator: bytes, old_initiator: bytes) -> bool:
    """The one-per-pair rule: does a new connection replace the one held for the same peer?

    Both ends apply it to the same two connections and reach the same answer.
    """
    if new_initiator == old_initiator:
        return True  # the initiator redialed: its old connection is stale
    return new_initiator < old_initiator


@dataclass(frozen=True, slots=True)
class PeerInfo:
    key: bytes
    address: str
    outbound: bool
    connected_at: float
    queued: int
    frames_received: int
    frames_sent: int
    dropped_rate_limited: int


class PeerNetwork:
    """Authenticated websocket transport among the chain's nodes.

    ``peers`` are ``(address "host:port", public key)`` pairs to dial; their keys are always
    permitted. ``allowed(key)`` may permit more keys (e.g. the current validator set) to connect
    in; without it only the configured peers may. ``on_message`` is called in the event loop for
    every delivered message and must not block. ``priority_channels`` are sent first and dropped
    last when a peer's queue is full.
    """

    def __init__(
        self,
        key: SigningKey,
        chain_id: str,
        genesis_hash: bytes,
        listen: str,
        peers: Iterable[tuple[str, bytes]] = (),
        *,
        on_message: OnMessage,
        allowed: Callable[[bytes], bool] | None = None,
        on_peer: OnPeer | None = None,
        max_frame_bytes: int = 16 * 1024 * 1024,
        peer_rate: float = 20_000,
        reconnect_min_ms: float = 200,
        reconnect_max_ms: float = 5_000,
        priority_channels: Iterable[int] = (CONSENSUS,),
        limits: Limits = Limits(),
        rng: random.Random | None = None,
    ) -> None:
        if max_frame_bytes < MIN_FRAME_BYTES:
            raise P2PError(f"max_frame_bytes must be at least {MIN_FRAME_BYTES}")
        if peer_rate <= 0:
            raise P2PError("peer_rate must be positive")
        if not 0 < reconnect_min_ms <= reconnect_max_ms:
            raise P2PError("need 0 < reconnect_min_ms <= reconnect_max_ms")
        for channel in priority_channels:
            check_channel(channel)
        self.key = key
        self.chain_id = chain_id
        self.genesis_hash = genesis_hash
        self.max_frame_bytes = max_frame_bytes
        #: the largest payload ``send``, ``broadcast`` and ``gossip`` accept
        self.max_payload_bytes = max_payload(max_frame_bytes)
        self.peer_rate = peer_rate
        self.reconnect_min_ms = reconnect_min_ms
        self.reconnect_max_ms = reconnect_max_ms
        self.limits = limits
        self.counters = Counters()
        self._host, self._port = _split_hostport(listen)
        self._on_message = on_message
        self._allowed = allowed
        self._on_peer = on_peer
        self._priority = frozenset(priority_channels)
        self._rng = rng or random.Random()
        self._targets: dict[bytes, str] = {}
        for address, public in peers:
            self._add_target(address, public)
        self._conns: dict[bytes, PeerConnection] = {}
        self._all: set[PeerConnection] = set()
        self._handshaking: set = set()
        self._admission = Admission(total=limits.max_handshakes, per_ip=limits.max_handshakes_per_ip,
                                    per_key=limits.max_handshakes_per_key)
        self._outbound_handshakes = 0
        self._dialers: dict[bytes, asyncio.Task] = {}
        self._tasks: set[asyncio.Task] = set()
        self._seen = SeenCache(limits.seen_cache)
        self._logged: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._runner: GuardedRunner | None = None
        # sockets on the listener, peers' and strangers' alike: one that has not asked for the
        # websocket upgrade within the handshake time is closed, and the newest pushes out the
        # one idle longest once the transport's own bounds are reached
        self._listener_counters: dict[str, int] = {}
        self._listener_guard = ConnectionGuard(
            ConnectionLimits(max_connections=limits.max_connections + limits.max_handshakes,
                             idle_timeout_s=limits.handshake_timeout_s, header_timeout_s=limits.handshake_timeout_s),
            counters=self._listener_counters, name="p2p_listener")
        self._session: aiohttp.ClientSession | None = None
        self._started = False
        self._stopping = False

    @classmethod
    def from_config(cls, p2p: P2PSection, key: SigningKey, chain_id: str, genesis_hash: bytes,
                    **kwargs) -> PeerNetwork:
        """Build from the node config's ``[p2p]`` section (:class:`node.config.P2PSection`)."""
        return cls(
            key, chain_id, genesis_hash, p2p.listen,
            [(peer.address, bytes.fromhex(peer.key)) for peer in p2p.peers],
            max_frame_bytes=p2p.max_frame_bytes,
            peer_rate=p2p.peer_rate,
            reconnect_min_ms=p2p.reconnect_min_ms,
            reconnect_max_ms=p2p.reconnect_max_ms,
            **kwargs,
        )

    # ================================================================ lifecycle

    @property
    def listen_address(self) -> str:
        """``host:port`` this node listens on (the real port once started, if 0 was asked)."""
        return f"{self._host}:{self._port}"

    async def start(self) -> None:
        if self._started:
            raise P2PError("the peer network was started already")
        self._started = True
        app = web.Application(middlewares=[busy_middleware])
        app.router.add_get(PATH, self._accept)
        self._runner = GuardedRunner(app, self._listener_guard, access_log=None, handle_signals=False,
                                     shutdown_timeout=self.limits.close_timeout_s)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise P2PError(f"cannot listen on {self.listen_address}: {exc.strerror or exc}") from None
        self._runner.start_sweeping()
        for address in self._runner.addresses:
            if isinstance(address, tuple):
                self._port = address[1]
                break
        self._session = aiohttp.ClientSession()
        for public in self._targets:
            self._spawn_dialer(public)
        log.info("p2p listening on %s as %s..., %d peer(s) configured",
                 self.listen_address, self.key.public.hex()[:16], len(self._targets))

    async def stop(self) -> None:
        """Close every connection and the listener; returns within ``limits.stop_timeout_s``."""
        if self._stopping or not self._started:
            self._stopping = True
            return
        self._stopping = True
        try:
            async with asyncio.timeout(self.limits.stop_timeout_s):
                await self._shutdown()
        except TimeoutError:
            log.warning("p2p stop timed out; abandoning the remaining connections")
        finally:
            for task in [*self._dialers.values(), *self._tasks]:
                task.cancel()
            self._dialers.clear()
            self._tasks.clear()

    async def _shutdown(self) -> None:
        closing = [conn.close(CLOSE_SHUTDOWN, "shutting down") for conn in list(self._all)]
        closing += [close_ws(ws, CLOSE_SHUTDOWN, "shutting down", self.limits.close_timeout_s)
                    for ws in list(self._handshaking)]
        await asyncio.gather(*closing, return_exceptions=True)
        dialers = list(self._dialers.values())
        for task in dialers:
            task.cancel()
        await asyncio.gather(*dialers, return_exceptions=True)
        others = list(self._tasks)
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    # ================================================================ peers and permissions

    def _add_target(self, address: str, public: bytes) -> None:
        _split_hostport(address)
        if len(public) != PUBLIC_KEY_SIZE:
            raise P2PError(f"peer {address}: a public key is {PUBLIC_KEY_SIZE} bytes")
        if public != self.key.public:
            self._targets[public] = address

    def add_peer(self, address: str, public: bytes) -> None:
        """Dial ``address``, expecting ``public``; the key is permitted from now on.

        For a known key, the new address is used from the next dial on (a live connection stays).
        """
        if public == self.key.public:
            return
        self._add_target(address, public)
        if self._started and not self._stopping and public not in self._dialers:
            self._spawn_dialer(public)

    def remove_peer(self, public: bytes) -> None:
        """Stop dialing ``public``; drop its connection unless ``allowed`` still permits it."""
        self._targets.pop(public, None)  # its dialer ends after the current connection or attempt
        self.enforce_permissions()

    def permitted(self, public: bytes) -> bool:
        if public in self._targets:
            return True
        if self._allowed is None:
            return False
        try:
            return bool(self._allowed(public))
        except Exception:
            log.exception("the allowed-key check failed; refusing %s...", public.hex()[:16])
            return False

    def enforce_permissions(self) -> int:
        """Close connections to keys no longer permitted (call after a validator-set change)."""
        closed = 0
        for conn in list(self._all):
            if not self.permitted(conn.key):
                log.warning("peer %s... is no longer permitted; disconnecting", conn.key.hex()[:16])
                self._spawn(conn.close(CLOSE_NOT_PERMITTED, "key no longer permitted"))
                closed += 1
        return closed

    # ================================================================ sending

    def connected_peers(self) -> list[bytes]:
        return list(self._conns)

    def peer_info(self) -> list[PeerInfo]:
        return [PeerInfo(c.key, c.address, c.outbound, c.connected_at, len(c.queue), c.frames_received,
                         c.frames_sent, c.dropped_rate_limited) for c in self._conns.values()]

    def _frame(self, channel: int, payload: bytes, ttl: int = 0) -> bytes:
        if type(payload) is not bytes:
            raise TypeError(f"payload must be bytes, got {type(payload).__name__}")
        if len(payload) > self.max_payload_bytes:
            raise FrameTooLarge(f"a payload of {len(payload)} bytes exceeds the limit of {self.max_payload_bytes}")
        return encode_frame(channel, payload, ttl)

    def send(self, peer_key: bytes, channel: int, payload: bytes) -> bool:
        """Queue ``payload`` for one peer; False if it is not connected."""
        frame = self._frame(channel, payload)
        conn = self._conns.get(peer_key)
        return conn is not None and conn.enqueue(channel, frame)

    def broadcast(self, channel: int, payload: bytes, exclude: bytes | Iterable[bytes] | None = None) -> int:
        """Queue ``payload`` for every connected peer but ``exclude``; returns how many."""
        frame = self._frame(channel, payload)
        return self._fan_out(channel, frame, exclude)

    def gossip(self, channel: int, payload: bytes) -> int:
        """Flood ``payload`` to the whole network: every node delivers and relays it once."""
        frame = self._frame(channel, payload, self.limits.gossip_ttl)
        self._seen.add(message_id(channel, payload))
        return self._fan_out(channel, frame, None)

    def _fan_out(self, channel: int, frame: bytes, exclude: bytes | Iterable[bytes] | None) -> int:
        if exclude is None:
            skip: frozenset[bytes] | set[bytes] = frozenset()
        elif isinstance(exclude, (bytes, bytearray)):
            skip = {bytes(exclude)}
        else:
            skip = set(exclude)
        sent = 0
        for key, conn in list(self._conns.items()):
            if key not in skip and conn.enqueue(channel, frame):
                sent += 1
        return sent

    # ================================================================ receiving

    def _dispatch(self, conn: PeerConnection, frame: Frame) -> None:
        if frame.ttl:
            if not self._seen.add(message_id(frame.channel, frame.payload)):
                self.counters.gossip_duplicates += 1
                return
            relay = self._deliver(conn.key, frame.channel, frame.payload)
            if relay is not False and frame.ttl > 1:
                relayed = encode_frame(frame.channel, frame.payload, frame.ttl - 1)
                self.counters.gossip_relayed += self._fan_out(frame.channel, relayed, conn.key)
        else:
            self._deliver(conn.key, frame.channel, frame.payload)

    def _deliver(self, peer_key: bytes, channel: int, payload: bytes) -> bool | None:
        try:
            return self._on_message(peer_key, channel, payload)
        except Exception:
            self.counters.callback_errors += 1
            log.exception("on_message failed for a message on channel %d", channel)
            return None

    # ================================================================ connections

    def _new_handshake(self, *, initiator: bool, expected_key: bytes | None) -> Handshake:
        return Handshake(self.key, self.chain_id, self.genesis_hash, initiator=initiator,
                         permitted=self.permitted, expected_key=expected_key)

    def _connection(self, ws, session, address: str) -> PeerConnection:
        return PeerConnection(ws, session, local_key=self.key.public, address=address, limits=self.limits,
                              peer_rate=self.peer_rate, max_frame_bytes=self.max_frame_bytes,
                              priority=self._priority, counters=self.counters, on_frame=self._dispatch,
                              on_fin=self._peer_finished)

    async def _accept(self, request: web.Request) -> web.StreamResponse:
        if self._stopping:
            raise web.HTTPServiceUnavailable(text="shutting down")
        if len(self._all) >= self.limits.max_connections:
            self.counters.rejected(Reason.BUSY)
            raise web.HTTPServiceUnavailable(text="too many connections")
        ws = web.WebSocketResponse(max_msg_size=self.max_frame_bytes + 1, heartbeat=self.limits.heartbeat_s,
                                   timeout=self.limits.close_timeout_s, compress=False)
        address = _peer_label(request)
        ticket = self._admit(request, ws)
        self._handshaking.add(ws)
        try:
            try:
                await ws.prepare(request)
            except (ConnectionError, OSError, aiohttp.ClientError) as exc:
                # the dialler gave up before this node answered (it was paused or overloaded)
                log.debug("inbound connection from %s went away: %s", address, exc)
                return ws
            session = await self._handshake(ws, address, initiator=False, expected_key=None,
                                            on_hello=lambda key: self._claim(ticket, key))
        finally:
            self._admission.close(ticket)
            self._handshaking.discard(ws)
        if session is not None:
            try:
                await self._serve(self._connection(ws, session, address))
            except Exception:
                self.counters.task_failures += 1
                log.exception("serving the connection from %s failed", address)
        return ws

    def _admit(self, request: web.Request, ws: web.WebSocketResponse) -> Ticket:
        """Count an inbound handshake; close the ones it evicts (see :mod:`node.p2p.admission`)."""
        ticket, evicted = self._admission.open(_peer_ip(request), ws, time.monotonic())
        self._evict(evicted)
        return ticket

    def _claim(self, ticket: Ticket, key: bytes) -> None:
        self._evict(self._admission.claim(ticket, key))

    def _evict(self, tickets: list[Ticket]) -> None:
        for victim in tickets:
            self.counters.handshakes_evicted += 1
            self._spawn(close_ws(victim.handle, CLOSE_REJECTED, Reason.BUSY, self.limits.close_timeout_s))

    async def _handshake(self, ws, address: str, *, initiator: bool, expected_key: bytes | None,
                         on_hello: Callable[[bytes], None] | None = None):
        handshake = self._new_handshake(initiator=initiator, expected_key=expected_key)
        try:
            async with asyncio.timeout(self.limits.handshake_timeout_s):
                return await perform_handshake(ws, handshake, on_hello)
        except HandshakeRejected as exc:
            self._refused(address, exc)
            # tell a peer this node dialled why; a caller that has not proven a permitted key
            # learns only that it was refused
            if exc.reason not in (Reason.REFUSED, Reason.CLOSED):
                await close_ws(ws, CLOSE_REJECTED, exc.reason if initiator else Reason.REFUSED,
                               self.limits.close_timeout_s)
            else:
                await close_ws(ws, CLOSE_SHUTDOWN, "handshake ended", self.limits.close_timeout_s)
        except TimeoutError:
            self._refused(address, HandshakeRejected(Reason.TIMEOUT, "no complete handshake in time"))
            await close_ws(ws, CLOSE_REJECTED, Reason.TIMEOUT, self.limits.close_timeout_s)
        except asyncio.CancelledError:  # stop() while handshaking: do not leave the socket behind
            await close_ws(ws, CLOSE_SHUTDOWN, "shutting down", self.limits.close_timeout_s)
            raise
        return None

    def _refused(self, address: str, exc: HandshakeRejected) -> None:
        self.counters.rejected(exc.reason)
        if exc.reason == Reason.CLOSED:
            log.debug("handshake with %s: %s", address, exc)
            return
        # one warning per claimed key (or remote host) and reason: a redialing peer, or a
        # stranger opening connection after connection, does not flood the log
        who = exc.peer_key.hex() if exc.peer_key is not None else address.rpartition(":")[0]
        self._log_once(who, exc.reason, "handshake with %s failed: %s", address, exc)

    def _log_once(self, who: str, what: str, message: str, *args) -> None:
        """Warn the first time ``who`` fails for ``what``; repeats (a redialing peer) go to debug."""
        mark = (who, what)
        if mark in self._logged:
            log.debug(message, *args)
            return
        self._logged[mark] = None
        if len(self._logged) > 1024:
            self._logged.popitem(last=False)
        log.warning(message, *args)

    async def _dial(self, public: bytes, address: str):
        """Connect to ``address`` and authenticate it as ``public``; the session, or None."""
        assert self._session is not None
        self._outbound_handshakes += 1
        try:
            try:
                async with asyncio.timeout(self.limits.handshake_timeout_s):
                    ws = await self._session.ws_connect(
                        f"http://{address}{PATH}", max_msg_size=self.max_frame_bytes + 1,
                        heartbeat=self.limits.heartbeat_s, compress=0,
                        timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=self.limits.close_timeout_s))
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                self._log_once(address, "unreachable", "cannot reach peer %s: %s", address,
                               exc.__class__.__name__ if not str(exc) else exc)
                return None, None
            session = await self._handshake(ws, address, initiator=True, expected_key=public)
            return ws, session
        finally:
            self._outbound_handshakes -= 1

    def _spawn_dialer(self, public: bytes) -> None:
        task = asyncio.get_running_loop().create_task(self._dial_loop(public), name=f"p2p-dial {public.hex()[:16]}")
        self._dialers[public] = task

        def done(_: asyncio.Task) -> None:
            if self._dialers.get(public) is task:
                del self._dialers[public]
            if task.cancelled() or self._stopping or public not in self._targets:
                return
            # a dialer only returns when its peer is removed or the network stops; anything
            # else is a bug that must not cost the peer for good
            self.counters.task_failures += 1
            log.error("the dialer of peer %s... ended unexpectedly; restarting it", public.hex()[:16],
                      exc_info=task.exception())
            self._spawn_dialer(public)

        task.add_done_callback(done)

    async def _dial_loop(self, public: bytes) -> None:
        """Keep one connection to configured peer ``public``: dial, serve, back off, redial.

        Whatever ends a connection or an attempt (the peer closed, reset, stalled, a write to a
        closing socket, a bug), the loop backs off and dials again while the peer is configured.
        """
        attempt = 0
        if public < self.key.public:
            # give the lower key a head start: if it dials us meanwhile, the pair's race
            # (two connections, one retired) never happens
            await asyncio.sleep(backoff_ms(1, self.reconnect_min_ms, self.reconnect_max_ms, self._rng) / 1000)
        while not self._stopping and public in self._targets:
            try:
                attempt = await self._dial_once(public, attempt)
            except Exception as exc:
                attempt += 1
                self.counters.task_failures += 1
                self._log_once(public.hex(), f"dial-failure {type(exc).__name__}",
                               "connection to peer %s... failed unexpectedly: %r", public.hex()[:16], exc)
            if self._stopping:
                return
            if public not in self._conns:
                await asyncio.sleep(backoff_ms(attempt, self.reconnect_min_ms, self.reconnect_max_ms, self._rng) / 1000)

    async def _dial_once(self, public: bytes, attempt: int) -> int:
        """Wait out the connection held to ``public``, or dial it once; the next attempt number."""
        held = self._conns.get(public)
        if held is not None:
            await held.wait_closed()
            return 0
        address = self._targets[public]
        ws, session = await self._dial(public, address)
        if session is None:
            return attempt + 1
        await self._serve(self._connection(ws, session, address))
        return 0

    async def _serve(self, conn: PeerConnection) -> None:
        """Register ``conn`` under the one-per-pair rule, read it until it ends, unregister it."""
        if self._stopping:
            await conn.close(CLOSE_SHUTDOWN, "shutting down")
            return
        self.counters.handshakes_completed += 1
        self._all.add(conn)
        self._forget_failures(conn.address, conn.key.hex())
        held = self._conns.get(conn.key)
        if held is None:
            self._conns[conn.key] = conn
            conn.start()
            log.info("connected to peer %s... (%s, %s)", conn.key.hex()[:16], conn.address,
                     "outbound" if conn.outbound else "inbound")
            self._peer_event(conn.key, True)
        elif keeps_new(conn.initiator_key, held.initiator_key):
            self._conns[conn.key] = conn
            conn.start()
            conn.adopt(self._retire(held))
        else:
            self._retire(conn)
        try:
            await conn.run()
        finally:
            self._all.discard(conn)
            if self._conns.get(conn.key) is conn:
                del self._conns[conn.key]
                log.info("disconnected from peer %s... (%s)", conn.key.hex()[:16], conn.address)
                self._peer_event(conn.key, False)

    def _retire(self, conn: PeerConnection) -> list[tuple[bool, bytes]]:
        """``conn`` lost the tie-break: FIN it now; it closes when the peer's FIN arrives."""
        self.counters.duplicate_connections += 1
        items = conn.retire()
        self._spawn(self._close_unless(conn, lambda: True, "duplicate connection: no FIN from the peer"))
        return items

    def _peer_finished(self, conn: PeerConnection) -> None:
        """The peer sent FIN on ``conn``: it switched to another connection, which should complete
        here soon; if it does not, ``conn`` is useless (the peer no longer sends on it)."""
        if self._conns.get(conn.key) is conn:
            self._spawn(self._close_unless(conn, lambda: self._conns.get(conn.key) is conn,
                                           "the peer moved to a connection that did not complete"))

    async def _close_unless(self, conn: PeerConnection, still: Callable[[], bool], reason: str) -> None:
        await asyncio.sleep(self.limits.handshake_timeout_s)
        if not conn.closed and still():
            log.info("closing connection to %s: %s", conn, reason)
            await conn.close(CLOSE_DUPLICATE, reason)

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.counters.task_failures += 1
            log.error("a p2p task failed", exc_info=task.exception())

    def _forget_failures(self, *whos: str) -> None:
        """A peer got through: its next failure is news again."""
        for mark in [m for m in self._logged if m[0] in whos]:
            del self._logged[mark]

    def _peer_event(self, public: bytes, connected: bool) -> None:
        if self._on_peer is None:
            return
        try:
            self._on_peer(public, connected)
        except Exception:
            self.counters.callback_errors += 1
            log.exception("on_peer failed")

    # ================================================================ metrics

    @property
    def listener_connections_opened(self) -> int:
        """Sockets accepted by the listener so far, peers' and strangers' alike."""
        return self._listener_guard.count("opened")

    def metrics(self) -> dict[str, int]:
        """Counters and gauges, flat, for the node's ``/metrics``."""
        out = {f"p2p_{name}_total": value for name, value in self.counters.as_dict().items()}
        out.update({f"{name}_total": value for name, value in self._listener_counters.items()})
        out["p2p_listener_connections_open"] = self._listener_guard.open_connections
        out["p2p_peers_connected"] = len(self._conns)
        out["p2p_connections_open"] = len(self._all)
        out["p2p_handshakes_in_progress"] = self._admission.in_progress + self._outbound_handshakes
        # every configured peer has a running dialer, or a peer is lost until a restart
        out["p2p_peers_configured"] = len(self._targets)
        out["p2p_dialers_running"] = sum(1 for key in self._targets if key in self._dialers)
        out["p2p_queued_messages"] = sum(len(c.queue) for c in self._conns.values())
        for reason, count in sorted(self.counters.rejections.items()):
            out[f'p2p_handshakes_rejected_total{{reason="{reason}"}}'] = count
        return out


def _peer_ip(request: web.Request) -> str:
    peer = request.transport.get_extra_info("peername") if request.transport is not None else None
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return request.remote or "unknown"


def _peer_label(request: web.Request) -> str:
    peer = request.transport.get_extra_info("peername") if request.transport is not None else None
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return request.remote or "unknown"
