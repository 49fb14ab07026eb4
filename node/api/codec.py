"""Request and response bodies: JSON or msgpack, problem details (RFC 9457) for errors."""

from __future__ import annotations

import json
import re
from typing import Any

import msgpack
from aiohttp import web

from ledger.errors import PROBLEM_BASE, CustosError, RejectedTransaction
from ledger.tx.envelope import MAX_TX_BYTES

MSGPACK = "application/msgpack"
PROBLEM_JSON = "application/problem+json"


def jsonable(value: Any) -> Any:
    """Plain values with bytes rendered as lowercase hex."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def wants_msgpack(request: web.Request) -> bool:
    return MSGPACK in request.headers.get("Accept", "")


def reply(request: web.Request, body: Any, status: int = 200) -> web.Response:
    """JSON by default; msgpack (bytes kept raw) when the client accepts it."""
    if wants_msgpack(request):
        return web.Response(body=msgpack.packb(body, use_bin_type=True), status=status, content_type=MSGPACK)
    return web.Response(text=json.dumps(jsonable(body), separators=(",", ":")), status=status,
                        content_type="application/json")


def problem(status: int, code: str, title: str, detail: str = "", **extra: Any) -> web.Response:
    body = {"type": PROBLEM_BASE + code, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(jsonable(extra))
    return web.Response(text=json.dumps(body), status=status, content_type=PROBLEM_JSON)


def rejection(exc: RejectedTransaction, status: int = 422) -> web.Response:
    return problem(status, exc.rule, "transaction rejected", str(exc), rule=exc.rule)


def not_routed(request: web.Request, exc: web.HTTPNotFound | web.HTTPMethodNotAllowed) -> web.Response:
    """A path no route serves (404), or a method its route does not take (405, with the Allow
    header naming those it does: RFC 9110 15.5.6), as a problem document."""
    if isinstance(exc, web.HTTPMethodNotAllowed):
        response = problem(405, "method-not-allowed", "method not allowed", request.method)
        response.headers["Allow"] = ", ".join(sorted(exc.allowed_methods))
        return response
    return problem(404, "not-found", "no such resource", request.path)


def error(exc: CustosError, status: int) -> web.Response:
    return problem(status, exc.code, type(exc).__name__, str(exc))


class BadRequest(Exception):
    def __init__(self, detail: str, code: str = "bad-request", status: int = 400) -> None:
        super().__init__(detail)
        self.code, self.status = code, status


def hex_arg(value: str, size: int, what: str) -> bytes:
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise BadRequest(f"{what} must be hex") from None
    if len(raw) != size:
        raise BadRequest(f"{what} must be {size} bytes ({2 * size} hex digits)")
    return raw


#: an integer as callers write it: ASCII digits, an optional minus, nothing else (Python's
#: ``int`` would also take ``1_0``, spaces and digits of other scripts)
_INTEGER = re.compile(r"-?[0-9]{1,19}")


def parse_int(text: str, what: str, *, lo: int = 0, hi: int = 2**63 - 1) -> int:
    """``text`` as an integer in ``lo..hi``, or :class:`BadRequest` naming ``what``."""
    if not _INTEGER.fullmatch(text):
        raise BadRequest(f"{what} must be an integer written in ASCII digits")
    value = int(text)
    if not lo <= value <= hi:
        raise BadRequest(f"{what} must lie in {lo}..{hi}")
    return value


def int_arg(request: web.Request, name: str, default: int | None = None, *, lo: int = 0,
            hi: int = 2**63 - 1) -> int:
    raw = request.query.get(name)
    if raw is None:
        if default is None:
            raise BadRequest(f"query parameter {name!r} is required")
        return default
    return parse_int(raw, f"query parameter {name!r}", lo=lo, hi=hi)


async def read_tx_body(request: web.Request, max_bytes: int = 2 * MAX_TX_BYTES) -> bytes:
    """A transaction as raw msgpack bytes, or JSON ``{"tx": "<hex>"}``."""
    if (request.content_length or 0) > max_bytes:
        raise BadRequest(f"a transaction body is at most {max_bytes} bytes", "too-large", 413)
    body = await request.read()
    if len(body) > max_bytes:
        raise BadRequest(f"a transaction body is at most {max_bytes} bytes", "too-large", 413)
    ctype = request.content_type
    if ctype == "application/json":
        try:
            doc = json.loads(body)
            return bytes.fromhex(doc["tx"])
        except (ValueError, KeyError, TypeError, RecursionError):
            raise BadRequest('a JSON submission is {"tx": "<hex of the signed transaction>"}') from None
    if not body:
        raise BadRequest("empty body")
    return body
