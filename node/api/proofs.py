"""Proven answers: state proofs at recent heights, and the headers a light client follows.

===========================================  ===================================================
route                                        what it proves (who may read it)
===========================================  ===================================================
``GET /v1/state/proof?key=HEX[&height=]``    one record, present or absent. Global records of
                                             the chain (``chain``, ``council``, ``vset/``,
                                             ``val/``, ``erased/``): anyone; other global
                                             records: integrity readers and the key they name;
                                             a child's records: as the signed reads
                                             (:mod:`node.api.policy`), with a stated purpose
``GET /v1/requests/{id}/proof``              a crossing request's record (its guardians,
                                             enrolment authorities, the submitting terminal;
                                             integrity readers, for receipts)
``GET /v1/identities/{id}/proof``            the identity record (guardians, policy) and each
                                             usable consent (its guardians, authorities)
``GET /v1/guardians/{key}/pending/proof``    each pending request the guardian may decide on
                                             (that guardian, authorities)
``GET /v1/light/headers?from=&to=``          consecutive headers with their commit
                                             certificates and, where the validator set changes,
                                             the next set (anyone: integrity data)
===========================================  ===================================================

Every proof answer is ``{height, header, commit, proof | proofs}``: the header at ``height``
(canonical bytes), the certificate that decided it, and record proofs
(:class:`ledger.state.proof.RecordProof`, canonical bytes) against that header's state root.

**Versions.** The authenticated trees are stored by position and overwritten by every block, so
a proof at an older height needs the store as it was. The node keeps a LevelDB snapshot of the
state after each of the last ``keep`` blocks (default 16; each holds on to the table files it
needs, so old snapshots are released as new blocks commit: the pruning policy is "the newest
``keep`` heights"). Proofs default to the newest height; ``height=`` asks for an older one held.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable

from aiohttp import web

from ledger.block import COMMIT, HEADER
from ledger.rules.validators import validator_set_at
from ledger.state.proof import ProofError, RecordProof, prove_record
from ledger.state.records import (
    CONSENT,
    K_CHAIN,
    K_COUNCIL,
    P_CHILD,
    P_DERIVED,
    P_ERASED,
    P_REVOKED,
    P_ROLE,
    P_VALIDATOR,
    P_VALSET,
    REQUEST,
    child_of_key,
    k_consent,
    k_identity,
    k_identity_consent,
    k_request,
    load,
    subject_of,
)
from ledger.state.view import scan_prefix
from ledger.storage.chainstore import StateSnapshot
from node.api.auth import Authenticator, Caller
from node.api.codec import BadRequest, hex_arg, int_arg, problem, reply
from node.api.policy import Policy
from node.api.queries import pending_for_guardian
from node.api.recorder import ReadRecorder
from node.api.refusal import forbidden, guarded
from node.app import NodeApp

log = logging.getLogger("custos.proofs")

KEEP_HEIGHTS = 16
MAX_HEADERS = 500
MAX_KEY_BYTES = 256
#: global records anyone may have proven (the same facts GET /v1/genesis and /v1/validators give)
PUBLIC_GLOBAL = (K_CHAIN, K_COUNCIL, P_VALSET, P_VALIDATOR, P_ERASED)


class Snapshots:
    """State snapshots after each of the newest ``keep`` blocks."""

    def __init__(self, app: NodeApp, keep: int = KEEP_HEIGHTS) -> None:
        self.app = app
        self.keep = max(1, keep)
        self._held: OrderedDict[int, StateSnapshot] = OrderedDict()
        self.take()

    def take(self, _executed: object = None) -> None:
        """Snapshot the tip (a commit listener: called once the block is on disk)."""
        store = self.app.store
        if store.height in self._held:
            return
        self._held[store.height] = store.snapshot()
        while len(self._held) > self.keep:
            _, old = self._held.popitem(last=False)
            old.close()

    def release(self) -> None:
        """Let go of every snapshot (an erasure's purge must not find the erased bytes pinned)."""
        self.close()

    def at(self, height: int | None) -> StateSnapshot:
        if not self._held:
            self.take()  # released for a purge: the tip as it is now
        if height is None:
            return next(reversed(self._held.values()))
        snap = self._held.get(height)
        if snap is None:
            raise BadRequest(f"proofs are served for heights {min(self._held)}..{max(self._held)}, not {height}",
                             "height-not-held", 404)
        return snap

    def close(self) -> None:
        while self._held:
            self._held.popitem()[1].close()


class Proofs:
    def __init__(self, app: NodeApp, auth: Authenticator, policy: Policy, snapshots: Snapshots,
                 recorder: ReadRecorder | None = None) -> None:
        self.app = app
        self.auth = auth
        self.policy = policy
        self.snapshots = snapshots
        self.recorder = recorder

    def _record(self, caller: Caller, kind: str, identities: Iterable[bytes], record: bytes | None = None) -> None:
        """Log the read in the access log before answering (node.api.recorder)."""
        if self.recorder is not None:
            self.recorder.record(caller, kind, identities, record)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/v1/state/proof", self.state_proof),
            web.get("/v1/requests/{id}/proof", self.request_proof),
            web.get("/v1/identities/{id}/proof", self.identity_proof),
            web.get("/v1/guardians/{key}/pending/proof", self.pending_proof),
            web.get("/v1/light/headers", self.headers),
        ]

    # ---------------------------------------------------------------- helpers
    def _snapshot(self, request: web.Request) -> StateSnapshot:
        raw = request.query.get("height")
        return self.snapshots.at(None if raw is None else int_arg(request, "height", lo=1))

    def _answer(self, request: web.Request, snap: StateSnapshot, proofs: list[RecordProof], *,
                single: bool = False, **extra: object) -> web.Response:
        store = self.app.store
        header, commit = store.header(snap.height), store.commit(snap.height)
        if header is None or commit is None:
            return problem(503, "no-certified-header", "no certified header to prove against",
                           f"height {snap.height} has no stored block and certificate")
        body: dict = {"height": snap.height, "header": HEADER.encode(header), "commit": COMMIT.encode(commit)}
        if single:
            body["proof"] = proofs[0].encode()
        else:
            body["proofs"] = [p.encode() for p in proofs]
        body.update(extra)
        return reply(request, body)

    @staticmethod
    def _prove(snap: StateSnapshot, key: bytes) -> RecordProof:
        return prove_record(snap.get, snap.tree_node, key)

    # ---------------------------------------------------------------- routes
    @guarded
    async def state_proof(self, request: web.Request) -> web.Response:
        key = _key_arg(request)
        if key.startswith(P_DERIVED):
            raise BadRequest("derived indexes (x/...) are not authenticated: ask for the records they index",
                             "not-authenticated")
        if not key.startswith(PUBLIC_GLOBAL):
            caller = self.auth.authenticate(request)
            self._authorise_key(caller, key)
            identity = child_of_key(key)
            if identity is not None:
                self._record(caller, "proof", [identity])
        snap = self._snapshot(request)
        try:
            proof = self._prove(snap, key)
        except ProofError as exc:
            raise BadRequest(str(exc), "not-authenticated") from None
        return self._answer(request, snap, [proof], single=True)

    def _authorise_key(self, caller: Caller, key: bytes) -> None:
        identity = child_of_key(key)
        if identity is not None:
            if not self.policy.may_read_child(caller, identity):
                raise forbidden(f"{caller.describe()} is neither a guardian of this child nor an enrolment authority")
            self.policy.require_purpose(caller)
            return
        if key.startswith(P_CHILD):
            raise BadRequest("a child's key is c/<16-byte identity> followed by the record's part")
        if key in (P_ROLE + caller.key, P_REVOKED + caller.key):
            return  # a key's own role
        if not caller.reads_integrity:
            raise forbidden(f"{caller.describe()}: global records are proven to integrity readers "
                            "(and a key's own role)")
        self.policy.require_integrity_purpose(caller)

    @guarded
    async def request_proof(self, request: web.Request) -> web.Response:
        caller = self.auth.authenticate(request)
        rid = hex_arg(request.match_info["id"], 32, "request id")
        snap = self._snapshot(request)
        identity = subject_of(snap, rid)
        record = None if identity is None else load(snap, k_request(identity, rid), REQUEST)
        if identity is None or record is None:
            return problem(404, "unknown-request", f"no such crossing request at height {snap.height}", rid.hex())
        # integrity readers read every transaction's bytes, decisions included: a request's record
        # tells them nothing they could not compute, and receipts carry its proven outcome
        if self.policy.may_read_request(caller, record):
            self.policy.require_purpose(caller)
        elif caller.reads_integrity:
            self.policy.require_integrity_purpose(caller)
        else:
            raise forbidden(f"{caller.describe()} may not read this request")
        self._record(caller, "proof", [identity], rid)
        return self._answer(request, snap, [self._prove(snap, k_request(identity, rid))], single=True)

    @guarded
    async def identity_proof(self, request: web.Request) -> web.Response:
        caller = self.auth.authenticate(request)
        identity = hex_arg(request.match_info["id"], 16, "identity id")
        if not self.policy.may_read_child(caller, identity):
            raise forbidden(f"{caller.describe()} is neither a guardian of this child nor an enrolment authority")
        self.policy.require_purpose(caller)
        self._record(caller, "proof", [identity])
        snap = self._snapshot(request)
        proofs = [self._prove(snap, k_identity(identity))]
        prefix = k_identity_consent(identity)
        for key, _ in scan_prefix(snap, prefix):
            cid = key[len(prefix):]
            if load(snap, k_consent(identity, cid), CONSENT) is not None:
                proofs += [self._prove(snap, key), self._prove(snap, k_consent(identity, cid))]
            if len(proofs) > 201:
                break
        return self._answer(request, snap, proofs)

    @guarded
    async def pending_proof(self, request: web.Request) -> web.Response:
        caller = self.auth.authenticate(request)
        key = hex_arg(request.match_info["key"], 32, "guardian key")
        if caller.key != key and not caller.is_authority:
            raise forbidden("a guardian reads only their own pending requests")
        self.policy.require_purpose(caller)
        snap = self._snapshot(request)
        pending = pending_for_guardian(snap, key)
        self._record(caller, "proof", [r.identity for _, r in pending])
        return self._answer(request, snap, [self._prove(snap, k_request(r.identity, rid)) for rid, r in pending],
                            guardian=key)

    async def headers(self, request: web.Request) -> web.Response:
        """Consecutive headers from ``from`` to ``to`` (at most 500), each with its commit
        certificate, and the next validator set where it differs (public integrity data)."""
        store = self.app.store
        tip = store.height
        try:
            first = int_arg(request, "from", lo=1, hi=max(tip, 1))
            last = int_arg(request, "to", tip, lo=first, hi=tip)
        except BadRequest as exc:
            return problem(exc.status, exc.code, "bad request", f"{exc} (the tip is {tip})")
        last = min(last, first + MAX_HEADERS - 1)
        items = []
        for height in range(first, last + 1):
            h, commit = store.header(height), store.commit(height)  # a node begun from a snapshot holds headers only
            if h is None or commit is None:
                break
            item: dict = {"header": HEADER.encode(h), "commit": COMMIT.encode(commit)}
            if h.next_validators_hash != h.validators_hash:
                item["next_validators"] = validator_set_at(store.state, height + 1).encode()
            items.append(item)
        return reply(request, {"tip": tip, "headers": items})


def _key_arg(request: web.Request) -> bytes:
    raw = request.query.get("key")
    if raw is None:
        raise BadRequest("query parameter 'key' (the state key, hex) is required")
    try:
        key = bytes.fromhex(raw)
    except ValueError:
        raise BadRequest("key must be hex") from None
    if not 0 < len(key) <= MAX_KEY_BYTES:
        raise BadRequest(f"a state key is 1..{MAX_KEY_BYTES} bytes")
    return key


__all__ = ["KEEP_HEIGHTS", "Proofs", "Snapshots"]
