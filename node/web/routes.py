"""Serving the web clients under ``/app/`` with a strict Content-Security-Policy.

Every file is read once from the package's ``static/`` directory when the routes are built, so a
request can only ever name one of those files (no path is joined to a directory at request time).
Every answer carries the same security headers: scripts, styles, images, fetches, the manifest
and the service worker from this origin only; no inline script or style, no framing, no plugins,
no referrer.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from importlib import resources
from pathlib import PurePosixPath

from aiohttp import web

APPS = ("guardian", "officer", "authority")

CSP = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' blob:",
    "connect-src 'self'",
    "manifest-src 'self'",
    "worker-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
])

SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
}

_TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".json": "application/json",
    ".webmanifest": "application/manifest+json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
_SKIP = {".md", ".py"}


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str


def load_static() -> dict[str, StaticFile]:
    """Every servable file of ``static/``, by its path below it (``guardian/app.js``)."""
    files: dict[str, StaticFile] = {}
    root = resources.files("node.web") / "static"

    def walk(node, prefix: PurePosixPath) -> None:
        for item in node.iterdir():
            rel = prefix / item.name
            if item.is_dir():
                walk(item, rel)
                continue
            suffix = PurePosixPath(item.name).suffix
            if suffix in _SKIP or item.name in ("LICENSE",):
                continue
            body = item.read_bytes()
            ctype = _TYPES.get(suffix) or mimetypes.guess_type(item.name)[0] or "application/octet-stream"
            files[str(rel)] = StaticFile(body, ctype, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')

    walk(root, PurePosixPath())
    return files


def secure(resp: web.StreamResponse) -> web.StreamResponse:
    resp.headers.update(SECURITY_HEADERS)
    return resp


class WebApps:
    """The routes: ``/app/`` (an index), ``/app/{guardian,officer,authority}/`` and their files."""

    def __init__(self, files: dict[str, StaticFile] | None = None) -> None:
        self.files = load_static() if files is None else files

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/app", self.redirect_index),
            web.get("/app/", self.index),
            web.get("/app/{path:.+}", self.static),
        ]

    async def redirect_index(self, request: web.Request) -> web.StreamResponse:
        return secure(web.Response(status=302, headers={"Location": "/app/"}))

    async def index(self, request: web.Request) -> web.StreamResponse:
        return self.serve(request, "index.html")

    async def static(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        if path in APPS:
            return secure(web.Response(status=302, headers={"Location": f"/app/{path}/"}))
        if path.endswith("/"):
            path += "index.html"
        return self.serve(request, path)

    def serve(self, request: web.Request, path: str) -> web.StreamResponse:
        item = self.files.get(path)
        if item is None:
            raise web.HTTPNotFound()
        headers = {"ETag": item.etag, "Cache-Control": "no-cache"}
        if path.endswith("sw.js"):
            headers["Service-Worker-Allowed"] = "/app/"
        if request.headers.get("If-None-Match") == item.etag:
            return secure(web.Response(status=304, headers=headers))
        return secure(web.Response(body=item.body, content_type=item.content_type, headers=headers))
