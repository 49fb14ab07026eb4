"""Travel consents: guardians permit future crossings in advance, within limits.

A consent names a time window, a direction (or any), optionally a destination and an
accompanying adult, and a number of uses. It is given by at least the policy's number of the
child's guardians, and any one guardian may revoke it.
"""

from __future__ import annotations

from dataclasses import replace

from ledger.errors import (
    ConsentNotActive,
    InvalidValue,
    MissingSignature,
    NotFound,
    NotGuardian,
)
from ledger.rules.context import (
    Ctx,
    Outcome,
    require_not_revoked,
    require_quorum,
    require_signers,
)
from ledger.state.records import (
    CONSENT,
    IDENTITY_RECORD,
    NIL,
    Consent,
    Identity,
    k_consent,
    k_identity,
    k_identity_consent,
    k_revoked,
    k_subject,
    load,
    store,
)
from ledger.state.view import Overlay, scan_prefix
from ledger.tx.bodies import ANY, CrossingRequest, GrantConsent, RevokeConsent


def grant(ctx: Ctx, body: GrantConsent) -> Outcome:
    identity = load(ctx.state, k_identity(body.identity), IDENTITY_RECORD)
    if identity is None:
        raise NotFound("this identity is not enrolled")
    # Rule: enough of the child's guardians sign, and only guardians.
    signers = require_quorum(ctx.tx, identity.guardians, identity.policy.approvals,
                             "child's guardians", error=MissingSignature)
    for g in signers:
        require_not_revoked(ctx.state, g)
    # Rule: a window that is ordered, bounded and not over.
    if body.not_after <= body.not_before:
        raise InvalidValue("the consent window ends before it begins")
    if body.not_after - body.not_before > ctx.env.params.max_consent_ms:
        raise InvalidValue(f"the consent window is longer than {ctx.env.params.max_consent_ms} ms")
    if body.not_after <= ctx.time:
        raise InvalidValue("the consent window is already over")
    consent = Consent(
        identity=body.identity,
        not_before=body.not_before,
        not_after=body.not_after,
        direction=body.direction,
        destination=body.destination,
        companion=body.companion,
        uses_left=body.uses,
        revoked=False,
        granted_height=ctx.height,
        signers=signers,
    )
    store(ctx.state, k_consent(body.identity, ctx.tx.id), CONSENT, consent)
    ctx.state.put(k_identity_consent(body.identity, ctx.tx.id), NIL)
    ctx.state.put(k_subject(ctx.tx.id), body.identity)
    return Outcome(ref=ctx.tx.id)


def revoke(ctx: Ctx, body: RevokeConsent) -> Outcome:
    require_signers(ctx.tx, body.guardian)
    require_not_revoked(ctx.state, body.guardian)
    consent = load(ctx.state, k_consent(body.identity, body.consent), CONSENT)
    if consent is None:
        raise NotFound(f"no consent {body.consent.hex()[:16]} for this child")
    identity = load(ctx.state, k_identity(body.identity), IDENTITY_RECORD)
    if identity is None or body.guardian not in identity.guardians:
        raise NotGuardian("only a guardian of the child may revoke its consent")
    if consent.revoked:
        raise ConsentNotActive("the consent is revoked already")
    store(ctx.state, k_consent(body.identity, body.consent), CONSENT, replace(consent, revoked=True))
    ctx.state.delete(k_identity_consent(body.identity, body.consent))  # keeps lookups short
    return Outcome(ref=body.consent)


def covers(state: Overlay, consent: Consent, identity: Identity, request: CrossingRequest) -> bool:
    """Does ``consent`` permit this crossing at its event time?"""
    if consent.revoked or consent.uses_left <= 0:
        return False
    if not consent.not_before <= request.event_time <= consent.not_after:
        return False
    if consent.direction != ANY and consent.direction != request.direction:
        return False
    if consent.destination is not None and consent.destination != request.destination:
        return False
    if consent.companion is not None and consent.companion != request.companion:
        return False
    # a court order may have removed guardians since, or the council revoked a key: the
    # consent must still carry enough signatures of current, unrevoked guardians
    current = sum(1 for s in consent.signers if s in identity.guardians and state.get(k_revoked(s)) is None)
    return current >= identity.policy.approvals


def find_covering_consent(state: Overlay, identity: Identity, request: CrossingRequest) -> bytes | None:
    """The first consent (in id order) that covers the request, if any."""
    prefix = k_identity_consent(request.identity)
    for key, _ in scan_prefix(state, prefix):
        cid = key[len(prefix):]
        consent = load(state, k_consent(request.identity, cid), CONSENT)
        if consent is not None and covers(state, consent, identity, request):
            return cid
    return None


def use_consent(state: Overlay, identity: bytes, consent_id: bytes) -> None:
    consent = load(state, k_consent(identity, consent_id), CONSENT)
    if consent is None:
        raise NotFound("consent vanished")  # cannot happen: found in this same overlay
    left = consent.uses_left - 1
    store(state, k_consent(identity, consent_id), CONSENT, replace(consent, uses_left=left))
    if left == 0:
        state.delete(k_identity_consent(consent.identity, consent_id))
