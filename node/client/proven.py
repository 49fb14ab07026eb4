"""The proven answers the terminal and guardian clients act on.

* :func:`request_status`: a crossing request's record, proven at a certified header;
* :func:`pending_for`: a guardian's pending requests, each proven, asked of every node and
  cross-checked: a request another node proves pending, recorded at or before the height of a
  node's answer, that this node's answer leaves out was hidden by it (pending is left only for a
  final status, so it was pending at that height too). Such a node is named and its answer set
  aside. (A single lying node with no other node to compare against can still hide a request:
  the state has no authenticated index of a guardian's pending requests.)

Documents are the signed-read documents (hex for bytes) built from the proven records, with
``proven``: the height and node of the proof.
"""

from __future__ import annotations

from typing import Any

from ledger.light import LightError
from ledger.state.records import PENDING, REQUEST, Request, k_request
from node.client.light import LightClient, Proven, _Failed, give_up

MAX_PENDING = 100  # the node's page of pending requests (node.api.reads.MAX_LIST)


def jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def request_doc(rid: bytes, record: Request, proven: Proven) -> dict[str, Any]:
    return {**jsonable({"id": rid, **REQUEST.wire(record)}),
            "proven": {"height": proven.height, "node": proven.node, "header": proven.header.hash.hex()}}


def _request_of(proven: Proven, rid: bytes) -> Request:
    if len(proven.records) != 1:
        raise LightError("one record proof expected")
    record = proven.records[0]
    if record.value is None:
        raise LightError("the proof shows no such request")
    req = REQUEST.decode(record.value)
    if record.key != k_request(req.identity, rid):
        raise LightError("the proof is of another record than the request asked for")
    return req


async def request_status(light: LightClient, rid: bytes) -> dict[str, Any] | None:
    """The request's record proven by some node; None if no node holds it (not committed)."""
    proven = await light.prove(f"/v1/requests/{rid.hex()}/proof", check=lambda p: _request_of(p, rid))
    return None if proven is None else request_doc(rid, _request_of(proven, rid), proven)


def _pending_items(proven: Proven, guardian: bytes) -> dict[bytes, Request]:
    items: dict[bytes, Request] = {}
    for record in proven.records:
        if record.value is None:
            raise LightError("a pending request's proof shows no record")
        req = REQUEST.decode(record.value)
        rid = record.key[len(k_request(req.identity)):]
        if record.key != k_request(req.identity, rid) or len(rid) != 32:
            raise LightError("a proof in the pending list is not of a crossing request")
        if req.status != PENDING:
            raise LightError(f"request {rid.hex()[:16]} is listed as pending but is proven {req.status}")
        if guardian not in req.guardians:
            raise LightError(f"request {rid.hex()[:16]} is listed but not for this guardian")
        items[rid] = req
    return items


async def pending_for(light: LightClient, guardian: bytes) -> list[dict[str, Any]]:
    """The guardian's pending requests, soonest deadline first, proven and cross-checked."""
    path = f"/v1/guardians/{guardian.hex()}/pending/proof"
    answers: list[tuple[Proven, dict[bytes, Request]]] = []
    failures: list[_Failed] = []
    for index in range(len(light.node.urls)):
        try:
            proven = await light.prove_at(index, path, check=lambda p: _pending_items(p, guardian))
        except _Failed as exc:
            failures.append(exc)
            continue
        if proven is not None:
            answers.append((proven, _pending_items(proven, guardian)))
    honest = []
    for proven, items in answers:
        hidden = [(rid, other.node) for other, others in answers if other.height >= proven.height
                  for rid, req in others.items() if rid not in items and req.height <= proven.height]
        if hidden and len(items) < MAX_PENDING:
            rid, by = hidden[0]
            light.refute(f"{proven.node} hid pending request {rid.hex()} (proven pending by {by}) from its "
                         f"answer at height {proven.height}")
            failures.append(_Failed(f"{proven.node} hid pending request {rid.hex()[:16]}"))
            continue
        honest.append((proven, items))
    if not honest:
        raise give_up(failures, "the pending list")
    proven, items = max(honest, key=lambda a: a[0].height)
    ordered = sorted(items.items(), key=lambda item: (item[1].deadline, item[0]))
    return [request_doc(rid, req, proven) for rid, req in ordered]


__all__ = ["pending_for", "request_doc", "request_status"]
