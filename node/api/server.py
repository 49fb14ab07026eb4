"""Routes of the HTTP API. Handlers translate HTTP to calls on :class:`node.app.NodeApp`.

Integrity data is public, a child's records are not. Transactions name a child's pseudonymous
id, posts, times, companions and guardians' keys, so their bytes go only to
*integrity readers* (auditors, enrolment authorities, council members, node keys; see
:mod:`node.api.policy`) through signed requests that state the purpose ``audit``:

=============================  ==================================================================
route                          anonymous (or a signed key of no such role)  /  integrity reader
=============================  ==================================================================
``GET /v1/blocks/{height}``    header with ``hash``, transaction ids and leaf hashes, last commit,
                               evidence, commit (``"view": "public"``)  /  the whole block
``GET /v1/blocks?from=&limit`` 401 unsigned, 403 other keys  /  blocks and commits (msgpack)
``GET /v1/txs/{id}``           id, status, height, index, result, inclusion proof  /  and the
                               transaction's bytes (also for its signers, and for the parties of
                               a crossing: the child's guardians, the terminal that submitted it)
=============================  ==================================================================

The crossing record in ``GET /v1/txs/{id}`` goes to those who may read the request itself
(``GET /v1/requests/{id}``: the child's guardians, enrolment authorities, the submitting terminal).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence

import msgpack
from aiohttp import web

from ledger.block import BLOCK, COMMIT, Block, is_stub
from ledger.errors import (
    ChainError,
    CustosError,
    DecodeError,
    MalformedTransaction,
    RejectedTransaction,
    StorageError,
)
from ledger.genesis import GENESIS
from ledger.merkle import MerkleError
from ledger.params import PARAMS
from ledger.protocol import protocol_at
from ledger.rules.validators import validator_set_at
from ledger.state.records import P_VALIDATOR, VALIDATOR_RECORD, request_by_id
from ledger.state.view import scan_prefix
from ledger.tx.bodies import ACCESS_CHECKPOINT
from ledger.tx.envelope import decode_tx, decode_tx_batch
from node.api import render
from node.api.auth import Authenticator, Caller
from node.api.codec import (
    BadRequest,
    error,
    hex_arg,
    int_arg,
    not_routed,
    parse_int,
    problem,
    read_tx_body,
    rejection,
    reply,
)
from node.api.openapi import openapi_document
from node.api.policy import INTEGRITY_READERS, Policy
from node.api.recorder import ReadRecorder
from node.api.refusal import Refused
from node.app import NodeApp
from node.edge.bodies import BodyBudget, body_middleware
from node.edge.bodies import route_of as edge_route_of
from node.edge.connections import ConnectionGuard, GuardedRunner, busy_middleware
from node.edge.errorlog import ThrottledLog
from node.mempool import MempoolFull
from node.version import version

log = logging.getLogger("custos.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
APP_KEY = web.AppKey("custos_node", object)
MAX_BLOCK_RANGE = 100
#: transaction ids and leaf hashes of recently served blocks, at most this many in all
DIGEST_CACHE_TXS = 200_000
#: blocks with more transactions than this are digested off the event loop
DIGEST_INLINE_TXS = 500
#: request bodies being received at once: up to 64 KiB each (transactions, signed reads) in
#: one pool, larger ones (batches) in another of this many of the largest body
SMALL_BODY_BUDGET = 16 * 1024 * 1024
LARGE_BODIES = 2
#: transactions whose bytes anyone may read: they name no child (a node's access-log checkpoint)
PUBLIC_KINDS = frozenset({ACCESS_CHECKPOINT})


@web.middleware
async def problems_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as an RFC 9457 problem document with a stable ``type``."""
    try:
        return await handler(request)
    except BadRequest as exc:
        return problem(exc.status, exc.code, "bad request", str(exc))
    except Refused as exc:
        return exc.response()
    except web.HTTPRequestEntityTooLarge as exc:
        return problem(413, "too-large", "request body too large", exc.text or "")
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed) as exc:
        return not_routed(request, exc)
    except MalformedTransaction as exc:
        return rejection(exc, 400)
    except MempoolFull as exc:
        return rejection(exc, 503)
    except RejectedTransaction as exc:
        return rejection(exc)
    except (MerkleError, ChainError) as exc:
        return error(exc, 400)
    except StorageError as exc:
        _errors.exception(f"storage {request.method} {route_of(request)}", "storage error serving %s %s",
                          request.method, route_of(request))
        return error(exc, 500)
    except CustosError as exc:
        return error(exc, 400)
    except web.HTTPException:
        raise
    except RecursionError:  # input nested deeper than a parser can follow (JSON, say)
        return problem(400, "too-deep", "bad request", "the body is nested too deeply")
    except Exception as exc:  # a bug: the client still gets a problem document, the log a traceback
        # the route's pattern, not the path: a path may name a child (/v1/identities/{id})
        route = route_of(request)
        _errors.exception(f"{type(exc).__name__} {request.method} {route}",
                          "unexpected error serving %s %s", request.method, route)
        return problem(500, "internal", "internal error", "the node failed to serve this request")


#: a flood of requests that fail the same way writes a few tracebacks a minute, not one each
_errors = ThrottledLog(log)


def route_of(request: web.Request) -> str:
    """The pattern of the route a request matched (``/v1/identities/{id}``), never its path."""
    return edge_route_of(request) or "(no route)"


class Api:
    """The core API. ``auth`` and ``policy`` (set together, by ``guard``) decide signed reads of
    integrity data; without them every caller is served the public views and the block feed is
    refused."""

    def __init__(self, app: NodeApp, *, node_id: str, validator: Callable[[], bool],
                 max_wait_ms: int = 30_000, extra_status: Callable[[], dict] | None = None) -> None:
        self.app = app
        self.node_id = node_id
        self.is_validator = validator
        self.max_wait_ms = max_wait_ms
        self.extra_status = extra_status or (lambda: {})
        self.auth: Authenticator | None = None
        self.policy: Policy | None = None
        self.recorder: ReadRecorder | None = None
        self.health_checks: list[Callable[[], str | None]] = []

    def guard(self, auth: Authenticator, policy: Policy, recorder: ReadRecorder) -> None:
        """Serve signed reads of integrity data, decided by ``auth`` and ``policy``, each
        recorded by ``recorder`` in the access log."""
        self.auth, self.policy, self.recorder = auth, policy, recorder
        self._digests: OrderedDict[int, tuple[bytes, list[bytes], list[bytes]]] = OrderedDict()
        self._digested_txs = 0

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/txs", self.submit),
            web.post("/v1/txs/batch", self.submit_batch),
            web.get("/v1/txs/{id}", self.tx_status),
            web.get("/v1/blocks", self.blocks_range),
            web.get("/v1/blocks/{height}", self.block),
            web.get("/v1/status", self.status),
            web.get("/v1/genesis", self.genesis),
            web.get("/v1/validators", self.validators),
            web.get("/v1/log/consistency", self.consistency),
            web.get("/healthz", self.healthz),
            web.get("/v1/openapi.json", self.openapi),
        ]

    # ---------------------------------------------------------------- transactions
    async def submit(self, request: web.Request) -> web.Response:
        # The query first: a 400 must mean the transaction was not taken.
        wait = request.query.get("wait")
        if wait not in (None, "", "commit"):
            raise BadRequest("wait must be 'commit' or absent")
        timeout = int_arg(request, "timeout_ms", self.max_wait_ms, lo=1, hi=self.max_wait_ms)
        raw = await read_tx_body(request)
        submitted = self.app.submit(raw)
        await self.app.durable()  # "accepted" means on disk: it survives a crash of this node
        if submitted.status == "committed" or wait != "commit":
            return self._submitted(request, submitted.tx_id, submitted.location)
        location = await self.app.wait_commit(submitted.tx_id, timeout / 1000)
        return self._submitted(request, submitted.tx_id, location)

    def _submitted(self, request: web.Request, tx_id: bytes, location) -> web.Response:
        if location is None:
            return reply(request, {"id": tx_id, "status": "accepted"}, status=202)
        body = {"id": tx_id, "status": "committed", "height": location.height, "index": location.index,
                "result": {"status": location.status, "ref": location.ref}}
        crossing = request_by_id(self.app.store.state, tx_id)
        if crossing is not None:
            body["crossing_status"] = crossing.status
        return reply(request, body)

    async def submit_batch(self, request: web.Request) -> web.Response:
        """A msgpack array of signed transactions; one result per transaction, in order."""
        body = await request.read()
        try:
            items = decode_tx_batch(body, max_items=20_000)
        except DecodeError as exc:
            raise BadRequest(str(exc)) from None
        results: list[dict[str, object]] = []
        for outcome in await self.app.submit_many(items):  # checked off the event loop
            if isinstance(outcome, RejectedTransaction):
                results.append({"status": "rejected", "rule": outcome.rule, "detail": str(outcome)})
            else:
                results.append({"id": outcome.tx_id, "status": outcome.status})
        await self.app.durable()
        return reply(request, {"results": results})

    async def tx_status(self, request: web.Request) -> web.Response:
        tx_id = hex_arg(request.match_info["id"], 32, "transaction id")
        caller = self._caller(request)
        store = self.app.store
        location = store.tx_location(tx_id)
        if location is None:
            if tx_id in self.app.mempool:
                return reply(request, {"id": tx_id, "status": "accepted"}, status=202)
            dropped = self.app.dropped.get(tx_id)
            if dropped is not None:  # accepted once, then left out: say why, not "never heard of it"
                return problem(410, "dropped", "transaction dropped",
                               f"accepted, then dropped before it could commit: {dropped}", rule=dropped.rule)
            return problem(404, "unknown-transaction", "no such transaction", tx_id.hex())
        block = store.block(location.height)
        if block is None and location.height <= store.base:
            return problem(404, "block-not-held", "the block is not held here",
                           f"this node began from a state-sync snapshot at height {store.base}: it knows transaction "
                           f"{tx_id.hex()} is in block {location.height} but holds no block up to that height; ask a "
                           "node that replayed the chain from genesis")
        if block is None or location.index >= len(block.txs):
            raise StorageError(f"block {location.height} does not hold transaction {tx_id.hex()}")
        raw = block.txs[location.index]
        # a stub of a transaction erased by order has no bytes to show
        tx = None if is_stub(raw) else decode_tx(raw)
        include_tx, crossing = tx is not None and tx.kind in PUBLIC_KINDS, None
        if caller is not None and self.policy is not None and not include_tx:
            record = request_by_id(store.state, tx_id)
            if record is not None and self.policy.may_read_request(caller, record):
                crossing = record
            include_tx = tx is not None and self.policy.may_read_tx(caller, tx, crossing is not None)
            if include_tx or crossing is not None:
                self.policy.require_tx_purpose(caller)
                identity = getattr(tx.body, "identity", None) if tx is not None else None
                if identity is None and crossing is not None:
                    identity = crossing.identity
                self._record(caller, "tx", [identity] if identity is not None else (), tx_id)
        return reply(request, render.tx_doc(store, tx_id, location, raw, include_tx=include_tx, crossing=crossing))

    # ---------------------------------------------------------------- blocks
    def _record(self, caller: Caller, kind: str, identities, record: bytes | None) -> None:
        if self.recorder is not None:
            self.recorder.record(caller, kind, identities, record)

    def _caller(self, request: web.Request) -> Caller | None:
        """The signed caller, or None for an anonymous request (or when no access is set up)."""
        if self.auth is None:
            return None
        return self.auth.optional_caller(request)

    def _integrity_reader(self, request: web.Request, what: str) -> Caller:
        """The signed caller of ``request`` if it is an integrity reader stating ``audit``; else
        :class:`Refused` (401 unsigned or badly signed, 403 any other key)."""
        if self.auth is None or self.policy is None:
            raise Refused(403, "forbidden", "no role that may read this", f"this node serves {what} to nobody")
        try:
            caller = self.auth.authenticate(request)
        except Refused as exc:
            if exc.code != "unsigned-request":
                raise
            raise Refused(401, "unsigned-request", "a signed request is needed",
                          f"{what} is served only to integrity readers ({INTEGRITY_READERS}) through signed "
                          "requests stating the purpose 'audit' (custos audit: --key FILE with an auditor's key)"
                          ) from None
        self.policy.require_integrity_reader(caller, what)
        self.policy.require_integrity_purpose(caller)
        return caller

    async def block(self, request: web.Request) -> web.Response:
        store = self.app.store
        arg = request.match_info["height"]
        height = store.height if arg == "latest" else _height(arg)
        caller = self._caller(request)
        raw = store.block_bytes(height)
        if raw is None or height < 1:
            return problem(404, "unknown-block", "no such block", f"height {height}; tip is {store.height}")
        commit = store.commit(height)
        full = caller is not None and caller.reads_integrity
        if full and caller is not None and self.policy is not None:
            self.policy.require_integrity_purpose(caller)
            self._record(caller, "block", (), height.to_bytes(8, "big"))
        as_msgpack = request.headers.get("Accept", "").startswith("application/msgpack")
        if full and as_msgpack:
            return reply(request, {"view": "full", "block": raw, "commit": COMMIT.encode(commit) if commit else None})
        block = BLOCK.decode(raw)
        if full:
            return reply(request, render.block_doc(block, commit))
        tx_ids, leaves = await self._tx_digests(block)
        if as_msgpack:
            return reply(request, render.public_block_msgpack(block, commit, tx_ids, leaves))
        return reply(request, render.public_block_doc(block, commit, tx_ids, leaves))

    async def _tx_digests(self, block: Block) -> tuple[list[bytes], list[bytes]]:
        """The block's transaction ids and leaf hashes, remembered for the blocks served last."""
        cached = self._digests.get(block.height)
        if cached is not None and cached[0] == block.hash:
            self._digests.move_to_end(block.height)
            return cached[1], cached[2]
        if len(block.txs) > DIGEST_INLINE_TXS:
            tx_ids, leaves = await asyncio.get_running_loop().run_in_executor(None, render.tx_digests, block)
        else:
            tx_ids, leaves = render.tx_digests(block)
        old = self._digests.pop(block.height, None)
        if old is not None:
            self._digested_txs -= len(old[1])
        self._digests[block.height] = (block.hash, tx_ids, leaves)
        self._digested_txs += len(tx_ids)
        while self._digested_txs > DIGEST_CACHE_TXS and len(self._digests) > 1:
            _, (_, ids, _) = self._digests.popitem(last=False)
            self._digested_txs -= len(ids)
        return tx_ids, leaves

    async def blocks_range(self, request: web.Request) -> web.Response:
        """Consecutive blocks with their commits, as msgpack: the audit feed (integrity readers only)."""
        caller = self._integrity_reader(request, "the block feed (every transaction's bytes)")
        store = self.app.store
        start = int_arg(request, "from", 1, lo=1)
        limit = int_arg(request, "limit", 20, lo=1, hi=MAX_BLOCK_RANGE)
        self._record(caller, "blocks", (), start.to_bytes(8, "big"))
        items = []
        for height in range(start, min(start + limit, store.height + 1)):
            commit = store.commit(height)
            items.append({"block": store.block_bytes(height), "commit": COMMIT.encode(commit) if commit else None,
                          "slots": store.slots_bytes(height)})
        return web.Response(body=msgpack.packb({"tip": store.height, "blocks": items}, use_bin_type=True),
                            content_type="application/msgpack")

    # ---------------------------------------------------------------- chain info
    async def status(self, request: web.Request) -> web.Response:
        store = self.app.store
        tip = store.tip
        body = {
            "chain_id": store.chain.chain_id,
            "genesis_hash": store.genesis.hash,
            "height": tip.height,
            "last_block_hash": tip.hash,
            "last_block_time": tip.time,
            "log_size": tip.log_size,
            "log_root": tip.log_root,
            "node_id": self.node_id,
            "validator": self.is_validator(),
            "mempool": len(self.app.mempool),
            "version": version(),
            "protocol_version": protocol_at(store.state, tip.height + 1),
            "params": PARAMS.wire(store.chain.params),
            **self.extra_status(),
        }
        return reply(request, body)

    async def genesis(self, request: web.Request) -> web.Response:
        """The genesis this node runs: canonical bytes (msgpack) or fields (JSON), and its hash."""
        genesis = self.app.store.genesis
        return reply(request, {"hash": genesis.hash, "genesis": GENESIS.encode(genesis),
                               "chain_id": genesis.chain_id})

    async def validators(self, request: web.Request) -> web.Response:
        store = self.app.store
        height = int_arg(request, "height", store.height + 1, lo=1, hi=store.height + 1)
        bonded = [(key[len(P_VALIDATOR):], VALIDATOR_RECORD.decode(raw))
                  for key, raw in scan_prefix(store.state, P_VALIDATOR)]
        return reply(request, render.validators_doc(validator_set_at(store.state, height), height, bonded))

    async def consistency(self, request: web.Request) -> web.Response:
        """An RFC 6962 consistency proof between two sizes of the global transaction log."""
        log_ = self.app.store.log()
        second = int_arg(request, "second", log_.size, lo=0, hi=log_.size)
        first = int_arg(request, "first", lo=0, hi=second)
        return reply(request, {"first": first, "second": second, "first_root": log_.root(first),
                               "second_root": log_.root(second), "proof": log_.consistency_proof(first, second)})

    async def healthz(self, request: web.Request) -> web.Response:
        """200 while the node serves soundly; 503 naming what is wrong otherwise: a damaged chain
        store, or a damaged access log (reads of children's records are then suspended)."""
        damage = self.app.store.damage
        if damage is not None:  # found by a read or the store patrol (node/runner.py): a supervisor acts
            return problem(503, "storage-damaged", "the chain store is damaged", damage)
        problems = [p for p in (check() for check in self.health_checks) if p is not None]
        if problems:
            return problem(503, "unhealthy", "the node is unhealthy", "; ".join(problems),
                           height=self.app.store.height)
        return reply(request, {"ok": True, "height": self.app.store.height})

    async def openapi(self, request: web.Request) -> web.Response:
        """The OpenAPI 3.1 description of this API."""
        return web.json_response(openapi_document())


def _height(arg: str) -> int:
    return parse_int(arg, "a height ('latest' or an integer)")


def make_web_app(api: Api, *, max_body_bytes: int, max_batch_bytes: int | None = None,
                 body_timeout_s: float = 15.0, extra_routes: Sequence[web.RouteDef] = ()) -> web.Application:
    """The API application. A batch submission's body may take ``max_batch_bytes``, every other
    route's ``max_body_bytes``; bodies must arrive within ``body_timeout_s`` and share the
    budgets :data:`SMALL_BODY_BUDGET` and :data:`LARGE_BODIES` (see :mod:`node.edge.bodies`)."""
    batch = max_batch_bytes or max_body_bytes
    limits = {"/v1/txs/batch": batch}
    bodies = body_middleware(limit_for=lambda request: limits.get(edge_route_of(request) or "", max_body_bytes),
                             budget=BodyBudget(small=SMALL_BODY_BUDGET,
                                               large=LARGE_BODIES * max(batch, max_body_bytes)),
                             timeout_s=body_timeout_s, refuse=problem)
    web_app = web.Application(client_max_size=max(batch, max_body_bytes),
                              middlewares=[busy_middleware, problems_middleware, bodies])
    web_app[APP_KEY] = api
    web_app.add_routes(api.routes())
    web_app.add_routes(list(extra_routes))
    return web_app


def parser_problem(status: int, detail: str) -> web.Response:
    """What the HTTP parser refuses, as a problem document like every other error."""
    if status >= 500:
        return problem(status, "internal", "internal error", detail)
    return problem(status, "malformed-request", "malformed request", detail)


async def serve(web_app: web.Application, host: str, port: int, guard: ConnectionGuard | None = None, *,
                ssl_context: ssl.SSLContext | None = None) -> web.AppRunner:
    """Listen on ``host:port``; ``guard`` bounds the connections (:mod:`node.edge.connections`);
    with ``ssl_context`` in TLS only (node/tls.py)."""
    guard = guard if guard is not None else ConnectionGuard()  # (an empty guard is falsy: it has a length)
    runner = GuardedRunner(web_app, guard, error_response=parser_problem, errors=_errors,
                           access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True, ssl_context=ssl_context)
    await site.start()
    runner.start_sweeping()
    return runner


async def stop(runner: web.AppRunner) -> None:
    await asyncio.wait_for(runner.cleanup(), 10)
