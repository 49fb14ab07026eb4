"""The operator routes: ``GET /metrics`` and ``GET /readyz`` (with ``/healthz`` on the metrics
listener), served by the API and by the node's separate metrics listener alike.

The metrics listener is meant for a monitoring network only: it answers nothing but these.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from node.api.codec import not_routed, problem
from node.ops.metrics import NodeMetrics
from node.ops.readiness import readiness


class OpsRoutes:
    def __init__(self, metrics: NodeMetrics, *, max_block_age_ms: int,
                 health_checks: list[Callable[[], str | None]] | None = None) -> None:
        self.metrics = metrics
        self.store = metrics.app.store
        self.max_block_age_ms = max_block_age_ms
        #: each returns None, or what makes the node unhealthy (the API's /healthz shares them)
        self.health_checks = health_checks if health_checks is not None else []

    def routes(self, *, with_healthz: bool = False) -> list[web.RouteDef]:
        routes = [web.get("/metrics", self.scrape), web.get("/readyz", self.readyz)]
        if with_healthz:
            routes.append(web.get("/healthz", self.healthz))
        return routes

    async def scrape(self, request: web.Request) -> web.Response:
        body, content_type = self.metrics.render(request.headers.get("Accept", ""))
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def readyz(self, request: web.Request) -> web.Response:
        state = readiness(self.store, self.max_block_age_ms)
        if state.ready:
            return web.json_response(state.to_json())
        return problem(503, "not-ready", "not ready", state.reason, **state.to_json())

    async def healthz(self, request: web.Request) -> web.Response:
        if self.store.damage is not None:
            return problem(503, "storage-damaged", "the chain store is damaged", self.store.damage)
        problems = [p for p in (check() for check in self.health_checks) if p is not None]
        if problems:
            return problem(503, "unhealthy", "the node is unhealthy", "; ".join(problems), height=self.store.height)
        return web.json_response({"ok": True, "height": self.store.height})


@web.middleware
async def _unrouted_as_problems(request: web.Request, handler: Callable) -> web.StreamResponse:
    try:
        return await handler(request)
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed) as exc:
        return not_routed(request, exc)


def metrics_app(ops: OpsRoutes) -> web.Application:
    """The separate listener's application (its errors are problem documents too)."""
    app = web.Application(client_max_size=64 * 1024, middlewares=[_unrouted_as_problems])
    app.add_routes(ops.routes(with_healthz=True))
    return app
