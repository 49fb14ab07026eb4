"""The minor-crossing rule, as the project's design fixes it.

At the event time:

* an adult subject: the crossing is recorded as permitted;
* a minor covered by a valid travel consent: permitted, with the consent referenced;
* otherwise pending: the guardians are alerted; it becomes permitted when the policy's k-of-n
  approvals are committed, denied when a guardian denies and the policy makes a denial a veto
  (or too few guardians are left to approve), and expired when the deadline passes first.
  Denied and expired attempts raise an alert.

A guardian's decision names the request by its transaction id; the signature binds that id and
the chain id, so it cannot be replayed for another crossing, child or network.
"""

from __future__ import annotations

from dataclasses import replace

from ledger.errors import (
    BiometricMismatch,
    DuplicateDecision,
    EventTimeOutOfRange,
    InvalidValue,
    MissingSignature,
    NotFound,
    NotGuardian,
    RequestNotPending,
    WrongPost,
)
from ledger.protocol import PENDING_INDEX_VERSION
from ledger.rules.consent import find_covering_consent, use_consent
from ledger.rules.context import (
    Ctx,
    Event,
    Outcome,
    require_not_revoked,
    require_role,
    require_signers,
)
from ledger.state.records import (
    ALERT,
    COMMITMENT_INDEX,
    DENIED,
    EXPIRED,
    IDENTITY_RECORD,
    NIL,
    P_EXPIRY,
    PENDING,
    PERMITTED,
    REQUEST,
    Alert,
    Identity,
    Request,
    be64,
    k_alert,
    k_alert_at,
    k_commitment,
    k_expiry,
    k_identity,
    k_pending,
    k_pending_index,
    k_post,
    k_request,
    k_subject,
    load,
    split_time_key,
    store,
)
from ledger.state.view import Overlay, StateReader, scan_prefix
from ledger.tx.bodies import (
    APPROVE,
    DAY_MS,
    ROLE_TERMINAL,
    CrossingRequest,
    GuardianDecision,
)

EVENT_PENDING = "crossing.pending"
EVENT_CLOSED = "crossing.closed"


def request_crossing(ctx: Ctx, body: CrossingRequest) -> Outcome:
    terminal = require_role(ctx.state, body.terminal, ROLE_TERMINAL)
    if terminal.post != body.post:
        raise WrongPost(f"terminal is bound to post {terminal.post!r}, not {body.post!r}")
    if ctx.state.get(k_post(body.post)) is None:
        raise NotFound(f"border post {body.post!r} is not registered")
    identity = _identity(ctx, body.identity)
    _require_biometric_presence(ctx, body, identity)
    require_not_revoked(ctx.state, identity.commitment)
    _require_event_time(ctx, body.event_time)

    rid = ctx.tx.id
    ctx.state.put(k_subject(rid), body.identity)
    # Rule 1: an adult crosses freely (from the first millisecond of the majority day, UTC).
    adult = body.event_time >= identity.majority_day * DAY_MS
    # Rule 2: a minor covered by a valid travel consent crosses, and the consent is used.
    consent_id = None if adult else find_covering_consent(ctx.state, identity, body)
    # Rule 3: otherwise pending until the guardians decide or the deadline passes.
    pending = not adult and consent_id is None
    deadline = ctx.time + identity.policy.deadline if pending else 0
    request = Request(
        identity=body.identity,
        terminal=body.terminal,
        post=body.post,
        direction=body.direction,
        event_time=body.event_time,
        destination=body.destination,
        companion=body.companion,
        height=ctx.height,
        time=ctx.time,
        status=PENDING if pending else PERMITTED,
        deadline=deadline,
        guardians=identity.guardians,
        approvals_needed=identity.policy.approvals,
        veto=identity.policy.veto,
        approvals=(),
        denials=(),
        consent=consent_id,
        closed_height=None if pending else ctx.height,
    )
    if adult:
        return _record_closed(ctx, rid, request)
    if consent_id is not None:
        use_consent(ctx.state, body.identity, consent_id)
        return _record_closed(ctx, rid, request, ref=consent_id)
    store(ctx.state, k_request(body.identity, rid), REQUEST, request)
    ctx.state.put(k_expiry(deadline, body.identity, rid), NIL)
    marker = k_pending_index if ctx.env.version >= PENDING_INDEX_VERSION else k_pending
    ctx.state.put(marker(body.identity, rid), NIL)
    ctx.events.append(Event(EVENT_PENDING, rid, body.identity, PENDING, identity.guardians, body.post,
                             body.terminal))
    return Outcome(PENDING)


def pending_ids(state: StateReader, identity: bytes) -> list[bytes]:
    """The ids of the child's pending requests, in id order: their markers in the derived index
    (protocol 5 on) and in the child's tree (written under protocols 1 to 4)."""
    ids: list[bytes] = []
    for prefix in (k_pending(identity), k_pending_index(identity)):
        ids.extend(key[len(prefix):] for key, _ in scan_prefix(state, prefix))
    return sorted(ids)


def clear_pending(state: Overlay, identity: bytes, rid: bytes) -> None:
    """Remove a closed request's marker, wherever the version it was made under put it."""
    for key in (k_pending(identity, rid), k_pending_index(identity, rid)):
        if state.get(key) is not None:
            state.delete(key)


def _identity(ctx: Ctx, identity: bytes) -> Identity:
    record = load(ctx.state, k_identity(identity), IDENTITY_RECORD)
    if record is None:
        raise NotFound("this identity is not enrolled")
    return record


def _require_biometric_presence(ctx: Ctx, body: CrossingRequest, identity: Identity) -> None:
    """Rule: the request is signed by the terminal and by the child's current biometric key."""
    signers = ctx.tx.signers
    if body.terminal not in signers:
        raise MissingSignature("the terminal did not sign its request")
    others = signers - {body.terminal}
    if others != {identity.commitment}:
        index = None
        if len(others) == 1:
            index = load(ctx.state, k_commitment(next(iter(others))), COMMITMENT_INDEX)
        if index is not None and index.identity == body.identity and not index.active:
            raise BiometricMismatch("signed with a retired biometric commitment (the child was re-enrolled)")
        raise BiometricMismatch("not signed with the child's enrolled biometric key")
    require_signers(ctx.tx, body.terminal, identity.commitment)


def _require_event_time(ctx: Ctx, event_time: int) -> None:
    """Rule: the event happened at most ``event_future_ms`` after, and at most
    ``event_max_age_ms`` before, the block time (terminals queue requests while offline)."""
    params = ctx.env.params
    if event_time > ctx.time + params.event_future_ms:
        raise EventTimeOutOfRange(f"event time lies {event_time - ctx.time} ms after the block time")
    if event_time < ctx.time - params.event_max_age_ms:
        raise EventTimeOutOfRange(
            f"event is {ctx.time - event_time} ms old; at most {params.event_max_age_ms} ms accepted")


def _record_closed(ctx: Ctx, rid: bytes, request: Request, ref: bytes | None = None) -> Outcome:
    store(ctx.state, k_request(request.identity, rid), REQUEST, request)
    ctx.events.append(Event(EVENT_CLOSED, rid, request.identity, request.status, request.guardians, request.post,
                             request.terminal))
    return Outcome(request.status, ref)


def decide(ctx: Ctx, body: GuardianDecision) -> Outcome:
    require_signers(ctx.tx, body.guardian)
    require_not_revoked(ctx.state, body.guardian)
    request = load(ctx.state, k_request(body.identity, body.request), REQUEST)
    if request is None:
        if ctx.state.get(k_subject(body.request)) is not None:
            raise InvalidValue("the request concerns another child than the decision names")
        raise NotFound(f"no crossing request {body.request.hex()[:16]}")
    # Rule: only a guardian of this child decides: one recorded when the request was made
    # (or the key that guardian rotated to) who is still a guardian now (no court order since).
    if body.guardian not in request.guardians:
        raise NotGuardian("the signer is not a guardian of this child")
    identity = _identity(ctx, request.identity)
    if body.guardian not in identity.guardians:
        raise NotGuardian("the signer is no longer a guardian of this child")
    # Rule: one decision per guardian per request.
    if body.guardian in request.approvals or body.guardian in request.denials:
        raise DuplicateDecision("this guardian already decided on this request")
    # Rule: decisions count only while the request is pending (expiry runs first in a block).
    if request.status != PENDING:
        raise RequestNotPending(f"the request is {request.status}")
    if body.decision == APPROVE:
        request = replace(request, approvals=tuple(sorted((*request.approvals, body.guardian))))
    else:
        request = replace(request, denials=tuple(sorted((*request.denials, body.guardian))))
    request = _settle(ctx, body.request, request)
    store(ctx.state, k_request(body.identity, body.request), REQUEST, request)
    return Outcome(request.status, body.request)


def _settle(ctx: Ctx, rid: bytes, request: Request) -> Request:
    """Close a pending request its decisions settle: enough approvals permit it; a denial under
    a veto policy, or too few guardians left to approve, denies it."""
    if len(request.approvals) >= request.approvals_needed:
        return _close(ctx, rid, request, PERMITTED)
    still_possible = len(request.guardians) - len(request.denials)
    if (request.veto and request.denials) or still_possible < request.approvals_needed:
        return _close(ctx, rid, request, DENIED)
    return request


def reevaluate_pending(ctx: Ctx, identity: bytes, record: Identity) -> None:
    """A court order changed the child's guardians or policy: its pending requests follow.

    Only decisions of guardians who remain count; the new policy's approvals and veto apply;
    a request the remaining decisions settle closes in this block.
    """
    for rid in pending_ids(ctx.state, identity):
        request = load(ctx.state, k_request(identity, rid), REQUEST)
        if request is None:
            continue
        kept = set(record.guardians)
        request = replace(
            request,
            guardians=record.guardians,
            approvals_needed=record.policy.approvals,
            veto=record.policy.veto,
            approvals=tuple(g for g in request.approvals if g in kept),
            denials=tuple(g for g in request.denials if g in kept),
        )
        store(ctx.state, k_request(identity, rid), REQUEST, _settle(ctx, rid, request))


def _close(ctx: Ctx, rid: bytes, request: Request, status: str) -> Request:
    closed = replace(request, status=status, closed_height=ctx.height)
    ctx.state.delete(k_expiry(request.deadline, request.identity, rid))
    clear_pending(ctx.state, request.identity, rid)
    if status in (DENIED, EXPIRED):
        raise_alert(ctx.state, ctx.height, ctx.time, rid, closed)
    ctx.events.append(Event(EVENT_CLOSED, rid, request.identity, status, request.guardians, request.post,
                             request.terminal))
    return closed


def rotate_guardian_in_pending(state: Overlay, identity: bytes, old: bytes, new: bytes) -> None:
    """A guardian's rotated key takes the old key's place in the child's pending requests."""
    for rid in pending_ids(state, identity):
        request = load(state, k_request(identity, rid), REQUEST)
        if request is None:
            continue

        def swap(keys: tuple[bytes, ...]) -> tuple[bytes, ...]:
            return tuple(sorted(new if k == old else k for k in keys))

        store(state, k_request(identity, rid), REQUEST, replace(
            request, guardians=swap(request.guardians), approvals=swap(request.approvals),
            denials=swap(request.denials)))


def raise_alert(state: Overlay, height: int, time: int, rid: bytes, request: Request) -> None:
    alert = Alert(kind=request.status, request=rid, identity=request.identity, post=request.post,
                  direction=request.direction, event_time=request.event_time, time=time)
    store(state, k_alert(request.identity, rid), ALERT, alert)
    state.put(k_alert_at(height, request.identity, rid), NIL)


def expire_requests(state: Overlay, height: int, time: int) -> list[Event]:
    """Begin-block rule: every pending request whose deadline is before the block time expires.

    Runs before the block's transactions, so an approval in the same block comes too late.
    Requests expire in (deadline, id) order, the order of their keys.
    """
    events = []
    due = list(state.scan(P_EXPIRY, P_EXPIRY + be64(time)))
    for key, _ in due:
        _, identity, rid = split_time_key(P_EXPIRY, key)
        state.delete(key)
        request = load(state, k_request(identity, rid), REQUEST)
        if request is None or request.status != PENDING:
            continue
        closed = replace(request, status=EXPIRED, closed_height=height)
        store(state, k_request(identity, rid), REQUEST, closed)
        clear_pending(state, request.identity, rid)
        raise_alert(state, height, time, rid, closed)
        events.append(Event(EVENT_CLOSED, rid, request.identity, EXPIRED, request.guardians, request.post,
                             request.terminal))
    return events
