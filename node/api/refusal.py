"""Refusals of signed requests, as RFC 9457 problem documents with a stable ``type``.

Types (the last segment of ``type``): ``unsigned-request`` (401), ``malformed-signed-request``
(400), ``stale-request`` (401, with ``server_time_ms``), ``bad-request-signature`` (401),
``replayed-request`` (401), ``too-many-requests`` (429), ``revoked-key`` (403), ``forbidden``
(403), ``purpose-required`` (400), ``bad-purpose`` (400), ``purpose-not-allowed`` (403),
``erased`` (410), ``busy`` (503).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from aiohttp import web

from node.api.codec import BadRequest, problem

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Refused(Exception):
    """A signed request the node will not serve; leaves as a problem document."""

    def __init__(self, status: int, code: str, title: str, detail: str, **extra: object) -> None:
        super().__init__(detail)
        self.status, self.code, self.title, self.extra = status, code, title, extra

    def response(self) -> web.Response:
        resp = problem(self.status, self.code, self.title, str(self), **self.extra)
        if self.status == 401:
            resp.headers["WWW-Authenticate"] = 'Custos-Signature realm="custos"'
        return resp


def forbidden(detail: str) -> Refused:
    return Refused(403, "forbidden", "no role that may read this", detail)


def erased(what: str) -> Refused:
    """The child's records were erased (a tombstone stands in the state)."""
    return Refused(410, "erased", "erased", f"{what}: the child's records were erased by order or retention")


def guarded(handler: Callable) -> Callable:
    """Turn :class:`Refused` and :class:`BadRequest` into problem documents."""

    @functools.wraps(handler)
    async def wrapper(self, request: web.Request) -> web.StreamResponse:
        try:
            return await handler(self, request)
        except Refused as exc:
            return exc.response()
        except BadRequest as exc:
            return problem(exc.status, exc.code, "bad request", str(exc))

    return wrapper
