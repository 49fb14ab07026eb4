"""The OpenAPI 3.1 description of the node API, served at ``GET /v1/openapi.json``.

Written by hand beside the routes (``node/api/server.py``, ``reads.py``, ``events.py``, the
operator routes in ``node/ops/routes.py``); the test suite fuzzes a live node against it
(tests/node/test_openapi.py), which fails when a route answers what this document does not say.

Every error is an RFC 9457 problem document (``application/problem+json``). Responses are JSON
unless the request sends ``Accept: application/msgpack``; bytes are lowercase hex in JSON.
Reads of a child's records and of transactions' bytes need a *signed request*: the headers
``Custos-Key``, ``Custos-Time``, ``Custos-Nonce``, ``Custos-Purpose`` and ``Custos-Signature``
(see ``node/access/signature.py`` and ``docs/TRANSPORT.md``); without them a route answers the
public view or 401. A read of an erased child's records answers 410 (type ``.../erased``).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from node.version import version

HEX32 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
HEX16 = {"type": "string", "pattern": "^[0-9a-f]{32}$"}
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


def _problem(description: str) -> dict:
    return {"description": description, "content": {"application/problem+json": {"schema": PROBLEM_REF}}}


def _json(description: str, schema: dict | None = None, *, msgpack: bool = True) -> dict:
    content: dict[str, Any] = {"application/json": {"schema": schema or {"type": "object"}}}
    if msgpack:
        content["application/msgpack"] = {}
    return {"description": description, "content": content}


def _path_param(name: str, schema: dict, description: str) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": schema, "description": description}


def _query(name: str, schema: dict, description: str) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


_BAD = _problem("the request is malformed (a parameter out of range, not hex, ...)")
_UNSIGNED = _problem("a signed request is needed (Custos-* headers), or its signature is stale or invalid")
_FORBIDDEN = _problem("the signing key has no role that may read this")
_NOT_FOUND = _problem("no such object")
_ERASED = _problem("the child's records were erased (type .../erased)")
_TOO_MANY = _problem("the signing key made too many signed requests within the validity window")
_UNRECORDED = _problem("the access log cannot record the read (damaged): reads are suspended on this node")
_SIGNED: list[dict[str, list[str]]] = [{}, {"signedRequest": []}]
_PURPOSE = {"name": "Custos-Purpose", "in": "header", "required": False,
            "schema": {"type": "string", "maxLength": 120},
            "description": "why the caller reads: CODE or 'CODE; ref=<64 hex digits>' (docs/ACCESS-LOG.md)"}


def _signed_read(summary: str, params: list[dict], ok: dict, *, not_found: bool = True,
                 erasable: bool = False) -> dict:
    responses = {"200": ok, "400": _BAD, "401": _UNSIGNED, "403": _FORBIDDEN, "429": _TOO_MANY, "503": _UNRECORDED}
    if not_found:
        responses["404"] = _NOT_FOUND
    if erasable:
        responses["410"] = _ERASED
    return {"get": {"summary": summary, "parameters": [*params, _PURPOSE], "security": [{"signedRequest": []}],
                    "responses": responses}}


def _limit(maximum: int) -> dict:
    return _query("limit", {"type": "integer", "minimum": 1, "maximum": maximum}, "at most this many")


_BEFORE = _query("before_height", {"type": "integer", "minimum": 1}, "only requests recorded below this height")
_HEIGHT = _query("height", {"type": "integer", "minimum": 1}, "prove at this certified height (default: the newest)")
_PROVEN = _json("the proof, the certified header and commit it is checked against, and the validator set")

_SCHEMAS = {
    "Problem": {
        "type": "object", "required": ["type", "title", "status"],
        "properties": {"type": {"type": "string", "format": "uri"}, "title": {"type": "string"},
                       "status": {"type": "integer"}, "detail": {"type": "string"}},
    },
    "Status": {
        "type": "object",
        "required": ["chain_id", "height", "last_block_hash", "node_id", "validator", "version"],
        "properties": {"chain_id": {"type": "string"}, "genesis_hash": HEX32, "height": {"type": "integer"},
                       "last_block_hash": HEX32, "last_block_time": {"type": "integer"},
                       "log_size": {"type": "integer"}, "log_root": HEX32, "node_id": HEX32,
                       "validator": {"type": "boolean"}, "mempool": {"type": "integer"},
                       "version": {"type": "string"}, "peers": {"type": "integer"},
                       "consensus": {"type": "object"}, "access_log": {"type": "object"}},
    },
    "Submitted": {
        "type": "object", "required": ["id", "status"],
        "properties": {"id": HEX32, "status": {"enum": ["accepted", "committed"]}, "height": {"type": "integer"},
                       "index": {"type": "integer"}, "result": {"type": "object"},
                       "crossing_status": {"type": "string"}},
    },
    "Readiness": {
        "type": "object", "required": ["ready", "height", "last_block_age_ms", "max_block_age_ms"],
        "properties": {"ready": {"type": "boolean"}, "height": {"type": "integer"},
                       "last_block_age_ms": {"type": "integer"}, "max_block_age_ms": {"type": "integer"},
                       "reason": {"type": "string"}},
    },
}


@cache
def openapi_document() -> dict:
    tx_body = {"content": {
        "application/msgpack": {"schema": {"type": "string", "format": "binary"},
                                "description": "the signed transaction envelope (canonical msgpack)"},
        "application/json": {"schema": {"type": "object", "required": ["tx"], "properties": {
            "tx": {"type": "string", "pattern": "^([0-9a-f]{2})+$"}}}},
    }, "required": True}
    paths: dict[str, Any] = {
        "/v1/txs": {"post": {
            "summary": "submit a signed transaction; ?wait=commit waits for its block",
            "parameters": [_query("wait", {"enum": ["commit"]}, "wait until the transaction is committed"),
                           _query("timeout_ms", {"type": "integer", "minimum": 1}, "longest wait")],
            "requestBody": tx_body,
            "responses": {"200": _json("committed (now or earlier)", {"$ref": "#/components/schemas/Submitted"}),
                          "202": _json("accepted: on disk at this node, not committed yet",
                                       {"$ref": "#/components/schemas/Submitted"}),
                          "400": _BAD, "413": _problem("body too large"),
                          "422": _problem("the transaction breaks a rule (the problem names it)"),
                          "503": _problem("the mempool is full")}}},
        "/v1/txs/batch": {"post": {
            "summary": "submit a msgpack array of signed transactions; one result per transaction",
            "requestBody": {"content": {"application/msgpack": {"schema": {"type": "string", "format": "binary"}}},
                            "required": True},
            "responses": {"200": _json("one result per transaction, in order"), "400": _BAD,
                          "413": _problem("body too large")}}},
        "/v1/txs/{id}": {"get": {
            "summary": "a transaction's status, result and inclusion proof (its bytes for those who may read them)",
            "parameters": [_path_param("id", HEX32, "transaction id"), _PURPOSE], "security": _SIGNED,
            "responses": {"200": _json("committed"), "202": _json("accepted, waiting in the mempool"),
                          "410": _problem("accepted, then left out for good: a transaction it conflicts with "
                                          "committed first, or its event grew too old (the problem names the rule)"),
                          "400": _BAD, "401": _UNSIGNED, "403": _FORBIDDEN, "404": _NOT_FOUND,
                          "429": _TOO_MANY, "503": _UNRECORDED}}},
        "/v1/blocks": {"get": {
            "summary": "consecutive blocks with their commits (msgpack): the audit feed, for integrity readers",
            "parameters": [_query("from", {"type": "integer", "minimum": 1}, "first height"), _limit(100), _PURPOSE],
            "security": [{"signedRequest": []}],
            "responses": {"200": {"description": "blocks", "content": {"application/msgpack": {}}},
                          "400": _BAD, "401": _UNSIGNED, "403": _FORBIDDEN, "429": _TOO_MANY, "503": _UNRECORDED}}},
        "/v1/blocks/{height}": {"get": {
            "summary": "a block: the public view (header, ids, certificates) or, for integrity readers, all of it",
            "parameters": [_path_param("height", {"oneOf": [{"type": "integer", "minimum": 0},
                                                            {"const": "latest"}]}, "a height, or latest"),
                           _PURPOSE],
            "security": _SIGNED,
            "responses": {"200": _json("the block with its header's hash"), "400": _BAD, "401": _UNSIGNED,
                          "403": _FORBIDDEN, "404": _NOT_FOUND, "429": _TOO_MANY, "503": _UNRECORDED}}},
        "/v1/status": {"get": {"summary": "the node's chain, height, version and consensus state",
                               "responses": {"200": _json("status", {"$ref": "#/components/schemas/Status"})}}},
        "/v1/genesis": {"get": {"summary": "the genesis this node runs (canonical bytes) and its hash",
                                "responses": {"200": _json("genesis")}}},
        "/v1/validators": {"get": {
            "summary": "the validator set at a height (default: the next one) and the bonded stakes",
            "parameters": [_query("height", {"type": "integer", "minimum": 1}, "a height up to the next one")],
            "responses": {"200": _json("validators"), "400": _BAD}}},
        "/v1/log/consistency": {"get": {
            "summary": "an RFC 6962 consistency proof between two sizes of the transaction log",
            "parameters": [_query("first", {"type": "integer", "minimum": 0}, "the older size (required)"),
                           _query("second", {"type": "integer", "minimum": 0}, "the newer size (default: now)")],
            "responses": {"200": _json("the two roots and the proof"), "400": _BAD}}},
        "/v1/openapi.json": {"get": {"summary": "this document",
                                     "responses": {"200": _json("OpenAPI 3.1", msgpack=False)}}},
        "/v1/access/whoami": _signed_read("what the signing key may do here", [], _json("role and wards"),
                                          not_found=False),
        "/v1/identities/{id}": _signed_read(
            "a child's record (guardians, enrolment authorities)", [_path_param("id", HEX16, "identity id")],
            _json("the record, its consents"), erasable=True),
        "/v1/identities/{id}/requests": _signed_read(
            "a child's crossing requests, newest first",
            [_path_param("id", HEX16, "identity id"), _limit(100), _BEFORE], _json("requests"), not_found=False,
            erasable=True),
        "/v1/requests/{id}": _signed_read("one crossing request", [_path_param("id", HEX32, "request id")],
                                          _json("the request"), erasable=True),
        "/v1/consents/{id}": _signed_read("one travel consent", [_path_param("id", HEX32, "consent id")],
                                          _json("the consent"), erasable=True),
        "/v1/alerts": _signed_read(
            "denied and expired minor crossings (enrolment authorities; a terminal sees its post's)",
            [_query("post", {"type": "string"}, "only this post"),
             _query("since", {"type": "integer", "minimum": 0}, "block time from (ms)"),
             _query("until", {"type": "integer", "minimum": 0}, "block time up to (ms)"), _limit(1000),
             _query("after", {"type": "string", "pattern": "^[0-9a-f]{80}$"}, "continue after this cursor")],
            _json("alerts and the next cursor"), not_found=False),
        "/v1/guardians/{key}/pending": _signed_read(
            "crossings waiting for this guardian", [_path_param("key", HEX32, "guardian key")],
            _json("pending requests"), not_found=False),
        "/v1/terminals/{key}/requests": _signed_read(
            "the requests a terminal submitted", [_path_param("key", HEX32, "terminal key"), _limit(100), _BEFORE],
            _json("requests"), not_found=False),
        "/v1/state/proof": _signed_read(
            "a state record (or its absence) proven against the state root of a certified header: global records "
            "to anyone, a child's to those who may read it, the rest to integrity readers",
            [_query("key", {"type": "string", "pattern": "^([0-9a-f]{2})+$"}, "the state key, hex (required)"),
             _HEIGHT], _PROVEN),
        "/v1/requests/{id}/proof": _signed_read(
            "a crossing request's record, proven", [_path_param("id", HEX32, "request id"), _HEIGHT], _PROVEN,
            erasable=True),
        "/v1/identities/{id}/proof": _signed_read(
            "a child's identity record, proven", [_path_param("id", HEX16, "identity id"), _HEIGHT], _PROVEN,
            erasable=True),
        "/v1/guardians/{key}/pending/proof": _signed_read(
            "the crossings waiting for this guardian, each record proven",
            [_path_param("key", HEX32, "guardian key"), _HEIGHT], _PROVEN, not_found=False),
        "/v1/light/headers": {"get": {
            "summary": "consecutive certified headers (at most 500) with their commits and validator set changes: "
                       "what a light client follows from its trusted genesis",
            "parameters": [_query("from", {"type": "integer", "minimum": 1}, "first height (required)"),
                           _query("to", {"type": "integer", "minimum": 1}, "last height (default: the tip)")],
            "responses": {"200": _json("the tip and the headers"), "400": _BAD}}},
        "/v1/identify": {"post": {
            "summary": "1:N identification of a scan among an enrolment authority's children (only on a node "
                       "configured with the authority's gallery; elsewhere 404)",
            "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}, "required": True},
            "security": [{"signedRequest": []}],
            "responses": {"200": _json("the identity the scan unlocks, or null"), "400": _BAD, "401": _UNSIGNED,
                          "403": _FORBIDDEN, "404": _problem("this node serves no identification"),
                          "413": _problem("body too large")}}},
        "/v1/events": {"get": {
            "summary": "a signed server-sent event stream of the caller's crossings (guardians, terminals)",
            "parameters": [_query("heartbeat_ms", {"type": "integer", "minimum": 200, "maximum": 60000},
                                  "keep-alive interval"),
                           _query("cursor", {"type": "string"}, "resume after this event id"), _PURPOSE],
            "security": [{"signedRequest": []}],
            "responses": {"200": {"description": "text/event-stream", "content": {"text/event-stream": {}}},
                          "400": _BAD, "401": _UNSIGNED, "403": _FORBIDDEN, "429": _TOO_MANY, "503": _UNRECORDED}}},
        "/healthz": {"get": {"summary": "health: the process serves soundly (503 names what is wrong, e.g. a "
                                        "damaged access log)",
                             "responses": {"200": _json("ok", msgpack=False),
                                           "503": _problem("unhealthy; the problem says why")}}},
        "/v1/access-log": _signed_read(
            "this node's access-log entries about a child, with inclusion proofs (the child's guardians, "
            "oversight bodies)",
            [_query("identity", HEX16, "the child's identity id (required)"),
             _query("after", {"type": "integer", "minimum": -1}, "entries after this index"), _limit(1000)],
            _json("tree heads, the chain's checkpoint, entries and proofs"), not_found=False),
        "/v1/access-log/entries": _signed_read(
            "this node's whole access log, in index order (oversight bodies)",
            [_query("from", {"type": "integer", "minimum": 0}, "first index"), _limit(1000)],
            _json("tree heads, the chain's checkpoint and entries"), not_found=False),
        "/v1/access-log/checkpoints/{key}": {"get": {
            "summary": "the chain's record of a node's last access-log checkpoint (a tree head)",
            "parameters": [_path_param("key", HEX32, "the node's public key")],
            "responses": {"200": _json("size, root, height and the checkpoint transaction's id"), "400": _BAD,
                          "404": _NOT_FOUND}}},
        "/readyz": {"get": {
            "summary": "readiness: the last block is recent (not catching up, the network commits)",
            "responses": {"200": _json("ready", {"$ref": "#/components/schemas/Readiness"}, msgpack=False),
                          "503": _problem("not ready; the problem says why")}}},
        "/metrics": {"get": {
            "summary": "Prometheus metrics (OpenMetrics when asked for with Accept)",
            "responses": {"200": {"description": "exposition", "content": {
                "text/plain": {}, "application/openmetrics-text": {}}}}}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Custos node API", "version": version(),
                 "description": __doc__.split("\n\n", 1)[1].strip()},
        "paths": paths,
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {"signedRequest": {
                "type": "apiKey", "in": "header", "name": "Custos-Signature",
                "description": "Ed25519 over (custos-request/2, the node's key, method, path, query, time, "
                               "nonce, key, SHA-256 of the body, Custos-Purpose), bound to the chain id; with "
                               "Custos-Key, Custos-Time, Custos-Nonce (docs/TRANSPORT.md)"}},
        },
    }
