"""Routes of the access log: who read a child's records on this node, with proofs.

``GET /v1/access-log?identity=ID[&after=N&limit=M]`` (signed; the child's guardians now, and
oversight keys) answers this node's entries about the child, each with an RFC 6962 inclusion
proof: against the tree head the chain holds for this node (``anchor``) when the entry is
covered by it, else against the log's current head, with a consistency proof from the anchor
to that head. The answer is checked by the client (node.access.verify), not believed.

``GET /v1/access-log/entries?from=N[&limit=M]`` (signed; oversight keys only) answers entries
in index order, whoever they concern, so an oversight body can rebuild the whole tree and see
that no entry was left out of the per-child answers.

``GET /v1/access-log/checkpoints/{key}`` (public) answers the chain's record of the last
checkpoint of node ``key``: a tree head, no personal data. Asking several nodes shows whether
one answers with an old checkpoint.

Reading the access log is itself a read of a child's records: it is recorded too (except on a
node whose log is damaged, which records nothing and still answers, naming the damage, so
that the damage can be seen).
"""

from __future__ import annotations

from aiohttp import web

from ledger.privacy.tags import child_tag
from ledger.state.records import ACCESS_CHECKPOINT_RECORD, AccessCheckpointRecord, k_access_checkpoint, load
from node.access.log import AccessLog
from node.api.auth import Authenticator
from node.api.codec import hex_arg, int_arg, problem, reply
from node.api.policy import Policy
from node.api.recorder import ReadRecorder
from node.api.refusal import forbidden, guarded
from node.app import NodeApp

MAX_ENTRIES = 1000


class AccessLogRoutes:
    def __init__(self, app: NodeApp, auth: Authenticator, policy: Policy, recorder: ReadRecorder,
                 log: AccessLog) -> None:
        self.app = app
        self.auth = auth
        self.policy = policy
        self.recorder = recorder
        self.log = log

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/v1/access-log", self.of_child),
            web.get("/v1/access-log/entries", self.entries),
            web.get("/v1/access-log/checkpoints/{key}", self.checkpoint),
        ]

    def _record(self, caller, identities, record: bytes | None) -> None:
        """Record the read; a damaged log cannot, and is served anyway (with its damage named):
        the oversight body must be able to see the damage."""
        if self.log.damage is None:
            self.recorder.record(caller, "access-log", identities, record)

    def anchor(self, node: bytes) -> AccessCheckpointRecord | None:
        return load(self.app.store.state, k_access_checkpoint(node), ACCESS_CHECKPOINT_RECORD)

    def _heads(self) -> tuple[dict, AccessCheckpointRecord | None, int]:
        """This node's key, its anchor (the chain's checkpoint) and its log's head now, with the
        consistency proof between the two."""
        node = self.auth.node_id
        anchor = self.anchor(node)
        size = self.log.size
        anchored = anchor.size if anchor is not None and anchor.size <= size else 0
        doc = {
            "node": node,
            "size": size,
            "root": self.log.root(size),
            "anchor": None if anchor is None else ACCESS_CHECKPOINT_RECORD.wire(anchor),
            "consistency": self.log.consistency_proof(anchored, size) if anchored else [],
            "damage": self.log.damage,
        }
        return doc, anchor, anchored

    @guarded
    async def of_child(self, request: web.Request) -> web.Response:
        caller = self.auth.authenticate(request)
        identity = hex_arg(request.query.get("identity", ""), 16, "identity")
        if not self.policy.may_read_access_log(caller, identity):
            raise forbidden(f"{caller.describe()}: a child's access log is for its guardians and oversight bodies")
        self.policy.require_access_log_purpose(caller)
        after = int_arg(request, "after", -1, lo=-1)
        limit = int_arg(request, "limit", MAX_ENTRIES, lo=1, hi=MAX_ENTRIES)
        self._record(caller, [identity], None)
        doc, _, anchored = self._heads()
        indices = self.log.of_child(child_tag(identity), after=after, limit=limit + 1)
        more = len(indices) > limit
        entries = []
        for index in indices[:limit]:
            size = anchored if index < anchored else doc["size"]
            entries.append({"index": index, "entry": self.log.entry(index),
                            "proof": self.log.inclusion_proof(index, size)})
        return reply(request, {**doc, "entries": entries, "next": indices[limit - 1] if more else None})

    @guarded
    async def entries(self, request: web.Request) -> web.Response:
        caller = self.auth.authenticate(request)
        if not caller.is_oversight:
            raise forbidden(f"{caller.describe()}: the whole access log is for oversight bodies")
        self.policy.require_access_log_purpose(caller)
        start = int_arg(request, "from", 0, lo=0)
        limit = int_arg(request, "limit", MAX_ENTRIES, lo=1, hi=MAX_ENTRIES)
        self._record(caller, (), start.to_bytes(8, "big"))
        doc, _, _ = self._heads()
        rows = [{"index": i, "entry": raw} for i, raw in self.log.entries(start, limit)]
        return reply(request, {**doc, "entries": rows})

    async def checkpoint(self, request: web.Request) -> web.Response:
        node = hex_arg(request.match_info["key"], 32, "node key")
        anchor = self.anchor(node)
        if anchor is None:
            return problem(404, "no-checkpoint", "no access-log checkpoint of this node", node.hex())
        return reply(request, {"node": node, "height_now": self.app.store.height,
                               **ACCESS_CHECKPOINT_RECORD.wire(anchor)})
