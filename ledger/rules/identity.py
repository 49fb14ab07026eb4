"""Enrolment authorities: enrol a child, change guardianship by court order, re-enrol.

The chain holds a pseudonymous identity id, the biometric commitment (an Ed25519 public key
derived from the child's biometrics), the majority day, the guardians' keys and the approval
policy. No name, no date of birth, no template. Every record of a child lives under the child's
prefix (see :mod:`ledger.state.records`) so that an erasure order removes them together.
"""

from __future__ import annotations

from dataclasses import replace

from ledger.errors import AlreadyExists, Erased, InvalidValue, NotFound
from ledger.privacy.tags import child_tag
from ledger.rules.context import (
    Ctx,
    Outcome,
    require_not_revoked,
    require_role,
    require_signers,
)
from ledger.rules.crossing import reevaluate_pending
from ledger.state.records import (
    COMMITMENT_INDEX,
    IDENTITY_RECORD,
    NIL,
    CommitmentIndex,
    Identity,
    k_child_commitment,
    k_child_tag,
    k_commitment,
    k_erased,
    k_identity,
    k_retention,
    k_role,
    k_ward,
    load,
    store,
)
from ledger.tx.bodies import DAY_MS, ROLE_AUTHORITY, Enrol, Policy, Reenrol, UpdateGuardians


def _check_guardianship(ctx: Ctx, guardians: tuple[bytes, ...], policy: Policy, commitment: bytes) -> None:
    """Rules: the policy can be met; guardians are live keys that hold no other role."""
    if policy.approvals > len(guardians):
        raise InvalidValue(f"policy needs {policy.approvals} approvals but only {len(guardians)} guardians are named")
    for g in guardians:
        require_not_revoked(ctx.state, g)
        if g == commitment:
            raise InvalidValue("the child's biometric key cannot be its own guardian")
        if ctx.state.get(k_role(g)) is not None:
            raise InvalidValue(f"key {g.hex()[:16]} holds an authority role and cannot be a guardian")


def _require_new_commitment(ctx: Ctx, commitment: bytes) -> None:
    """Rule: a biometric commitment is used once, ever (a retired one is never reused)."""
    if ctx.state.get(k_commitment(commitment)) is not None:
        raise AlreadyExists("this biometric commitment is enrolled already")
    require_not_revoked(ctx.state, commitment)


def enrol(ctx: Ctx, body: Enrol) -> Outcome:
    require_role(ctx.state, body.authority, ROLE_AUTHORITY)
    # the commitment key co-signs: the authority really derived it from a scan
    require_signers(ctx.tx, body.authority, body.commitment)
    if ctx.state.get(k_identity(body.identity)) is not None:
        raise AlreadyExists("this identity is enrolled already")
    # Rule: an erased identity id is never enrolled again (its tombstone stays).
    tag = child_tag(body.identity)
    if ctx.state.get(k_erased(tag)) is not None:
        raise Erased("this identity id belonged to a child whose records were erased; choose a new one")
    _require_new_commitment(ctx, body.commitment)
    _check_guardianship(ctx, body.guardians, body.policy, body.commitment)
    # Rule: records are kept for the retention period after majority, or after enrolment for
    # someone enrolled as an adult.
    retention = ctx.env.params.retention_days
    erase_day = max(body.majority_day, ctx.time // DAY_MS) + retention if retention else 0
    record = Identity(
        authority=body.authority,
        commitment=body.commitment,
        majority_day=body.majority_day,
        guardians=body.guardians,
        policy=body.policy,
        enrolled_height=ctx.height,
        version=1,
        erase_day=erase_day,
    )
    store(ctx.state, k_identity(body.identity), IDENTITY_RECORD, record)
    _add_commitment(ctx, body.identity, body.commitment)
    for g in body.guardians:
        ctx.state.put(k_ward(g, body.identity), NIL)
    ctx.state.put(k_child_tag(tag), body.identity)
    if erase_day:
        ctx.state.put(k_retention(erase_day, body.identity), NIL)
    return Outcome()


def _add_commitment(ctx: Ctx, identity: bytes, commitment: bytes) -> None:
    ctx.state.put(k_child_commitment(identity, commitment), NIL)
    store(ctx.state, k_commitment(commitment), COMMITMENT_INDEX, CommitmentIndex(identity, True))


def _existing(ctx: Ctx, identity: bytes) -> Identity:
    record = load(ctx.state, k_identity(identity), IDENTITY_RECORD)
    if record is None:
        raise NotFound("this identity is not enrolled")
    return record


def update_guardians(ctx: Ctx, body: UpdateGuardians) -> Outcome:
    """Rule: any enrolment authority may record a court order changing guardianship.

    The order applies at once to the child's pending requests too: removed guardians' decisions
    no longer count, the new policy decides, and a request the order settles closes now.
    """
    require_role(ctx.state, body.authority, ROLE_AUTHORITY)
    require_signers(ctx.tx, body.authority)
    record = _existing(ctx, body.identity)
    _check_guardianship(ctx, body.guardians, body.policy, record.commitment)
    for g in set(record.guardians) - set(body.guardians):
        ctx.state.delete(k_ward(g, body.identity))
    for g in set(body.guardians) - set(record.guardians):
        ctx.state.put(k_ward(g, body.identity), NIL)
    updated = replace(record, guardians=body.guardians, policy=body.policy, version=record.version + 1)
    store(ctx.state, k_identity(body.identity), IDENTITY_RECORD, updated)
    reevaluate_pending(ctx, body.identity, updated)
    return Outcome()


def reenrol(ctx: Ctx, body: Reenrol) -> Outcome:
    """Rule: a fresh commitment replaces the old one; the old one can no longer sign crossings."""
    require_role(ctx.state, body.authority, ROLE_AUTHORITY)
    require_signers(ctx.tx, body.authority, body.commitment)
    record = _existing(ctx, body.identity)
    _require_new_commitment(ctx, body.commitment)
    if body.commitment in record.guardians:
        raise InvalidValue("the child's biometric key cannot be its own guardian")
    store(ctx.state, k_commitment(record.commitment), COMMITMENT_INDEX, CommitmentIndex(body.identity, False))
    _add_commitment(ctx, body.identity, body.commitment)
    updated = replace(record, commitment=body.commitment, version=record.version + 1)
    store(ctx.state, k_identity(body.identity), IDENTITY_RECORD, updated)
    return Outcome()
