"""``POST /v1/identify``: 1:N identification for enrolment authorities, on a node they run.

A node run by an enrolment authority can be given that authority's gallery (config section
``[identify]``: ``gallery`` file and the authority's ``key_file``, whose passphrase is the
node's). The route is then served, and only to signed requests of a key registered as an
enrolment authority (domain ``custos/read``, the signature binding the body). The body is JSON::

    {"code": "<256 bytes hex>", "mask": "<256 bytes hex>", "max_shift": 8}
    or {"template": <an open-iris template document>, "max_shift": 8}

and the answer ``{"identity": "<hex>" | null, "shift": n | null, "distance": x | null,
"searched": N}``: the enrolled child the scan unlocks, or none. No secret, pseudonym key or
template leaves the node. The gallery file is re-read when it changes on disk (``custos enrol
child`` adds to it). Search runs in a worker thread, one query at a time.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

from aiohttp import web

from ledger.biometrics import TEMPLATE_BYTES, BiometricError
from ledger.biometrics.open_iris import from_open_iris
from ledger.biometrics.template import pack_bits
from node.api.auth import Authenticator
from node.api.codec import BadRequest, reply
from node.api.policy import Policy
from node.api.recorder import ReadRecorder
from node.api.refusal import forbidden, guarded
from node.client.gallery_file import GalleryFile

log = logging.getLogger("custos.identify")

MAX_BODY = 256 * 1024
MAX_SHIFT_LIMIT = 16


class Identify:
    def __init__(self, auth: Authenticator, policy: Policy, recorder: ReadRecorder, gallery_path: Path,
                 authority_key) -> None:
        self.auth = auth
        self.policy = policy
        self.recorder = recorder
        self.path = Path(gallery_path)
        self.authority_key = authority_key
        self._loaded: tuple[float, int] | None = None
        self._gallery: GalleryFile | None = None
        self._lock = asyncio.Lock()

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/identify", self.identify)]

    def _current(self) -> GalleryFile:
        try:
            stat = self.path.stat()
            stamp = (stat.st_mtime, stat.st_size)
        except FileNotFoundError:
            stamp = None
        if self._gallery is None or stamp != self._loaded:
            self._gallery = GalleryFile.open(self.path, self.authority_key, create=True)
            self._loaded = stamp
        return self._gallery

    def forget(self, identity: bytes) -> bool:
        """Remove an erased child from the gallery, rewriting the file (atomically); True if the
        child was in it. Called by node/erasure.py off the event loop."""
        gallery = self._current()
        if identity not in gallery.gallery:
            return False
        gallery.gallery.remove(identity)
        gallery.gallery.save(self.path, gallery.key)
        self._gallery = None  # re-read on the next query
        return True

    @guarded
    async def identify(self, request: web.Request) -> web.Response:
        body = await request.read()  # read (within the API's body limits) before the handler runs
        if len(body) > MAX_BODY:
            raise BadRequest(f"a scan is at most {MAX_BODY} bytes")
        caller = self.auth.authenticate(request, body)
        if not caller.is_authority:
            raise forbidden(f"{caller.describe()}: identification is for enrolment authorities")
        self.policy.require_purpose(caller)
        code, mask, max_shift = _scan(body)
        async with self._lock:
            loop = asyncio.get_running_loop()
            gallery = await loop.run_in_executor(None, self._current)
            try:
                found = await loop.run_in_executor(None, gallery.gallery.match, code, mask, max_shift)
            except BiometricError as exc:
                raise BadRequest(f"the scan cannot be searched: {exc}") from None
        self.recorder.record(caller, "identify", [found.identity_id] if found else ())
        log.info("identify by %s: %s", caller.describe(), "match" if found else "no match")
        return reply(request, {
            "identity": found.identity_id.hex() if found else None,
            "shift": found.shift if found else None,
            "distance": round(found.distance, 4) if found else None,
            "searched": len(gallery.gallery),
        })


def _scan(body: bytes) -> tuple[bytes, bytes, int]:
    try:
        doc = json.loads(body)
    except ValueError:
        raise BadRequest("the body is JSON: {\"code\", \"mask\"} or {\"template\"}") from None
    if not isinstance(doc, dict):
        raise BadRequest("the body is a JSON object")
    max_shift = doc.get("max_shift", 8)
    if type(max_shift) is not int or not 0 <= max_shift <= MAX_SHIFT_LIMIT:
        raise BadRequest(f"max_shift is an integer in 0..{MAX_SHIFT_LIMIT}")
    if "template" in doc:
        try:
            code_bits, mask_bits = from_open_iris(doc["template"])
        except BiometricError as exc:
            raise BadRequest(str(exc)) from None
        return pack_bits(code_bits), pack_bits(mask_bits), max_shift
    try:
        code, mask = bytes.fromhex(doc["code"]), bytes.fromhex(doc["mask"])
    except (KeyError, TypeError, ValueError):
        raise BadRequest("code and mask are hex strings") from None
    if len(code) != TEMPLATE_BYTES or len(mask) != TEMPLATE_BYTES:
        raise BadRequest(f"code and mask are {TEMPLATE_BYTES} bytes each")
    return code, mask, max_shift
