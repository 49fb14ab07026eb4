"""Erasure: a child's personal records leave the state, by council order or when retention ends.

An erasure deletes every record under the child's prefix and every derived index entry that
points at them, and leaves a tombstone under the child's *tag* (never the identity id) that says
when, on which order and on what basis. Nodes then purge the child's transactions from their
blocks and indexes (node/erasure.py); the state root still verifies because erased records
leave the state the way any deleted record does.

Rules here read the child's records to find what to delete. An erasure transaction's own checks
(council signatures, a known tag, not erased already) depend on no child record beyond the tag
index, so an auditor can re-execute it after the fact.
"""

from __future__ import annotations

from ledger.errors import AlreadyExists, NotFound
from ledger.privacy.tags import child_tag
from ledger.rules.context import Ctx, Event, Outcome
from ledger.rules.crossing import clear_pending
from ledger.rules.governance import require_council
from ledger.state.records import (
    DENIED,
    ERASED,
    EXPIRED,
    IDENTITY_RECORD,
    P_RETENTION,
    PENDING,
    REQUEST,
    Erased,
    be64,
    k_alert_at,
    k_child,
    k_child_commitment,
    k_child_tag,
    k_commitment,
    k_consent,
    k_erased,
    k_expiry,
    k_identity,
    k_request,
    k_retention,
    k_subject,
    k_ward,
    load,
    split_time_key,
    store,
)
from ledger.state.view import Overlay, scan_prefix
from ledger.tx.bodies import DAY_MS, ERASE_BASES, EraseIdentity

EVENT_ERASED = "identity.erased"
RETENTION_BASIS = ERASE_BASES.index("retention-expired")
NO_ORDER = bytes(32)  # retention needs no order: the chain's parameter is the basis


def erase(ctx: Ctx, body: EraseIdentity) -> Outcome:
    require_council(ctx)
    # Rule: a child is erased once; the tombstone answers every later order.
    if ctx.state.get(k_erased(body.child)) is not None:
        raise AlreadyExists("this child's records are erased already")
    identity = ctx.state.get(k_child_tag(body.child))
    tombstone = Erased(ctx.height, body.order, body.basis)
    if identity is None:
        if not ctx.env.certified:
            raise NotFound("no enrolled child has this tag")
        # Re-executing a certified block without the child's records (erased before this
        # executor got them): the tombstone is all this transaction leaves in the state.
        store(ctx.state, k_erased(body.child), ERASED, tombstone)
        return Outcome()
    ctx.events.append(erase_child(ctx.state, identity, tombstone))
    return Outcome()


def erase_child(state: Overlay, identity: bytes, tombstone: Erased) -> Event:
    """Delete every record of ``identity`` and its derived index entries; write the tombstone."""
    record = load(state, k_identity(identity), IDENTITY_RECORD)
    if record is not None:
        for guardian in record.guardians:
            state.delete(k_ward(guardian, identity))
        if record.erase_day:
            state.delete(k_retention(record.erase_day, identity))
    prefix = k_child_commitment(identity)
    for key, _ in list(scan_prefix(state, prefix)):
        state.delete(k_commitment(key[len(prefix):]))
    prefix = k_request(identity)
    for key, _ in list(scan_prefix(state, prefix)):
        rid = key[len(prefix):]
        request = load(state, key, REQUEST)
        state.delete(k_subject(rid))
        if request is None:
            continue
        if request.status == PENDING:
            state.delete(k_expiry(request.deadline, identity, rid))
            clear_pending(state, identity, rid)
        elif request.status in (DENIED, EXPIRED) and request.closed_height is not None:
            state.delete(k_alert_at(request.closed_height, identity, rid))
    prefix = k_consent(identity)
    for key, _ in list(scan_prefix(state, prefix)):
        state.delete(k_subject(key[len(prefix):]))
    for key, _ in list(scan_prefix(state, k_child(identity))):
        state.delete(key)
    tag = child_tag(identity)
    state.delete(k_child_tag(tag))
    store(state, k_erased(tag), ERASED, tombstone)
    return Event(EVENT_ERASED, b"", identity, "erased")


def erase_due(state: Overlay, height: int, time: int) -> list[Event]:
    """Begin-block rule: children whose retention period ended before this block's day are erased.

    Due entries are keyed by day and identity, so they are erased in that order on every node.
    """
    today = time // DAY_MS
    events = []
    for key, _ in list(state.scan(P_RETENTION, P_RETENTION + be64(today + 1))):
        _, identity, _ = split_time_key(P_RETENTION, key)
        state.delete(key)
        tombstone = Erased(height, NO_ORDER, RETENTION_BASIS)
        events.append(erase_child(state, identity, tombstone))
    return events
