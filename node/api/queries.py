"""Queries over the committed state for signed reads, and the documents they answer with.

No authorisation here (node.api.policy decides who may see a result) and no HTTP (the routes
in node.api.reads render it).
"""

from __future__ import annotations

from collections.abc import Iterable

from ledger.privacy.tags import child_tag
from ledger.rules.crossing import pending_ids
from ledger.state.records import (
    ALERT,
    CONSENT,
    IDENTITY_RECORD,
    P_ALERT,
    PENDING,
    POST_RECORD,
    REQUEST,
    Consent,
    Identity,
    Request,
    be64,
    k_alert,
    k_consent,
    k_erased,
    k_identity,
    k_identity_consent,
    k_post,
    k_request,
    k_ward,
    load,
    request_by_id,
    split_time_key,
)
from ledger.state.view import prefix_end, scan_prefix
from ledger.storage.chainstore import ChainStore

MAX_LIST = 100
MAX_ALERT_SCAN = 100_000


def is_erased(state, identity: bytes) -> bool:
    """Whether the child's records were erased (its tombstone stands under its tag)."""
    return state.get(k_erased(child_tag(identity))) is not None


def tag_erased(state, tag: bytes) -> bool:
    return state.get(k_erased(tag)) is not None


def identity_record(state, identity: bytes) -> Identity | None:
    return load(state, k_identity(identity), IDENTITY_RECORD)


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


def request_docs(state, request_ids: Iterable[bytes]) -> list[dict]:
    """The documents of the given requests (an id the state does not hold is skipped)."""
    docs = []
    for rid in request_ids:
        record = request_by_id(state, rid)
        if record is not None:
            docs.append(request_doc(state, rid, record))
    return docs


def pending_for_guardian(state, guardian: bytes, limit: int = MAX_LIST) -> list[tuple[bytes, Request]]:
    """Pending requests ``guardian`` may decide on, soonest deadline first.

    Reads the guardian's wards (now), then each ward's pending requests: the cost follows this
    guardian's children, not the chain's pending requests.
    """
    out: list[tuple[bytes, Request]] = []
    for ward_key, _ in scan_prefix(state, k_ward(guardian)):
        identity = ward_key[len(k_ward(guardian)):]
        for rid in pending_ids(state, identity):
            record = load(state, k_request(identity, rid), REQUEST)
            if record is not None and record.status == PENDING and guardian in record.guardians:
                out.append((rid, record))
    out.sort(key=lambda item: (item[1].deadline, item[0]))
    return out[:limit]


def first_height_at_or_after(store: ChainStore, time_ms: int) -> int:
    """Binary search over block times (they increase strictly with height)."""
    lo, hi = 1, store.height + 1
    while lo < hi:
        mid = (lo + hi) // 2
        header = store.header(mid)
        if header is not None and header.time < time_ms:
            lo = mid + 1
        else:
            hi = mid
    return lo if time_ms > 0 else 0


def alerts(store: ChainStore, *, post: str | None, since: int, until: int, limit: int,
           after: bytes | None) -> tuple[list[dict], bytes | None]:
    """Denied and expired minor crossings, oldest first, filtered by post and block time; and
    the cursor to continue from (None when there is no more)."""
    state = store.state
    start = P_ALERT + be64(first_height_at_or_after(store, since))
    if after is not None:
        start = max(start, P_ALERT + after + b"\x00")
    found: list[dict] = []
    last, more = None, False
    for n, (key, _) in enumerate(state.scan(start, prefix_end(P_ALERT))):
        if len(found) >= limit or n >= MAX_ALERT_SCAN:
            more = True
            break
        height, identity, rid = split_time_key(P_ALERT, key)
        alert = load(state, k_alert(identity, rid), ALERT)
        if alert is None:
            continue
        if alert.time > until:
            break
        last = key[len(P_ALERT):]
        if alert.time < since or (post is not None and alert.post != post):
            continue
        found.append({"height": height, **ALERT.wire(alert)})
    return found, last if more else None
