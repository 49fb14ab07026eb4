"""Open connections of an aiohttp listener, bounded in number and in idle time.

:class:`ConnectionGuard` is the bookkeeping (time passed in, no sockets): every connection is
*idle* (no request being handled) or *busy*. An idle connection must show the first byte of
its next request within ``idle_timeout_s`` and that request's complete headers within
``header_timeout_s`` of its first byte, or it is closed. At most ``max_connections`` are open:
a newcomer evicts the connection idle the longest, or is refused if every connection is busy.
A caller who opens connections and sends nothing (or half a header line) holds each for
seconds, and can push out only connections that are idle themselves: an honest client sends
its request as soon as it connects.

Busy connections are the handlers' business: request bodies have their own deadline
(:mod:`node.edge.bodies`); a submission that waits for its commit or an event stream is busy
as long as it is served.

:class:`GuardedRunner` is an ``aiohttp.web.AppRunner`` whose connections the guard watches.
It also answers what the HTTP parser refuses (a bad request line, an oversized header) with
``error_response`` instead of aiohttp's text/plain page, and logs those at debug level: a
malformed request is the caller's fault and costs no traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler

from node.edge.errorlog import ThrottledLog

log = logging.getLogger("custos.edge")

#: bytes read from a socket per call (the body reader and aiohttp's flow control do the rest)
RECEIVE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    max_connections: int = 1024
    #: an idle connection must start its next request within this (longer than clients keep an
    #: idle connection for reuse, or a client could send on one the node is just closing)
    idle_timeout_s: float = 60.0
    #: a request's headers must be complete within this of its first byte
    header_timeout_s: float = 5.0
    #: how often the guard looks for connections over their time
    sweep_s: float = 0.5

    def __post_init__(self) -> None:
        if self.max_connections < 1 or min(self.idle_timeout_s, self.header_timeout_s, self.sweep_s) <= 0:
            raise ValueError("connection limits must be positive")


@dataclass(slots=True)
class _Conn:
    opened_at: float
    #: when the connection last became idle; None while a request is handled
    idle_since: float | None
    #: first byte of the next request, while idle
    first_byte_at: float | None = None


class ConnectionGuard:
    """Counts and times the connections of one listener. ``close(conn)`` is how it closes one."""

    def __init__(self, limits: ConnectionLimits = ConnectionLimits(), *, clock: Callable[[], float] = time.monotonic,
                 close: Callable[[Any], None] = lambda conn: conn.force_close(),
                 counters: MutableMapping[str, int] | None = None, name: str = "http") -> None:
        self.limits = limits
        self._clock = clock
        self._close = close
        self._conns: dict[Any, _Conn] = {}
        #: ``{name}_connections_{opened,evicted,refused,idle_timeouts,header_timeouts}``, kept in
        #: ``counters`` (the node's metrics counters, so a scrape shows them)
        self.counters: MutableMapping[str, int] = counters if counters is not None else {}
        self._name = name

    def _count(self, what: str) -> None:
        key = f"{self._name}_connections_{what}"
        self.counters[key] = self.counters.get(key, 0) + 1

    def count(self, what: str) -> int:
        return self.counters.get(f"{self._name}_connections_{what}", 0)

    def __len__(self) -> int:
        return len(self._conns)

    def opened(self, conn: Any) -> None:
        """A new connection: admit it, evicting the longest-idle one if the cap is reached."""
        self._count("opened")
        now = self._clock()
        if len(self._conns) >= self.limits.max_connections:
            idle = [(c.idle_since, key) for key, c in self._conns.items() if c.idle_since is not None]
            if not idle:
                self._count("refused")
                self._close(conn)
                return
            _, victim = min(idle, key=lambda pair: pair[0])
            self._count("evicted")
            self.closed(victim)
            self._close(victim)
        self._conns[conn] = _Conn(opened_at=now, idle_since=now)

    def closed(self, conn: Any) -> None:
        self._conns.pop(conn, None)

    def received(self, conn: Any) -> None:
        """Bytes arrived on ``conn``."""
        c = self._conns.get(conn)
        if c is not None and c.idle_since is not None and c.first_byte_at is None:
            c.first_byte_at = self._clock()

    def busy(self, conn: Any) -> None:
        """A request's headers are in and its handler runs."""
        c = self._conns.get(conn)
        if c is not None:
            c.idle_since = None
            c.first_byte_at = None

    def idle(self, conn: Any) -> None:
        """The handler returned: the connection waits for its next request."""
        c = self._conns.get(conn)
        if c is not None:
            c.idle_since = self._clock()
            c.first_byte_at = None

    def sweep(self) -> int:
        """Close every idle connection over its time; how many were closed."""
        now = self._clock()
        expired = []
        for key, c in self._conns.items():
            if c.idle_since is None:
                continue
            if c.first_byte_at is not None:
                if now - c.first_byte_at > self.limits.header_timeout_s:
                    expired.append((key, "header_timeouts"))
            elif now - c.idle_since > self.limits.idle_timeout_s:
                expired.append((key, "idle_timeouts"))
        for key, counter in expired:
            self._count(counter)
            self.closed(key)
            self._close(key)
        return len(expired)

    @property
    def open_connections(self) -> int:
        return len(self._conns)


class _GuardedHandler(RequestHandler):
    """aiohttp's per-connection protocol, reporting to a :class:`ConnectionGuard`."""

    def __init__(self, manager: Any, *, guard: ConnectionGuard, error_response: Callable[[int, str], web.Response],
                 errors: ThrottledLog, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.guard = guard
        self._error_response = error_response
        self._errors = errors

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if hasattr(transport, "max_size"):
            # asyncio reads up to 256 KiB per call: a caller pushing a body we will refuse
            # would make every connection cost that much before its headers are even looked at
            transport.max_size = RECEIVE_BYTES
        super().connection_made(transport)
        self.guard.opened(self)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.guard.closed(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.guard.received(self)
        super().data_received(data)

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if isinstance(exc, HttpProcessingError) or 400 <= status < 500:
            log.debug("refused a malformed request from %s: %s", request.remote, exc or message)
            detail = (exc.message if isinstance(exc, HttpProcessingError) else message) or "malformed request"
        else:
            self._errors.exception(f"handler {type(exc).__name__}", "error handling a request from %s",
                                   request.remote, exc_info=exc)
            detail = "the node failed to serve this request"
        if request.writer.output_size > 0:
            raise ConnectionError("a response was sent already; cannot send another with the error")
        response = self._error_response(status, str(detail)[:200])
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kw: Any) -> None:
        exc_info = kw.get("exc_info")
        key = type(exc_info).__name__ if isinstance(exc_info, BaseException) else "protocol"
        self._errors.exception(f"protocol {key}", *args, exc_info=exc_info or True)


def text_error(status: int, detail: str) -> web.Response:
    return web.Response(status=status, text=detail, content_type="text/plain")


class GuardedRunner(web.AppRunner):
    """An AppRunner whose connections ``guard`` bounds; call :meth:`start_sweeping` once started."""

    def __init__(self, app: web.Application, guard: ConnectionGuard, *,
                 error_response: Callable[[int, str], web.Response] = text_error,
                 errors: ThrottledLog | None = None, **kwargs: Any) -> None:
        # aiohttp reads and discards for up to 10 s whatever body a handler left unread, in a
        # task that outlives the connection, buffer and all: a refused upload ends at once
        kwargs.setdefault("lingering_time", 0)
        super().__init__(app, **kwargs)
        self.guard = guard
        self._error_response = error_response
        self._errors = errors or ThrottledLog(log)
        self._sweeper: asyncio.Task | None = None

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        loop = asyncio.get_running_loop()
        guard, error_response, errors = self.guard, self._error_response, self._errors
        options = dict(getattr(server, "_kwargs", {}))  # what aiohttp would pass its own protocol

        def factory() -> RequestHandler:
            return _GuardedHandler(server, guard=guard, error_response=error_response, errors=errors,
                                   loop=loop, **options)

        return _Factory(server, factory)  # type: ignore[return-value]

    def start_sweeping(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep(), name="edge-sweep")

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.guard.limits.sweep_s)
            try:
                self.guard.sweep()
            except Exception:  # the sweep must outlive any one bad connection
                self._errors.exception("sweep", "the connection sweep failed")

    async def cleanup(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        await super().cleanup()


class _Factory:
    """The server as the event loop sees it: calling it makes a guarded protocol; everything
    else (shutdown, the connection list) is the aiohttp server's."""

    def __init__(self, server: web.Server, factory: Callable[[], RequestHandler]) -> None:
        self._server = server
        self._factory = factory

    def __call__(self) -> RequestHandler:
        return self._factory()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


@web.middleware
async def busy_middleware(request: web.Request, handler: Callable) -> web.StreamResponse:
    """Mark the connection busy while its request is handled (outermost middleware)."""
    protocol = request.protocol
    guard: ConnectionGuard | None = getattr(protocol, "guard", None)
    if guard is None:
        return await handler(request)
    guard.busy(protocol)
    try:
        return await handler(request)
    finally:
        guard.idle(protocol)
