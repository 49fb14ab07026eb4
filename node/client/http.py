"""An asynchronous HTTP client for the node API, with fail-over between several nodes.

Errors come back typed: :class:`NodeUnreachable` when no configured node answers,
:class:`ProblemError` carrying the RFC 9457 problem document when a node refuses a request.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import msgpack

from ledger.errors import PROBLEM_BASE, CustosError
from node.client.tls import client_context

MSGPACK = "application/msgpack"


class NodeUnreachable(CustosError):
    code = "unreachable"


class ProblemError(CustosError):
    """A node answered with a problem document."""

    code = "problem"

    def __init__(self, status: int, doc: dict) -> None:
        self.status = status
        self.doc = doc
        self.type = str(doc.get("type", ""))
        self.rule = doc.get("rule") or self.type.removeprefix(PROBLEM_BASE)
        super().__init__(f"{status} {doc.get('title', '')}: {doc.get('detail', '')}".strip())

    def diagnostics(self) -> str:
        what = str(self.rule or self.doc.get("title") or f"HTTP {self.status}")
        said = str(self.doc.get("detail") or self.doc.get("title") or "")
        return f"{what}: {said}" if said and said != what else what


class NodeClient:
    """Talks to the first node of ``urls`` that answers; moves on to the next on failure."""

    def __init__(self, urls: list[str] | str, *, timeout_s: float = 10.0) -> None:
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        if not self.urls:
            raise ValueError("at least one node URL is needed")
        self.timeout = aiohttp.ClientTimeout(total=timeout_s, connect=min(3.0, timeout_s))
        self._session: aiohttp.ClientSession | None = None
        self._current = 0

    async def __aenter__(self) -> NodeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            # https:// nodes are verified against the system's CAs and those trusted here
            connector = aiohttp.TCPConnector(ssl=client_context())
            self._session = aiohttp.ClientSession(timeout=self.timeout, connector=connector)
        return self._session

    @property
    def current_url(self) -> str:
        return self.urls[self._current]

    @property
    def current_index(self) -> int:
        return self._current

    def use(self, index: int) -> None:
        """Ask node ``index`` first from now on (a light client moving past a node that could
        not prove its answer)."""
        self._current = index % len(self.urls)

    async def request(self, method: str, path: str, *, data: bytes | None = None, json_body: Any = None,
                      params: dict | None = None, headers: dict | None = None, accept_msgpack: bool = False,
                      timeout_s: float | None = None,
                      sign: Callable[[str], Awaitable[dict]] | None = None) -> tuple[int, Any]:
        """Send to the current node, failing over on connection errors. Returns (status, body).

        ``sign(url)`` adds headers made for the node at ``url`` (a signed request binds the node
        it goes to, so each node of a fail-over gets its own signature)."""
        hdrs = dict(headers or {})
        if accept_msgpack:
            hdrs["Accept"] = MSGPACK
        if data is not None:
            hdrs.setdefault("Content-Type", MSGPACK)
        # never None: aiohttp reads ``timeout=None`` as "no time limit", not as the session's
        timeout = aiohttp.ClientTimeout(total=timeout_s) if timeout_s else self.timeout
        errors = []
        for attempt in range(len(self.urls)):
            url = self.urls[(self._current + attempt) % len(self.urls)]
            try:
                sent = hdrs if sign is None else {**hdrs, **await sign(url)}
                async with self.session.request(method, url + path, data=data, json=json_body, params=params,
                                                headers=sent, timeout=timeout) as resp:
                    body = await resp.read()
                    ctype = resp.content_type
            except (TimeoutError, aiohttp.ClientConnectionError, OSError, NodeUnreachable) as exc:
                errors.append(f"{url}: {type(exc).__name__} {exc}".strip())
                continue
            parsed = _parse(body, ctype)
            if resp.status >= 400 and not is_problem(parsed):
                # not a Custos node's refusal (a node's is always a problem document): a proxy's
                # error page, another server on that port, an empty 500; try the next node
                errors.append(f"{url}: {not_a_node(resp.status, body, ctype)}")
                continue
            self._current = (self._current + attempt) % len(self.urls)
            if resp.status >= 400:
                raise ProblemError(resp.status, parsed)
            return resp.status, parsed
        raise NodeUnreachable("; ".join(errors))

    # ---- conveniences
    async def status(self) -> dict:
        """``GET /v1/status`` of the first node that answers; NodeUnreachable if what answered is not
        a Custos node's status."""
        doc = (await self.request("GET", "/v1/status"))[1]
        if not is_status(doc):
            raise NodeUnreachable(f"{self.current_url} is not a Custos node (its /v1/status is not a node's status)")
        return doc

    async def status_at(self, url: str) -> dict:
        """``GET /v1/status`` of the node at ``url`` only (no fail-over)."""
        try:
            async with self.session.get(url + "/v1/status") as resp:
                body = await resp.read()
                parsed = _parse(body, resp.content_type)
        except (TimeoutError, aiohttp.ClientConnectionError, OSError) as exc:
            raise NodeUnreachable(f"{url}: {type(exc).__name__} {exc}".strip()) from None
        if resp.status != 200:
            raise NodeUnreachable(f"{url} answered /v1/status with {resp.status}")
        if not is_status(parsed):
            raise NodeUnreachable(f"{url} is not a Custos node (its /v1/status is not a node's status)")
        return parsed

    async def submit(self, raw: bytes, *, wait: bool = False, timeout_ms: int | None = None) -> dict:
        params = {}
        if wait:
            params["wait"] = "commit"
            if timeout_ms is not None:
                params["timeout_ms"] = str(timeout_ms)
        extra = (timeout_ms or 30_000) / 1000 + 5 if wait else None
        return (await self.request("POST", "/v1/txs", data=raw, params=params, timeout_s=extra))[1]

    async def submit_batch(self, raws: list[bytes]) -> list[dict]:
        _, body = await self.request("POST", "/v1/txs/batch", data=msgpack.packb(raws, use_bin_type=True),
                                     accept_msgpack=True)
        return body["results"]

    async def tx(self, tx_id: bytes) -> dict:
        return (await self.request("GET", f"/v1/txs/{tx_id.hex()}"))[1]

    async def block(self, height: int | str) -> dict:
        return (await self.request("GET", f"/v1/blocks/{height}"))[1]


def is_problem(doc: Any) -> bool:
    """Whether ``doc`` is a Custos node's problem document (RFC 9457, with a Custos problem type)."""
    return isinstance(doc, dict) and isinstance(doc.get("type"), str) and doc["type"].startswith(PROBLEM_BASE)


def is_status(doc: Any) -> bool:
    """Whether ``doc`` has the shape of a Custos node's ``/v1/status``: a chain id and a height."""
    return (isinstance(doc, dict) and isinstance(doc.get("chain_id"), str) and bool(doc["chain_id"])
            and type(doc.get("height")) is int)


def not_a_node(status: int, body: bytes, ctype: str) -> str:
    """One line for an error answer that is not a problem document: what came back, never the body."""
    what = "an empty body" if not body else f"{len(body)} bytes of {ctype or 'unknown type'}"
    return f"answered HTTP {status} with {what}, not a Custos problem document (not a Custos node?)"


def _parse(body: bytes, ctype: str) -> Any:
    if ctype == MSGPACK:
        try:
            return msgpack.unpackb(body, raw=False)
        except Exception:
            return body
    if ctype in ("application/json", "application/problem+json"):
        try:
            return json.loads(body)
        except ValueError:
            return body.decode(errors="replace")
    return body.decode(errors="replace")
