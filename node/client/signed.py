"""Signed requests: how a caller proves which key reads a child's records or subscribes to events.

A signed request carries four headers::

    Custos-Key        the caller's Ed25519 public key (64 hex digits)
    Custos-Time       the caller's clock, integer milliseconds since the Unix epoch (UTC)
    Custos-Nonce      16 random bytes (32 hex digits): two requests in one millisecond differ
    Custos-Signature  Ed25519 signature (128 hex digits) over
                      sign_bytes(domain, chain_id, request_digest(...))

    request_digest = SHA-256(canonical encoding of
        ["custos-request/1", METHOD, PATH?QUERY as sent, time, nonce, key, SHA-256(body)])

The domain is ``DOMAIN_READ`` for reads and ``DOMAIN_SUBSCRIBE`` for the event stream, so a
signed read cannot be replayed as a subscription; the chain id binds the network. A node accepts
a time within ``api.read_window_ms`` of its own clock and each (key, nonce) at most once, so a
captured request cannot be replayed later, nor twice within its window.

This module holds the scheme (shared with :mod:`node.api.reads`) and the client side:
:class:`SignedClient` makes signed reads with fail-over and follows the event stream, resuming
with ``Last-Event-ID`` after a broken connection.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
from yarl import URL

from ledger.crypto.keys import DOMAIN_READ, DOMAIN_SUBSCRIBE, SigningKey
from ledger.encoding import encode
from ledger.errors import PROBLEM_BASE
from node.client.http import NodeClient, NodeUnreachable, ProblemError

log = logging.getLogger("custos.client.signed")

HEADER_KEY = "Custos-Key"
HEADER_TIME = "Custos-Time"
HEADER_NONCE = "Custos-Nonce"
HEADER_SIGNATURE = "Custos-Signature"
NONCE_BYTES = 16
SCHEME = "custos-request/1"

__all__ = [
    "DOMAIN_READ",
    "DOMAIN_SUBSCRIBE",
    "SignedClient",
    "StreamEvent",
    "request_digest",
    "sign_request",
]


def request_digest(method: str, path_qs: str, time_ms: int, nonce: bytes, key: bytes, body: bytes) -> bytes:
    """The digest a signed request's signature covers (see the module docstring)."""
    body_hash = hashlib.sha256(body).digest()
    return hashlib.sha256(encode([SCHEME, method.upper(), path_qs, time_ms, nonce, key, body_hash])).digest()


def sign_request(key: SigningKey, chain_id: str, method: str, path_qs: str, *, body: bytes = b"",
                 domain: str = DOMAIN_READ, time_ms: int | None = None, nonce: bytes | None = None) -> dict[str, str]:
    """The four headers that make ``METHOD path_qs`` a request signed by ``key``."""
    t = time.time_ns() // 1_000_000 if time_ms is None else time_ms
    n = secrets.token_bytes(NONCE_BYTES) if nonce is None else nonce
    digest = request_digest(method, path_qs, t, n, key.public, body)
    return {
        HEADER_KEY: key.public.hex(),
        HEADER_TIME: str(t),
        HEADER_NONCE: n.hex(),
        HEADER_SIGNATURE: key.sign(domain, chain_id, digest).hex(),
    }


def path_with_query(path: str, params: dict[str, Any] | None) -> str:
    """``path?query`` exactly as the HTTP client will send it (and so as it must be signed):
    yarl normalises percent-encoding, so the string is passed through it first."""
    clean = {k: v for k, v in (params or {}).items() if v is not None}
    return URL("http://node" + path + ("?" + urlencode(clean) if clean else "")).raw_path_qs


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One server-sent event: its id (a cursor), its type and its JSON data."""

    id: str | None
    type: str
    data: dict
    received_ms: int = field(default=0, compare=False)


class StreamClosed(Exception):
    """The node ended the stream on purpose (``closing``, ``dropped``) or the connection broke."""


class SignedClient:
    """Signed reads and event subscriptions for one key, failing over across ``urls``.

    ``chain_id`` may be left out: it is then read once from the first node that answers (a node
    on another network gains nothing from lying: signatures for its chain id are useless here).
    """

    def __init__(self, urls: list[str] | str, key: SigningKey, *, chain_id: str | None = None,
                 timeout_s: float = 10.0) -> None:
        self.node = NodeClient(urls, timeout_s=timeout_s)
        self.key = key
        self._chain_id = chain_id
        self.clock_offset_ms = 0  # learnt from a node's answer when our clock is off
        self._stream_node = 0  # index of the node the event stream follows

    async def __aenter__(self) -> SignedClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.node.close()

    @property
    def urls(self) -> list[str]:
        return self.node.urls

    async def chain_id(self) -> str:
        if self._chain_id is None:
            self._chain_id = str((await self.node.status())["chain_id"])
        return self._chain_id

    def _now(self) -> int:
        return time.time_ns() // 1_000_000 + self.clock_offset_ms

    async def headers(self, method: str, path_qs: str, *, body: bytes = b"", domain: str = DOMAIN_READ) -> dict:
        return sign_request(self.key, await self.chain_id(), method, path_qs, body=body, domain=domain,
                            time_ms=self._now())

    async def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """A signed GET; raises :class:`ProblemError` when the node refuses it."""
        path_qs = path_with_query(path, params)
        try:
            return await self._get(path_qs)
        except ProblemError as exc:
            if not self._learn_clock(exc):
                raise
        return await self._get(path_qs)  # once more, signed with the node's time

    async def _get(self, path_qs: str) -> Any:
        _, body = await self.node.request("GET", path_qs, headers=await self.headers("GET", path_qs))
        return body

    def _learn_clock(self, exc: ProblemError) -> bool:
        if exc.type != PROBLEM_BASE + "stale-request" or "server_time_ms" not in exc.doc:
            return False
        self.clock_offset_ms = int(exc.doc["server_time_ms"]) - time.time_ns() // 1_000_000
        return True

    # ------------------------------------------------------------------ event stream
    async def events(self, *, cursor: str | None = None, heartbeat_ms: int = 15_000,
                     max_reconnects: int | None = None, reconnect_delay_s: float = 0.5,
                     on_state: Callable[[str], None] | None = None) -> AsyncIterator[StreamEvent]:
        """Follow ``GET /v1/events`` for ever (or ``max_reconnects`` reconnections).

        After a broken connection it reconnects, to the next node if need be, and resumes after
        the last event it yielded. Refusals that a retry cannot fix (401, 403) raise
        :class:`ProblemError`; ``on_state`` hears "connected URL", "reconnecting ..." lines.
        """
        reconnects = 0
        delay = reconnect_delay_s
        while True:
            try:
                async for event in self._stream_once(cursor, heartbeat_ms, on_state):
                    if event.id is not None:
                        cursor = event.id
                    delay = reconnect_delay_s
                    yield event
                reason = "the stream ended"
            except ProblemError as exc:
                if exc.status in (401, 403, 400) and not self._learn_clock(exc):
                    raise
                reason = exc.diagnostics()
                if exc.status >= 500:
                    self._next_stream_node()
            except StreamClosed as exc:
                reason = str(exc)
                if exc.args and "closing" in str(exc):
                    self._next_stream_node()  # that node is shutting down: follow another one
            except (TimeoutError, NodeUnreachable, aiohttp.ClientError, OSError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
                self._next_stream_node()
            reconnects += 1
            if max_reconnects is not None and reconnects > max_reconnects:
                raise NodeUnreachable(f"event stream lost ({reason}); gave up after {max_reconnects} reconnects")
            if on_state is not None:
                on_state(f"reconnecting in {delay:.1f} s ({reason})")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _next_stream_node(self) -> None:
        self._stream_node = (self._stream_node + 1) % len(self.node.urls)

    async def _stream_once(self, cursor: str | None, heartbeat_ms: int,
                           on_state: Callable[[str], None] | None) -> AsyncIterator[StreamEvent]:
        path_qs = path_with_query("/v1/events", {"heartbeat_ms": heartbeat_ms})
        read_timeout = max(3 * heartbeat_ms / 1000, 2.0)
        timeout = aiohttp.ClientTimeout(total=None, connect=3.0, sock_read=read_timeout)
        errors = []
        urls = self.node.urls
        for attempt in range(len(urls)):
            index = (self._stream_node + attempt) % len(urls)
            url = urls[index]
            headers = await self.headers("GET", path_qs, domain=DOMAIN_SUBSCRIBE)
            headers["Accept"] = "text/event-stream"
            if cursor is not None:
                headers["Last-Event-ID"] = cursor
            try:
                resp = await self.node.session.get(url + path_qs, headers=headers, timeout=timeout)
            except (TimeoutError, aiohttp.ClientConnectionError, OSError) as exc:
                errors.append(f"{url}: {type(exc).__name__} {exc}".strip())
                continue
            self._stream_node = index
            async with resp:
                if resp.status >= 400:
                    body = await resp.read()
                    try:
                        doc = json.loads(body)
                    except ValueError:
                        doc = {"title": "error", "detail": body.decode(errors="replace")[:200]}
                    raise ProblemError(resp.status, doc if isinstance(doc, dict) else {"detail": str(doc)})
                if on_state is not None:
                    on_state(f"connected to {url}")
                async for event in parse_sse(resp.content):
                    if event.type in ("closing", "dropped"):
                        raise StreamClosed(f"{url} ended the stream: {event.type}")
                    yield event
            return
        raise NodeUnreachable("; ".join(errors))


async def parse_sse(content: aiohttp.StreamReader) -> AsyncIterator[StreamEvent]:
    """Server-sent events (the WHATWG event-stream format) from a response body."""
    event_id: str | None = None
    event_type = "message"
    data: list[str] = []
    while True:
        line_b = await content.readline()
        if not line_b:
            return
        line = line_b.decode("utf-8", errors="replace").rstrip("\r\n")
        if not line:
            if data:
                try:
                    payload = json.loads("\n".join(data))
                except ValueError:
                    payload = {"text": "\n".join(data)}
                yield StreamEvent(event_id, event_type, payload if isinstance(payload, dict) else {"value": payload},
                                  time.time_ns() // 1_000_000)
            event_id, event_type, data = None, "message", []
            continue
        if line.startswith(":"):
            continue  # a comment: the heartbeat
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data.append(value)
        elif name == "event":
            event_type = value
        elif name == "id":
            event_id = value
