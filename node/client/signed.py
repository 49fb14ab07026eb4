"""The client side of signed reads: :class:`SignedClient` signs each request for the node it
goes to, fails over between nodes, and follows the event stream (resuming with
``Last-Event-ID`` after a broken connection).

The scheme (what a signature binds: node, method, path, query, body, purpose; the headers) is
in :mod:`node.access.signature`; purposes in :mod:`node.access.purpose`. A client learns each
node's id (its public key) from that node's ``GET /v1/status``, over TLS when the node serves
it, and signs for that node only: a request captured on its way is refused by every other node.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
from yarl import URL

from ledger.crypto.keys import DOMAIN_READ, DOMAIN_SUBSCRIBE, SigningKey
from ledger.errors import PROBLEM_BASE
from node.access.purpose import Purpose
from node.access.signature import (
    HEADER_KEY,
    HEADER_NONCE,
    HEADER_PURPOSE,
    HEADER_SIGNATURE,
    HEADER_TIME,
    NONCE_BYTES,
    request_digest,
    sign_request,
)
from node.client.http import NodeClient, NodeUnreachable, ProblemError, is_problem, not_a_node

log = logging.getLogger("custos.client.signed")

__all__ = [
    "DOMAIN_READ",
    "DOMAIN_SUBSCRIBE",
    "HEADER_KEY",
    "HEADER_NONCE",
    "HEADER_PURPOSE",
    "HEADER_SIGNATURE",
    "HEADER_TIME",
    "NONCE_BYTES",
    "SignedClient",
    "StreamEvent",
    "path_with_query",
    "request_digest",
    "sign_request",
]


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
                 timeout_s: float = 10.0, purpose: Purpose | None = None) -> None:
        self.node = NodeClient(urls, timeout_s=timeout_s)
        self.key = key
        self._chain_id = chain_id
        self.purpose = purpose  # stated with every request (Custos-Purpose)
        self.clock_offset_ms = 0  # learnt from a node's answer when our clock is off
        self._stream_node = 0  # index of the node the event stream follows
        self._node_ids: dict[str, bytes] = {}

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

    async def node_id(self, url: str) -> bytes:
        """The public key of the node at ``url`` (its ``node_id``), read once from that node."""
        node = self._node_ids.get(url)
        if node is None:
            status = await self.node.status_at(url)
            try:
                node = bytes.fromhex(str(status["node_id"]))
            except (KeyError, ValueError):
                raise NodeUnreachable(f"{url} names no node id in /v1/status") from None
            if self._chain_id is None:
                self._chain_id = str(status["chain_id"])
            self._node_ids[url] = node
        return node

    async def headers(self, url: str, method: str, path_qs: str, *, body: bytes = b"",
                      domain: str = DOMAIN_READ) -> dict:
        """The signed-request headers for ``METHOD path_qs`` sent to the node at ``url``."""
        node = await self.node_id(url)
        return sign_request(self.key, await self.chain_id(), method, path_qs, node=node, body=body, domain=domain,
                            purpose=self.purpose.header() if self.purpose is not None else None,
                            time_ms=self._now())

    async def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """A signed GET; raises :class:`ProblemError` when the node refuses it."""
        return await self.request("GET", path_with_query(path, params))

    async def request(self, method: str, path_qs: str, *, body: bytes = b"",
                      content_type: str | None = None) -> Any:
        """A signed request (failing over between nodes, each signed for its node); once more
        if the node's clock differs from ours or the node at a URL changed its key."""
        try:
            return await self._request(method, path_qs, body, content_type)
        except ProblemError as exc:
            if not (self._learn_clock(exc) or self._forget_node(exc)):
                raise
        return await self._request(method, path_qs, body, content_type)

    async def _request(self, method: str, path_qs: str, body: bytes, content_type: str | None) -> Any:
        async def sign(url: str) -> dict:
            return await self.headers(url, method, path_qs, body=body)

        headers = {"Content-Type": content_type} if content_type else None
        _, answer = await self.node.request(method, path_qs, data=body or None, headers=headers, sign=sign)
        return answer

    def _learn_clock(self, exc: ProblemError) -> bool:
        if exc.type != PROBLEM_BASE + "stale-request" or "server_time_ms" not in exc.doc:
            return False
        self.clock_offset_ms = int(exc.doc["server_time_ms"]) - time.time_ns() // 1_000_000
        return True

    def _forget_node(self, exc: ProblemError) -> bool:
        """The node that answered says our signature is not for it and names another node id
        than we signed for: the URL now serves another node (a replaced machine); learn again."""
        named = exc.doc.get("node_id")
        url = self.node.current_url
        if exc.type != PROBLEM_BASE + "bad-request-signature" or not isinstance(named, str):
            return False
        if url not in self._node_ids or self._node_ids[url].hex() == named:
            return False
        del self._node_ids[url]
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
            try:
                headers = await self.headers(url, "GET", path_qs, domain=DOMAIN_SUBSCRIBE)
                headers["Accept"] = "text/event-stream"
                if cursor is not None:
                    headers["Last-Event-ID"] = cursor
                resp = await self.node.session.get(url + path_qs, headers=headers, timeout=timeout)
            except (TimeoutError, aiohttp.ClientConnectionError, OSError, NodeUnreachable) as exc:
                errors.append(f"{url}: {type(exc).__name__} {exc}".strip())
                continue
            self._stream_node = index
            async with resp:
                if resp.status >= 400:
                    body = await resp.read()
                    try:
                        doc = json.loads(body)
                    except ValueError:
                        doc = None
                    if not is_problem(doc):
                        raise NodeUnreachable(f"{url}: {not_a_node(resp.status, body, resp.content_type)}")
                    raise ProblemError(resp.status, doc)
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
