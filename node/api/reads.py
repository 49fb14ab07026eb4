"""Routes of signed reads: a child's records, lists of them, alerts, and ``whoami``.

Each route does the same five steps, each owned by its own module: authenticate the signed
request (node.api.auth), decide whether this caller may read this record and for which purposes
(node.api.policy), query the state (node.api.queries), record the read in the access log
(node.api.recorder), and answer. A child whose records were
erased answers 410 with a problem whose type ends in ``/erased`` (to any signed caller: the
tombstone is public state, and asking needs the child's id).
"""

from __future__ import annotations

from aiohttp import web

from ledger.state.records import consent_by_id, request_by_id
from node.api import queries
from node.api.auth import Authenticator, Caller
from node.api.codec import hex_arg, int_arg, problem, reply
from node.api.index import RequestIndex
from node.api.policy import MAX_LIST, Policy
from node.api.recorder import ReadRecorder
from node.api.refusal import erased, forbidden, guarded
from node.app import NodeApp

MAX_ALERTS = 1000


class Reads:
    def __init__(self, app: NodeApp, auth: Authenticator, policy: Policy, index: RequestIndex,
                 recorder: ReadRecorder) -> None:
        self.app = app
        self.auth = auth
        self.policy = policy
        self.index = index
        self.recorder = recorder

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
        """The caller's own roles and wards (no purpose needed: it is about the caller)."""
        caller = self.auth.authenticate(request)
        role = caller.role
        wards = self.policy.wards(caller.key) if role is None else []
        return reply(request, {
            "key": caller.key,
            "role": caller.role_name,
            "label": role.label if role else "",
            "post": caller.post,
            "wards": wards,
            "integrity_reader": caller.reads_integrity,
            "height": self.app.store.height,
        })

    def _child(self, request: web.Request) -> tuple[Caller, bytes]:
        """The caller and the child of an ``/v1/identities/{id}`` route, checked."""
        caller = self.auth.authenticate(request)
        identity = hex_arg(request.match_info["id"], 16, "identity id")
        if queries.is_erased(self.state, identity):
            raise erased(f"identity {identity.hex()}")
        if not self.policy.may_read_child(caller, identity):
            raise forbidden(f"{caller.describe()} is neither a guardian of this child nor an enrolment authority")
        self.policy.require_purpose(caller)
        return caller, identity

    @guarded
    async def identity(self, request: web.Request) -> web.Response:
        caller, identity = self._child(request)
        record = queries.identity_record(self.state, identity)
        if record is None:
            return problem(404, "unknown-identity", "no such identity", identity.hex())
        doc = queries.identity_doc(self.state, identity, record)
        self.recorder.record(caller, "identity", [identity])
        return reply(request, doc)

    @guarded
    async def identity_requests(self, request: web.Request) -> web.Response:
        caller, identity = self._child(request)
        limit = int_arg(request, "limit", 20, lo=1, hi=MAX_LIST)
        before = int_arg(request, "before_height", self.app.store.height + 1, lo=1)
        docs = queries.request_docs(self.state, self.index.by_identity(identity, before_height=before, limit=limit))
        self.recorder.record(caller, "requests", [identity])
        return reply(request, {"identity": identity, "requests": docs})

    def _erased_subject(self, record_id: bytes) -> bool:
        tag = self.index.subject(record_id)
        return tag is not None and queries.tag_erased(self.state, tag)

    @guarded
    async def request(self, request: web.Request) -> web.Response:
        caller = self.auth.authenticate(request)
        rid = hex_arg(request.match_info["id"], 32, "request id")
        record = request_by_id(self.state, rid)
        if record is None:  # whether a transaction exists is public (GET /v1/txs/{id}): no oracle here
            if self._erased_subject(rid):
                raise erased(f"request {rid.hex()}")
            return problem(404, "unknown-request", "no such crossing request (not committed, or never made)",
                           rid.hex())
        if not self.policy.may_read_request(caller, record):
            raise forbidden(f"{caller.describe()} may not read this request")
        self.policy.require_purpose(caller)
        self.recorder.record(caller, "request", [record.identity], rid)
        return reply(request, queries.request_doc(self.state, rid, record))

    @guarded
    async def consent(self, request: web.Request) -> web.Response:
        caller = self.auth.authenticate(request)
        cid = hex_arg(request.match_info["id"], 32, "consent id")
        consent = consent_by_id(self.state, cid)
        if consent is None:  # a consent id is a transaction id: its existence is public
            if self._erased_subject(cid):
                raise erased(f"consent {cid.hex()}")
            return problem(404, "unknown-consent", "no such consent", cid.hex())
        if not self.policy.may_read_consent(caller, consent):
            raise forbidden(f"{caller.describe()} may not read this consent")
        self.policy.require_purpose(caller)
        self.recorder.record(caller, "consent", [consent.identity], cid)
        return reply(request, queries.consent_doc(cid, consent))

    @guarded
    async def alerts(self, request: web.Request) -> web.Response:
        """Denied and expired minor crossings, oldest first, filtered by post and block time."""
        caller = self.auth.authenticate(request)
        post = request.query.get("post") or None
        if caller.is_terminal:
            if post is not None and post != caller.post:
                raise forbidden(f"terminal of post {caller.post!r} may read only its own post's alerts")
            post = caller.post
        elif not caller.is_authority:
            raise forbidden(f"{caller.describe()}: alerts are for enrolment authorities and border posts")
        self.policy.require_purpose(caller)
        since = int_arg(request, "since", 0)
        until = int_arg(request, "until", 2**63 - 1)
        limit = int_arg(request, "limit", 100, lo=1, hi=MAX_ALERTS)
        after = request.query.get("after")
        found, cursor = queries.alerts(self.app.store, post=post, since=since, until=until, limit=limit,
                                       after=hex_arg(after, 56, "after") if after else None)
        self.recorder.record(caller, "alerts", [a["identity"] for a in found])
        return reply(request, {"alerts": found, "next": cursor})

    @guarded
    async def guardian_pending(self, request: web.Request) -> web.Response:
        caller = self.auth.authenticate(request)
        key = hex_arg(request.match_info["key"], 32, "guardian key")
        if not (caller.is_authority or (caller.key == key and caller.guardian)):
            raise forbidden("a guardian reads only their own pending requests (and only while they have wards)")
        self.policy.require_purpose(caller)
        pending = queries.pending_for_guardian(self.state, key)
        docs = [queries.request_doc(self.state, rid, record) for rid, record in pending]
        self.recorder.record(caller, "pending", [record.identity for _, record in pending])
        return reply(request, {"guardian": key, "height": self.app.store.height, "pending": docs})

    @guarded
    async def terminal_requests(self, request: web.Request) -> web.Response:
        caller = self.auth.authenticate(request)
        key = hex_arg(request.match_info["key"], 32, "terminal key")
        if not (caller.is_authority or (caller.key == key and caller.is_terminal)):
            raise forbidden("a terminal reads only the requests it submitted")
        self.policy.require_purpose(caller)
        limit = int_arg(request, "limit", 20, lo=1, hi=MAX_LIST)
        before = int_arg(request, "before_height", self.app.store.height + 1, lo=1)
        docs = queries.request_docs(self.state, self.index.by_terminal(key, before_height=before, limit=limit))
        self.recorder.record(caller, "terminal-requests", [d["identity"] for d in docs])
        return reply(request, {"terminal": key, "requests": docs})


__all__ = ["Reads"]
