"""Signed reads of a child's records: who may read what, and the routes that serve it.

Every route here needs a signed request (the scheme is in :mod:`node.client.signed`); an
anonymous caller gets 401. Then a role decides, read from the committed state:

==============================  =============================================================
route                           who may read it
==============================  =============================================================
``/v1/identities/{id}``         the child's guardians, enrolment authorities
``/v1/identities/{id}/requests`` the child's guardians, enrolment authorities
``/v1/requests/{id}``           the child's guardians, enrolment authorities, the terminal that
                                submitted it
``/v1/consents/{id}``           the child's guardians, enrolment authorities
``/v1/alerts``                  enrolment authorities; a terminal for its own post only
``/v1/guardians/{key}/pending`` that guardian; enrolment authorities
``/v1/terminals/{key}/requests`` that terminal; enrolment authorities
``/v1/access/whoami``           any signed caller (its own roles and wards, and whether it
                                reads integrity data)
==============================  =============================================================

Auditors hold no role here: they verify integrity data and never need a child's records. The
core API (:mod:`node.api.server`) serves integrity data in two views. Anyone gets what checks
hashes, roots and certificates (headers, transaction ids and leaf hashes, commits, inclusion
and consistency proofs); the transactions' bytes, which name a child's pseudonymous id, posts,
times, companions and guardians' keys, go only to *integrity readers* through signed requests:

* registered auditors and enrolment authorities (roles in the state),
* members of the governance council (the ``council`` record),
* node keys: the validators of the coming height, and the peers and observers this node's
  ``[p2p]`` config names (``peers``, ``allow``).

A refusal does not reveal whether the record exists: a caller without a role for a child gets
403 whether or not the child is enrolled, and only enrolment authorities see 404. (A request id
is a transaction id, whose existence the core API tells anyone, so an unknown request is 404 for
every signed caller.)

Problem ``type``s (stable): ``unsigned-request`` (401), ``malformed-signed-request`` (400),
``stale-request`` (401, with ``server_time_ms``), ``bad-request-signature`` (401),
``replayed-request`` (401), ``revoked-key`` (403), ``forbidden`` (403), ``busy`` (503).
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from aiohttp import web

from ledger.crypto.keys import DOMAIN_READ, verify
from ledger.errors import CustosError
from ledger.rules.validators import validator_set_at
from ledger.state.records import (
    ALERT,
    CONSENT,
    COUNCIL,
    IDENTITY_RECORD,
    K_COUNCIL,
    KEY_ROLE,
    P_ALERT,
    PENDING,
    POST_RECORD,
    REQUEST,
    Consent,
    Identity,
    KeyRole,
    Request,
    be64,
    consent_by_id,
    k_alert,
    k_consent,
    k_identity,
    k_identity_consent,
    k_pending,
    k_post,
    k_request,
    k_revoked,
    k_role,
    k_ward,
    load,
    request_by_id,
    split_time_key,
)
from ledger.state.view import prefix_end, scan_prefix
from ledger.tx.bodies import ROLE_AUDITOR, ROLE_AUTHORITY, ROLE_TERMINAL
from node.api.codec import BadRequest, hex_arg, int_arg, problem, reply
from node.api.index import RequestIndex
from node.app import NodeApp
from node.client.signed import (
    HEADER_KEY,
    HEADER_NONCE,
    HEADER_SIGNATURE,
    HEADER_TIME,
    NONCE_BYTES,
    request_digest,
)

log = logging.getLogger("custos.reads")

MAX_LIST = 100
MAX_ALERTS = 1000
MAX_ALERT_SCAN = 100_000
INTEGRITY_READERS = "auditors, enrolment authorities, council members and nodes"


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


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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


# --------------------------------------------------------------------------- callers


@dataclass(frozen=True, slots=True)
class Caller:
    """The key that signed a request, and the role the state gives it (None for guardians).

    ``council`` and ``node`` are set for keys without a role: a member of the governance council,
    and a node key (a validator of the coming height, or a peer or observer in this node's config).
    """

    key: bytes
    role: KeyRole | None
    council: bool = False
    node: bool = False

    @property
    def is_authority(self) -> bool:
        return self.role is not None and self.role.role == ROLE_AUTHORITY

    @property
    def is_terminal(self) -> bool:
        return self.role is not None and self.role.role == ROLE_TERMINAL

    @property
    def is_auditor(self) -> bool:
        return self.role is not None and self.role.role == ROLE_AUDITOR

    @property
    def reads_integrity(self) -> bool:
        """An integrity reader: may read every transaction's bytes (blocks, the block feed)."""
        return self.is_auditor or self.is_authority or self.council or self.node

    @property
    def post(self) -> str | None:
        return self.role.post if self.is_terminal and self.role is not None else None

    def describe(self) -> str:
        what = (self.role.role if self.role is not None else "council member" if self.council
                else "node" if self.node else "key")
        return f"{what} {self.key.hex()[:16]}"


class NonceCache:
    """Each (key, nonce) is accepted once while its timestamp is inside the window."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._seen: set[bytes] = set()
        self._expiry: list[tuple[int, bytes]] = []

    def __len__(self) -> int:
        return len(self._seen)

    def add(self, token: bytes, expires_ms: int, now_ms: int) -> bool:
        """False if ``token`` was seen and has not expired; raises :class:`Refused` when full."""
        while self._expiry and self._expiry[0][0] < now_ms:
            _, old = heapq.heappop(self._expiry)
            self._seen.discard(old)
        if token in self._seen:
            return False
        if len(self._seen) >= self.capacity:
            raise Refused(503, "busy", "too many signed requests", "try again in a few seconds")
        self._seen.add(token)
        heapq.heappush(self._expiry, (expires_ms, token))
        return True


class Access:
    """Authenticates signed requests and answers role questions from the committed state.

    ``node_keys`` are the keys this node's config names as peers or observers; together with the
    validators of the coming height they are node keys, which read integrity data.
    """

    def __init__(self, app: NodeApp, *, window_ms: int, max_nonces: int = 200_000,
                 node_keys: Iterable[bytes] = ()) -> None:
        self.app = app
        self.window_ms = window_ms
        self.nonces = NonceCache(max_nonces)
        self.node_keys = frozenset(node_keys)

    @property
    def state(self):
        return self.app.store.state

    @staticmethod
    def is_signed(request: web.Request) -> bool:
        """Whether the request carries any of the signed-request headers (it may be malformed)."""
        return any(name in request.headers for name in (HEADER_KEY, HEADER_TIME, HEADER_NONCE, HEADER_SIGNATURE))

    def authenticate(self, request: web.Request, body: bytes = b"", domain: str = DOMAIN_READ) -> Caller:
        """Check the signed-request headers; return the caller or raise :class:`Refused`."""
        h = request.headers
        values = [h.get(name) for name in (HEADER_KEY, HEADER_TIME, HEADER_NONCE, HEADER_SIGNATURE)]
        if all(v is None for v in values):
            raise Refused(401, "unsigned-request", "a signed request is needed",
                          f"send {HEADER_KEY}, {HEADER_TIME}, {HEADER_NONCE} and {HEADER_SIGNATURE}")
        key, time_ms, nonce, signature = _parse_headers(*values)
        now = self.app.clock_ms()
        if abs(now - time_ms) > self.window_ms:
            raise Refused(401, "stale-request", "request time outside the validity window",
                          f"signed at {time_ms}, node time {now}; at most {self.window_ms} ms apart",
                          server_time_ms=now)
        digest = request_digest(request.method, request.raw_path, time_ms, nonce, key, body)
        if not verify(key, domain, self.app.chain_id, digest, signature):
            raise Refused(401, "bad-request-signature", "the request signature does not verify",
                          f"not signed by {key.hex()[:16]} for this request on chain {self.app.chain_id}"
                          + ("" if domain == DOMAIN_READ else f" (domain {domain})"))
        if self.state.get(k_revoked(key)) is not None:
            raise Refused(403, "revoked-key", "the key was revoked", f"key {key.hex()[:16]} was revoked by the council")
        role = load(self.state, k_role(key), KEY_ROLE)
        council = role is None and self.is_council_member(key)
        node = role is None and not council and self.is_node_key(key)
        caller = Caller(key, role, council, node)
        # Only keys that may read something are remembered: a replayed request of any other key
        # earns the same 403 again, and strangers' keys cannot fill the cache.
        if caller.role is not None or council or node or self.wards(key, 1):
            token = hashlib.sha256(key + nonce).digest()
            if not self.nonces.add(token, time_ms + self.window_ms, now):
                raise Refused(401, "replayed-request", "this signed request was seen before",
                              "sign every request afresh (new time and nonce)")
        return caller

    def integrity_reader(self, request: web.Request, what: str) -> Caller:
        """The signed caller of ``request`` if it is an integrity reader; else :class:`Refused`
        (401 unsigned or badly signed, 403 any other key), naming ``what`` was asked for."""
        try:
            caller = self.authenticate(request)
        except Refused as exc:
            if exc.code != "unsigned-request":
                raise
            raise Refused(401, "unsigned-request", "a signed request is needed",
                          f"{what} is served only to integrity readers ({INTEGRITY_READERS}) through signed "
                          f"requests: send {HEADER_KEY}, {HEADER_TIME}, {HEADER_NONCE} and {HEADER_SIGNATURE} "
                          "(custos audit: --key FILE with an auditor's key)") from None
        if not caller.reads_integrity:
            raise forbidden(f"{what} is served only to integrity readers ({INTEGRITY_READERS}); "
                            f"{caller.describe()} is none of them")
        return caller

    def optional_caller(self, request: web.Request) -> Caller | None:
        """None for an anonymous request; the caller of a signed one (a bad signature is refused,
        never read as anonymous)."""
        return self.authenticate(request) if self.is_signed(request) else None

    # ---- roles from the state
    def is_council_member(self, key: bytes) -> bool:
        council = load(self.state, K_COUNCIL, COUNCIL)
        return council is not None and key in council.members

    def is_node_key(self, key: bytes) -> bool:
        """A peer or observer of this node's config, or a validator of the coming height."""
        if key in self.node_keys:
            return True
        try:
            return key in validator_set_at(self.state, self.app.store.height + 1)
        except CustosError:
            return False

    def guardian_of(self, key: bytes, identity: bytes) -> bool:
        return self.state.get(k_ward(key, identity)) is not None

    def wards(self, key: bytes, limit: int = MAX_LIST) -> list[bytes]:
        prefix = k_ward(key)
        out = []
        for k, _ in scan_prefix(self.state, prefix):
            out.append(k[len(prefix):])
            if len(out) >= limit:
                break
        return out

    def may_read_child(self, caller: Caller, identity: bytes) -> bool:
        return caller.is_authority or (caller.role is None and self.guardian_of(caller.key, identity))

    def may_read_request(self, caller: Caller, record: Request) -> bool:
        if caller.is_authority:
            return True
        if caller.is_terminal:
            return record.terminal == caller.key
        return caller.role is None and (caller.key in record.guardians or self.guardian_of(caller.key, record.identity))


def _parse_headers(key_h: str | None, time_h: str | None, nonce_h: str | None,
                   sig_h: str | None) -> tuple[bytes, int, bytes, bytes]:
    def fail(detail: str) -> Refused:
        return Refused(400, "malformed-signed-request", "malformed signed request", detail)

    if key_h is None or time_h is None or nonce_h is None or sig_h is None:
        raise fail(f"all of {HEADER_KEY}, {HEADER_TIME}, {HEADER_NONCE}, {HEADER_SIGNATURE} are needed")
    try:
        key, nonce, signature = bytes.fromhex(key_h), bytes.fromhex(nonce_h), bytes.fromhex(sig_h)
    except ValueError:
        raise fail("key, nonce and signature are hex") from None
    if len(key) != 32 or len(signature) != 64 or len(nonce) != NONCE_BYTES:
        raise fail(f"a key is 32 bytes, a nonce {NONCE_BYTES}, a signature 64")
    if not time_h.isdigit() or len(time_h) > 16:
        raise fail(f"{HEADER_TIME} is integer milliseconds since the Unix epoch")
    return key, int(time_h), nonce, signature


# --------------------------------------------------------------------------- documents


def request_doc(state, request_id: bytes, record: Request) -> dict:
    post = load(state, k_post(record.post), POST_RECORD)
    return {"id": request_id, **REQUEST.wire(record), "post_label": post.label if post else ""}


def consent_doc(consent_id: bytes, consent: Consent) -> dict:
    return {"id": consent_id, **CONSENT.wire(consent)}


def identity_doc(state, identity: bytes, record: Identity) -> dict:
    consents = []
    prefix = k_identity_consent(identity)
    for key, _ in scan_prefix(state, prefix):
        cid = key[len(prefix):]
        consent = load(state, k_consent(identity, cid), CONSENT)
        if consent is not None:
            consents.append(consent_doc(cid, consent))
        if len(consents) >= MAX_LIST:
            break
    return {"id": identity, **IDENTITY_RECORD.wire(record), "consents": consents}


def pending_for_guardian(state, guardian: bytes, limit: int = MAX_LIST) -> list[tuple[bytes, Request]]:
    """Pending requests ``guardian`` may decide on, soonest deadline first.

    Reads the guardian's wards, then each ward's pending requests: the cost follows this
    guardian's children, not the chain's pending requests.
    """
    out: list[tuple[bytes, Request]] = []
    for ward_key, _ in scan_prefix(state, k_ward(guardian)):
        identity = ward_key[len(k_ward(guardian)):]
        prefix = k_pending(identity)
        for key, _ in scan_prefix(state, prefix):
            rid = key[len(prefix):]
            record = load(state, k_request(identity, rid), REQUEST)
            if record is not None and record.status == PENDING and guardian in record.guardians:
                out.append((rid, record))
    out.sort(key=lambda item: (item[1].deadline, item[0]))
    return out[:limit]


# --------------------------------------------------------------------------- routes


class Reads:
    def __init__(self, app: NodeApp, access: Access, index: RequestIndex) -> None:
        self.app = app
        self.access = access
        self.index = index

    @property
    def state(self):
        return self.app.store.state

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/v1/access/whoami", self.whoami),
            web.get("/v1/identities/{id}", self.identity),
            web.get("/v1/identities/{id}/requests", self.identity_requests),
            web.get("/v1/requests/{id}", self.request),
            web.get("/v1/consents/{id}", self.consent),
            web.get("/v1/alerts", self.alerts),
            web.get("/v1/guardians/{key}/pending", self.guardian_pending),
            web.get("/v1/terminals/{key}/requests", self.terminal_requests),
        ]

    @guarded
    async def whoami(self, request: web.Request) -> web.Response:
        caller = self.access.authenticate(request)
        role = caller.role
        wards = self.access.wards(caller.key) if role is None else []
        return reply(request, {
            "key": caller.key,
            "role": role.role if role else ("guardian" if wards else "council" if caller.council
                                            else "node" if caller.node else None),
            "label": role.label if role else "",
            "post": caller.post,
            "wards": wards,
            "integrity_reader": caller.reads_integrity,
            "height": self.app.store.height,
        })

    @guarded
    async def identity(self, request: web.Request) -> web.Response:
        caller = self.access.authenticate(request)
        identity = hex_arg(request.match_info["id"], 16, "identity id")
        if not self.access.may_read_child(caller, identity):
            raise forbidden(f"{caller.describe()} is neither a guardian of this child nor an enrolment authority")
        record = load(self.state, k_identity(identity), IDENTITY_RECORD)
        if record is None:
            return problem(404, "unknown-identity", "no such identity", identity.hex())
        return reply(request, identity_doc(self.state, identity, record))

    @guarded
    async def identity_requests(self, request: web.Request) -> web.Response:
        caller = self.access.authenticate(request)
        identity = hex_arg(request.match_info["id"], 16, "identity id")
        if not self.access.may_read_child(caller, identity):
            raise forbidden(f"{caller.describe()} is neither a guardian of this child nor an enrolment authority")
        limit = int_arg(request, "limit", 20, lo=1, hi=MAX_LIST)
        before = int_arg(request, "before_height", self.app.store.height + 1, lo=1)
        docs = self._request_docs(self.index.by_identity(identity, before_height=before, limit=limit))
        return reply(request, {"identity": identity, "requests": docs})

    @guarded
    async def request(self, request: web.Request) -> web.Response:
        caller = self.access.authenticate(request)
        rid = hex_arg(request.match_info["id"], 32, "request id")
        record = request_by_id(self.state, rid)
        if record is None:  # whether a transaction exists is public (GET /v1/txs/{id}): no oracle here
            return problem(404, "unknown-request", "no such crossing request (not committed, or never made)",
                           rid.hex())
        if not self.access.may_read_request(caller, record):
            raise forbidden(f"{caller.describe()} may not read this request")
        return reply(request, request_doc(self.state, rid, record))

    @guarded
    async def consent(self, request: web.Request) -> web.Response:
        caller = self.access.authenticate(request)
        cid = hex_arg(request.match_info["id"], 32, "consent id")
        consent = consent_by_id(self.state, cid)
        if consent is None:  # a consent id is a transaction id: its existence is public
            return problem(404, "unknown-consent", "no such consent", cid.hex())
        allowed = caller.is_authority or (caller.role is None and (
            caller.key in consent.signers or self.access.guardian_of(caller.key, consent.identity)))
        if not allowed:
            raise forbidden(f"{caller.describe()} may not read this consent")
        return reply(request, consent_doc(cid, consent))

    @guarded
    async def alerts(self, request: web.Request) -> web.Response:
        """Denied and expired minor crossings, oldest first, filtered by post and block time."""
        caller = self.access.authenticate(request)
        post = request.query.get("post") or None
        if caller.is_terminal:
            if post is not None and post != caller.post:
                raise forbidden(f"terminal of post {caller.post!r} may read only its own post's alerts")
            post = caller.post
        elif not caller.is_authority:
            raise forbidden(f"{caller.describe()}: alerts are for enrolment authorities and border posts")
        since = int_arg(request, "since", 0)
        until = int_arg(request, "until", 2**63 - 1)
        limit = int_arg(request, "limit", 100, lo=1, hi=MAX_ALERTS)
        after = request.query.get("after")
        start = P_ALERT + be64(self._first_height_at_or_after(since))
        if after:
            start = max(start, P_ALERT + hex_arg(after, 56, "after") + b"\x00")
        alerts: list[dict] = []
        last, more = None, False
        for n, (key, _) in enumerate(self.state.scan(start, prefix_end(P_ALERT))):
            if len(alerts) >= limit or n >= MAX_ALERT_SCAN:
                more = True
                break
            height, identity, rid = split_time_key(P_ALERT, key)
            alert = load(self.state, k_alert(identity, rid), ALERT)
            if alert is None:
                continue
            if alert.time > until:
                break
            last = key[len(P_ALERT):]
            if alert.time < since or (post is not None and alert.post != post):
                continue
            alerts.append({"height": height, **ALERT.wire(alert)})
        return reply(request, {"alerts": alerts, "next": last if more else None})

    def _first_height_at_or_after(self, time_ms: int) -> int:
        """Binary search over block times (they increase strictly with height)."""
        store = self.app.store
        lo, hi = 1, store.height + 1
        while lo < hi:
            mid = (lo + hi) // 2
            header = store.header(mid)
            if header is not None and header.time < time_ms:
                lo = mid + 1
            else:
                hi = mid
        return lo if time_ms > 0 else 0

    @guarded
    async def guardian_pending(self, request: web.Request) -> web.Response:
        caller = self.access.authenticate(request)
        key = hex_arg(request.match_info["key"], 32, "guardian key")
        if caller.key != key and not caller.is_authority:
            raise forbidden("a guardian reads only their own pending requests")
        docs = [request_doc(self.state, rid, record) for rid, record in pending_for_guardian(self.state, key)]
        return reply(request, {"guardian": key, "height": self.app.store.height, "pending": docs})

    @guarded
    async def terminal_requests(self, request: web.Request) -> web.Response:
        caller = self.access.authenticate(request)
        key = hex_arg(request.match_info["key"], 32, "terminal key")
        if caller.key != key and not caller.is_authority:
            raise forbidden("a terminal reads only the requests it submitted")
        limit = int_arg(request, "limit", 20, lo=1, hi=MAX_LIST)
        before = int_arg(request, "before_height", self.app.store.height + 1, lo=1)
        docs = self._request_docs(self.index.by_terminal(key, before_height=before, limit=limit))
        return reply(request, {"terminal": key, "requests": docs})

    def _request_docs(self, request_ids) -> list[dict]:
        """The documents of indexed requests (an id the state does not hold is skipped)."""
        docs = []
        for rid in request_ids:
            record = request_by_id(self.state, rid)
            if record is not None:
                docs.append(request_doc(self.state, rid, record))
        return docs


__all__ = ["INTEGRITY_READERS", "Access", "Caller", "Reads", "Refused", "guarded", "pending_for_guardian",
           "request_doc"]
