"""Request bodies: a size limit per route, a deadline, and a budget for all of them at once.

:func:`body_middleware` reads a request's whole body before its handler runs (handlers then
``await request.read()`` as usual and get the bytes at once):

* a body over the route's limit is refused (413) before a byte of it is read when its length
  is declared, or as soon as it passes the limit when it is chunked;
* a body must arrive within ``timeout_s`` (408), so a caller cannot keep a buffer open by
  trickling it;
* large bodies are read no faster than ``large_rate`` bytes per second in all: callers who
  push large bodies as fast as they can do not take the event loop from everyone else;
* every body being received reserves its declared length (or its route's limit) from one
  :class:`BodyBudget`; when the budget is spent, more bodies are refused (503) unread. The
  memory that bodies in flight can take is the budget, whatever the number of callers.

A caller that goes away in the middle of its body leaves nothing behind. (aiohttp keeps the
connection's error on the request's stream; once raised, its traceback points back at the
stream through the reading frames, a cycle only the garbage collector's oldest generation
frees, and a node tuned to collect that generation rarely kept every abandoned upload. The
traceback is dropped here, so plain reference counting frees the partial body at once.)

Those refusals close the connection: the rest of the body is not read. Handlers get the body
with ``await request.read()``; the request's stream (``request.content``) is spent by then.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp
from aiohttp import web

#: ``refuse(status, code, title, detail)``: the response for a refused body
Refuse = Callable[[int, str, str, str], web.Response]


class BodyBudget:
    """Bytes of request bodies that may be in memory at once, in two pools: small bodies (a
    transaction, a signed read's) never wait behind large ones (batches), so callers who
    send large bodies, however many, take at most ``large`` bytes and leave the small pool to
    everyone else."""

    def __init__(self, *, small: int, large: int, small_body: int = 64 * 1024) -> None:
        if small < small_body or large < 1:
            raise ValueError("a body budget must hold at least one body of each kind")
        self.small_body = small_body
        self.limits = {False: small, True: large}
        self.held = {False: 0, True: 0}
        self.refused = 0

    def reserve(self, size: int) -> bool:
        large = size > self.small_body
        if self.held[large] + size > self.limits[large]:
            self.refused += 1
            return False
        self.held[large] += size
        return True

    def release(self, size: int) -> None:
        large = size > self.small_body
        self.held[large] = max(0, self.held[large] - size)


def route_of(request: web.Request) -> str | None:
    """The matched route's path pattern (``/v1/txs/{id}``), or None."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else None


def body_middleware(*, limit_for: Callable[[web.Request], int], budget: BodyBudget, timeout_s: float,
                    refuse: Refuse, large_rate: float = 32 * 1024 * 1024) -> Callable:
    """``large_rate``: bytes per second that all large bodies together are read at, at most."""
    throttle = Throughput(large_rate)

    @web.middleware
    async def middleware(request: web.Request, handler: Callable) -> web.StreamResponse:
        if not request.body_exists:
            return await handler(request)
        limit = limit_for(request)
        declared = request.content_length
        if declared is not None and declared > limit:
            return _unread(request, refuse(413, "too-large", "request body too large",
                                           f"this route takes at most {limit} bytes"))
        size = declared if declared is not None else limit
        if not budget.reserve(size):
            return _unread(request, refuse(503, "busy", "too many uploads in progress", "try again in a few seconds"))
        try:
            failure = await _read_all(request, timeout_s, limit, refuse,
                                      throttle if size > budget.small_body else None)
            if failure is not None:
                return _closing(failure)
            return await handler(request)
        finally:
            budget.release(size)

    return middleware


async def _read_all(request: web.Request, timeout_s: float, limit: int, refuse: Refuse,
                    throttle: Throughput | None) -> web.Response | None:
    """Read the body into the request; None, or the response that refuses it.

    The chunks are joined once at the end (no buffer grown by copying); a large body is read
    no faster than ``throttle`` allows, so the socket's own flow control holds its sender back
    instead of the event loop spending its time on one caller's bytes."""
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                chunk = await request.content.readany()
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    return refuse(413, "too-large", "request body too large", f"this route takes at most {limit} bytes")
                chunks.append(chunk)
                if throttle is not None:
                    await throttle.spend(len(chunk))
    except TimeoutError as exc:
        _forget(exc)
        return refuse(408, "request-timeout", "request body too slow", f"a body must arrive within {timeout_s:g} s")
    except web.RequestPayloadError as exc:  # a Content-Encoding whose bytes do not decode, say
        _forget(exc)
        return refuse(400, "bad-body", "unreadable request body",
                      "the body does not decode as its Content-Encoding or chunked framing says")
    except (ConnectionError, OSError, aiohttp.ClientError, aiohttp.http_exceptions.HttpProcessingError) as exc:
        _forget(exc)
        return refuse(400, "incomplete-body", "incomplete request body", "the connection ended inside the body")
    except RuntimeError as exc:  # aiohttp's reader, when the connection closed while it waited
        if str(exc) != "Connection closed.":
            raise
        _forget(exc)
        return refuse(400, "incomplete-body", "incomplete request body", "the connection ended inside the body")
    # what ``request.read()`` returns from now on (aiohttp keeps a read body there)
    request._read_bytes = b"".join(chunks)
    return None


class Throughput:
    """Bytes per second shared by every reader that spends from it (a token bucket)."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else rate / 4
        self._tokens = self.burst
        self._last = time.monotonic()

    async def spend(self, size: int) -> None:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= size
        if self._tokens < 0:
            await asyncio.sleep(-self._tokens / self.rate)


def _forget(exc: BaseException) -> None:
    """Drop what ties an exception to the frames that read the body (see the module notes)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc.__traceback__ = None
        exc = exc.__context__ or exc.__cause__  # type: ignore[assignment]


def _unread(request: web.Request, response: web.Response) -> web.Response:
    """Refuse a body without reading it: stop reading the socket, answer, close."""
    transport = request.transport
    if transport is not None:
        transport.pause_reading()
    return _closing(response)


def _closing(response: web.Response) -> web.Response:
    response.force_close()
    return response
