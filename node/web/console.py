"""The border officer's console: a local web page served by the terminal process itself.

Where the terminal key lives: in the terminal process (``custos terminal run --console
127.0.0.1:PORT``), decrypted from its key file as the CLI always did, together with the
card-opening keys and the durable outbox. The browser never holds a terminal key or a card key:
it asks the local process to record a crossing (a card file and a fresh scan), and watches what
the process does (queued, delivered, pending, decided, refused, offline). So a crossing recorded
while no node answers waits in the same durable outbox as one from ``custos terminal cross``, and
is delivered by the same loop when a node is back.

The console listens on the loopback interface only, and every call needs the random token the
process prints once in the console's address (``…/app/officer/#token=…``; the fragment never
leaves the browser): another local user or a web page from elsewhere cannot drive the terminal.
The page and its files are the node's ``/app/`` files with the same strict CSP.

Routes (JSON; ``Authorization: Bearer TOKEN``):

* ``GET /console/api/state``   the terminal (post, key, chain), link state, outbox and recent events
* ``POST /console/api/cross``  multipart ``card``, ``scan`` files, ``direction``, ``destination``,
  ``companion`` (document number, optional): unlock the card, sign, queue, deliver
* ``GET /console/api/events``  server-sent events of everything the terminal does
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import secrets
import tempfile
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from node.web.routes import SECURITY_HEADERS, WebApps, secure

log = logging.getLogger("custos.console")

MAX_UPLOAD = 256 * 1024
RECENT = 200


class Console:
    """``client`` is the running :class:`~node.client.terminal.TerminalClient`; ``card_keys`` its
    card-opening keys; ``wake`` is set to make the delivery loop try the outbox at once."""

    def __init__(self, client, card_keys, wake: asyncio.Event, *, token: str | None = None,
                 max_shift: int = 8) -> None:
        self.client = client
        self.card_keys = card_keys
        self.wake = wake
        self.token = token or secrets.token_urlsafe(24)
        self.max_shift = max_shift
        self.link = "connecting"
        self.recent: deque[dict] = deque(maxlen=RECENT)
        self._subscribers: set[asyncio.Queue] = set()
        self._runner: web.AppRunner | None = None

    # ------------------------------------------------------------------ events
    def publish(self, kind: str, doc: dict) -> None:
        """Every event the terminal prints also goes to the console pages."""
        if kind == "offline":
            self.link = "offline"
        elif kind in ("delivered", "pending", "decision", "closed", "stream"):
            self.link = "online" if kind != "stream" or doc.get("detail", "").startswith("connected") else self.link
        event = {"event": kind, **doc, "at_ms": time.time_ns() // 1_000_000, "link": self.link}
        self.recent.append(event)
        for q in list(self._subscribers):
            if q.qsize() < 1000:
                q.put_nowait(event)

    def tee(self, printer: Callable[[str, dict, str], None]) -> Callable[[str, dict, str], None]:
        def out(kind: str, doc: dict, text: str) -> None:
            printer(kind, doc, text)
            self.publish(kind, doc)

        return out

    # ------------------------------------------------------------------ server
    def app(self) -> web.Application:
        app = web.Application(client_max_size=3 * MAX_UPLOAD)
        app.add_routes([
            web.get("/console/api/state", self.state),
            web.post("/console/api/cross", self.cross),
            web.get("/console/api/events", self.events),
        ])
        app.add_routes(WebApps().routes())
        return app

    async def start(self, host: str, port: int) -> str:
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError("the console listens on the loopback interface only")
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        actual = self._runner.addresses[0][1]
        return f"http://{host}:{actual}/app/officer/#token={self.token}"

    async def stop(self) -> None:
        for q in list(self._subscribers):
            q.put_nowait(None)
        if self._runner is not None:
            await self._runner.cleanup()

    def _check(self, request: web.Request) -> None:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
            raise _json_error(401, "the console token is missing or wrong: open the address the terminal printed")

    # ------------------------------------------------------------------ routes
    async def state(self, request: web.Request) -> web.Response:
        self._check(request)
        return _json(self.snapshot())

    def snapshot(self) -> dict:
        q = self.client.queue
        return {
            "post": self.client.post, "terminal": self.client.key.public.hex(), "chain_id": self.client.chain_id,
            "nodes": self.client.node.urls, "link": self.link,
            "waiting": [{"id": e.request_id.hex(), "queued_ms": e.queued_ms, "attempts": e.attempts,
                         "last_error": e.last_error} for e in q.waiting()],
            "sent": [{"id": s.request_id.hex(), "queued_ms": s.queued_ms, "acked_ms": s.acked_ms, "node": s.node}
                     for s in q.sent()],
            "refused": [{"id": r.request_id.hex(), "rule": r.rule, "detail": r.detail} for r in q.refused()],
            "recent": list(self.recent)[-50:],
        }

    async def cross(self, request: web.Request) -> web.Response:
        self._check(request)
        from ledger.biometrics import BiometricError
        from ledger.errors import CustosError
        from node.cli.options import companion_arg
        from node.client.cards import unlock_files

        form = await request.post()
        card, scan = form.get("card"), form.get("scan")
        direction = str(form.get("direction", ""))
        destination = str(form.get("destination", "")).strip().upper()
        companion_doc = str(form.get("companion", "")).strip() or None
        if not isinstance(card, web.FileField) or not isinstance(scan, web.FileField):
            raise _json_error(400, "send the child's card file and a fresh scan file")
        if direction not in ("exit", "entry") or not 2 <= len(destination) <= 8:
            raise _json_error(400, "direction is exit or entry; destination is a country code")
        with tempfile.TemporaryDirectory() as tmp:
            paths = []
            for name, field in (("card.json", card), ("scan.json", scan)):
                data = field.file.read(MAX_UPLOAD + 1)
                if len(data) > MAX_UPLOAD:
                    raise _json_error(413, f"{name} is too large")
                path = Path(tmp) / name
                path.write_bytes(data)
                paths.append(path)
            try:
                unlocked = await asyncio.get_running_loop().run_in_executor(
                    None, lambda: unlock_files(paths[1], paths[0], self.card_keys, max_shift=self.max_shift))
            except BiometricError as exc:
                self.publish("no-match", {"detail": str(exc)})
                raise _json_error(422, f"no match: the scan does not unlock this card ({exc}); rescan") from None
            except CustosError as exc:
                raise _json_error(400, str(exc)) from None
        try:
            companion = companion_arg(companion_doc, unlocked.pseudonym_key)
        except CustosError as exc:
            raise _json_error(400, str(exc)) from None
        tx = self.client.make_request(unlocked.key, unlocked.identity, direction=direction, destination=destination,
                                      companion=companion)
        self.client.enqueue(tx)
        doc = {"id": tx.id.hex(), "identity": unlocked.identity.hex(), "direction": direction,
               "destination": destination, "companion": companion is not None}
        self.publish("queued", doc)
        self.wake.set()
        return _json(doc, status=202)

    async def events(self, request: web.Request) -> web.StreamResponse:
        self._check(request)
        q: asyncio.Queue = asyncio.Queue()
        self._subscribers.add(q)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        secure(resp)
        await resp.prepare(request)
        try:
            await resp.write(_frame({"event": "hello", "link": self.link}))
            while True:
                try:
                    event = await asyncio.wait_for(q.get(), 15)
                except TimeoutError:
                    await resp.write(b": keepalive\n\n")
                    continue
                if event is None:
                    break
                await resp.write(_frame(event))
        except (ConnectionResetError, RuntimeError):
            pass
        finally:
            self._subscribers.discard(q)
        return resp


def _frame(event: dict) -> bytes:
    return f"event: {event['event']}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n".encode()


def _json(doc: dict, status: int = 200) -> web.Response:
    resp = web.json_response(doc, status=status)
    resp.headers.update(SECURITY_HEADERS)
    return resp


_ERRORS: dict[int, type[web.HTTPException]] = {400: web.HTTPBadRequest, 401: web.HTTPUnauthorized,
                                               413: web.HTTPBadRequest, 422: web.HTTPUnprocessableEntity}


def _json_error(status: int, detail: str) -> web.HTTPException:
    cls = _ERRORS[status]
    return cls(text=json.dumps({"status": cls.status_code, "detail": detail}), content_type="application/json",
               headers=dict(SECURITY_HEADERS))
