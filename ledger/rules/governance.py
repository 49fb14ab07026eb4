"""Council governance: k-of-n council signatures register, bond, revoke and rotate keys.

Every governance transaction must carry signatures of at least ``council.threshold`` council
members who are not revoked, and no other signature.
"""

from __future__ import annotations

from dataclasses import replace

from ledger.errors import AlreadyExists, InvalidValue, NotFound, StakeError
from ledger.rules.context import (
    Ctx,
    Outcome,
    council_of,
    require_not_revoked,
    require_quorum,
)
from ledger.rules.crossing import rotate_guardian_in_pending
from ledger.rules.validators import bond, latest_scheduled_set, schedule_power
from ledger.state.records import (
    COUNCIL,
    IDENTITY_RECORD,
    K_COUNCIL,
    KEY_ROLE,
    NIL,
    POST_RECORD,
    REVOCATION,
    VALIDATOR_RECORD,
    Council,
    KeyRole,
    Post,
    Revocation,
    k_commitment,
    k_identity,
    k_post,
    k_revoked,
    k_role,
    k_validator,
    k_ward,
    load,
    store,
)
from ledger.state.view import scan_prefix
from ledger.tx.bodies import (
    REVOKE_REASONS,
    ROLE_AUDITOR,
    ROLE_AUTHORITY,
    ROLE_OVERSIGHT,
    ROLE_TERMINAL,
    RegisterAuditor,
    RegisterAuthority,
    RegisterOversight,
    RegisterPost,
    RegisterTerminal,
    RevokeKey,
    RotateKey,
    SetValidator,
)


def require_council(ctx: Ctx) -> Council:
    """Rule: at least threshold unrevoked council members signed, and only council members."""
    council = council_of(ctx.state)
    signers = require_quorum(ctx.tx, council.members, council.threshold, "council")
    for key in signers:
        require_not_revoked(ctx.state, key)
    return council


def _require_fresh_key(ctx: Ctx, key: bytes) -> None:
    """Rule: a key takes one role only, and a revoked key never comes back.

    A key already used as an authority, terminal or auditor key, a council member's key, a
    validator key, a child's biometric commitment or a guardian's key cannot take another.
    """
    require_not_revoked(ctx.state, key)
    if _key_is_known(ctx, key, council_of(ctx.state)):
        raise AlreadyExists(f"key {key.hex()[:16]} is in use already")


def _register_role(ctx: Ctx, key: bytes, role: str, label: str, post: str | None = None) -> Outcome:
    require_council(ctx)
    _require_fresh_key(ctx, key)
    store(ctx.state, k_role(key), KEY_ROLE, KeyRole(role=role, label=label, post=post))
    return Outcome()


def register_authority(ctx: Ctx, body: RegisterAuthority) -> Outcome:
    return _register_role(ctx, body.key, ROLE_AUTHORITY, body.label)


def register_auditor(ctx: Ctx, body: RegisterAuditor) -> Outcome:
    return _register_role(ctx, body.key, ROLE_AUDITOR, body.label)


def register_oversight(ctx: Ctx, body: RegisterOversight) -> Outcome:
    return _register_role(ctx, body.key, ROLE_OVERSIGHT, body.label)


def register_post(ctx: Ctx, body: RegisterPost) -> Outcome:
    require_council(ctx)
    if ctx.state.get(k_post(body.post)) is not None:
        raise AlreadyExists(f"border post {body.post!r} is registered already")
    store(ctx.state, k_post(body.post), POST_RECORD, Post(label=body.label))
    return Outcome()


def register_terminal(ctx: Ctx, body: RegisterTerminal) -> Outcome:
    """Rule: a terminal is bound to one registered border post."""
    require_council(ctx)
    if ctx.state.get(k_post(body.post)) is None:
        raise NotFound(f"border post {body.post!r} is not registered")
    _require_fresh_key(ctx, body.key)
    store(ctx.state, k_role(body.key), KEY_ROLE, KeyRole(role=ROLE_TERMINAL, label=body.label, post=body.post))
    return Outcome()


def set_validator(ctx: Ctx, body: SetValidator) -> Outcome:
    """Rule: bond stake (0 unbonds); the change takes effect ``validator_delay`` blocks later.

    Bonding again also releases a validator jailed for equivocation: the council decides.
    """
    require_council(ctx)
    if body.stake > 0:
        require_not_revoked(ctx.state, body.key)
    elif ctx.state.get(k_validator(body.key)) is None:
        raise NotFound(f"key {body.key.hex()[:16]} is not a validator")
    bond(ctx.state, ctx.height, ctx.env.params.validator_delay, body.key, body.stake)
    return Outcome()


def _key_is_known(ctx: Ctx, key: bytes, council: Council) -> bool:
    state = ctx.state
    if state.get(k_role(key)) is not None or key in council.members:
        return True
    if state.get(k_validator(key)) is not None or state.get(k_commitment(key)) is not None:
        return True
    return next(scan_prefix(state, k_ward(key)), None) is not None


def revoke_key(ctx: Ctx, body: RevokeKey) -> Outcome:
    """Rule: any key can be revoked, once (also before it is used); the council keeps a quorum.

    Whether the key holds a role is not a condition: a guardian's key is known only from a
    child's records, and a rule of a governance transaction never depends on a child's records
    (an auditor must be able to re-execute it after the child's records were erased).
    """
    council = require_council(ctx)
    if ctx.state.get(k_revoked(body.key)) is not None:
        raise AlreadyExists(f"key {body.key.hex()[:16]} is revoked already")
    if body.key in council.members:
        alive = [m for m in council.members if m != body.key and ctx.state.get(k_revoked(m)) is None]
        if len(alive) < council.threshold:
            raise InvalidValue("revoking this member would leave the council without a quorum")
    _revoke(ctx, body.key, body.reason)
    return Outcome()


def _revoke(ctx: Ctx, key: bytes, reason: int) -> None:
    store(ctx.state, k_revoked(key), REVOCATION, Revocation(height=ctx.height, reason=reason))
    record = load(ctx.state, k_validator(key), VALIDATOR_RECORD)
    if record is not None and record.stake > 0:
        _, current = latest_scheduled_set(ctx.state)
        if key in current:
            try:
                schedule_power(ctx.state, ctx.height, ctx.env.params.validator_delay, key, 0)
            except StakeError:
                raise InvalidValue("revoking the last validator would halt the chain") from None


def rotate_key(ctx: Ctx, body: RotateKey) -> Outcome:
    """Rule: move every role of ``old`` to an unused ``new`` key, then revoke ``old``.

    Covers authority, terminal and auditor roles, council membership and guardianship (each
    ward's guardian list and pending requests are rewritten). Validators rotate by bonding the
    new key instead. A key with no role is simply revoked: whether it is a guardian's is known
    only from children's records, on which a governance rule never depends (see revoke_key).
    """
    council = require_council(ctx)
    old, new = body.old, body.new
    if old == new:
        raise InvalidValue("old and new key are the same")
    require_not_revoked(ctx.state, old)
    _require_fresh_key(ctx, new)
    role = ctx.state.get(k_role(old))
    if role is not None:
        ctx.state.put(k_role(new), role)
        ctx.state.delete(k_role(old))
    if old in council.members:
        members = tuple(sorted((set(council.members) - {old}) | {new}))
        store(ctx.state, K_COUNCIL, COUNCIL, Council(threshold=council.threshold, members=members))
    wards = [key[len(k_ward(old)):] for key, _ in scan_prefix(ctx.state, k_ward(old))]
    for identity in wards:
        record = load(ctx.state, k_identity(identity), IDENTITY_RECORD)
        if record is None:
            continue
        guardians = tuple(sorted((set(record.guardians) - {old}) | {new}))
        store(ctx.state, k_identity(identity), IDENTITY_RECORD,
              replace(record, guardians=guardians, version=record.version + 1))
        ctx.state.delete(k_ward(old, identity))
        ctx.state.put(k_ward(new, identity), NIL)
        rotate_guardian_in_pending(ctx.state, identity, old, new)
    _revoke(ctx, old, REVOKE_REASONS.index("rotated"))
    return Outcome()
