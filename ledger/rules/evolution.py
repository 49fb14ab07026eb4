"""Governance that evolves: protocol upgrades, parameter changes, the council, validator keys.

Each needs a quorum of the council in force. Changes that every node must prepare for take
effect at a future height: a protocol upgrade and new parameters at the height the council
names (at least ``validator_delay`` blocks ahead), a validator's new key when a validator-set
change would (``validator_delay`` blocks later). A new council decides from the next
transaction on.
"""

from __future__ import annotations

from ledger.errors import AlreadyExists, InvalidValue, NotFound, StakeError
from ledger.params import PARAMS
from ledger.protocol import SUPPORTED, encode_version, protocol_at
from ledger.rules.context import Ctx, Outcome, require_not_revoked
from ledger.rules.governance import _key_is_known, require_council
from ledger.rules.validators import bond
from ledger.state.records import (
    COUNCIL,
    K_COUNCIL,
    P_PROTOCOL,
    VALIDATOR_RECORD,
    Council,
    k_params_at,
    k_protocol,
    k_validator,
    load,
    store,
)
from ledger.tx.bodies import RotateValidator, ScheduleUpgrade, SetCouncil, SetParams


def _require_future(ctx: Ctx, height: int, what: str) -> None:
    """Rule: a change every node must prepare for is announced ``validator_delay`` blocks ahead."""
    earliest = ctx.height + ctx.env.params.validator_delay
    if height < earliest:
        raise InvalidValue(f"{what} must take effect at height {earliest} or later, not {height}")


def schedule_upgrade(ctx: Ctx, body: ScheduleUpgrade) -> Outcome:
    require_council(ctx)
    _require_future(ctx, body.height, "an upgrade")
    # Rule: only to a version this software knows, and never back.
    if body.version not in SUPPORTED:
        raise InvalidValue(f"protocol version {body.version} is unknown to this software "
                           f"(it knows {SUPPORTED[0]}..{SUPPORTED[-1]}); upgrade the validators first")
    in_force = protocol_at(ctx.state, body.height)
    if body.version <= in_force:
        raise InvalidValue(f"version {in_force} is already in force at height {body.height}")
    if any(True for _ in ctx.state.scan(k_protocol(body.height + 1), P_PROTOCOL + b"\xff" * 9)):
        raise AlreadyExists("a later upgrade is scheduled already")
    ctx.state.put(k_protocol(body.height), encode_version(body.version))
    return Outcome()


def set_params(ctx: Ctx, body: SetParams) -> Outcome:
    require_council(ctx)
    _require_future(ctx, body.height, "a parameter change")
    if ctx.state.get(k_params_at(body.height)) is not None:
        raise AlreadyExists(f"a parameter change is scheduled at height {body.height} already")
    store(ctx.state, k_params_at(body.height), PARAMS, body.params)
    return Outcome()


def set_council(ctx: Ctx, body: SetCouncil) -> Outcome:
    council = require_council(ctx)
    # Rule: the threshold can be met, and no new member holds another role or a revoked key.
    if body.threshold > len(body.members):
        raise InvalidValue(f"a threshold of {body.threshold} with {len(body.members)} members can never be met")
    for key in body.members:
        require_not_revoked(ctx.state, key)
        if key not in council.members and _key_is_known(ctx, key, council):
            raise AlreadyExists(f"key {key.hex()[:16]} is in use already")
    store(ctx.state, K_COUNCIL, COUNCIL, Council(threshold=body.threshold, members=body.members))
    return Outcome()


def rotate_validator(ctx: Ctx, body: RotateValidator) -> Outcome:
    council = require_council(ctx)
    record = load(ctx.state, k_validator(body.old), VALIDATOR_RECORD)
    if record is None or record.stake == 0:
        raise NotFound(f"key {body.old.hex()[:16]} is not a bonded validator")
    if record.jailed:
        raise StakeError("a jailed validator's key is not rotated: the council releases it first")
    require_not_revoked(ctx.state, body.new)
    if body.new == body.old or _key_is_known(ctx, body.new, council):
        raise AlreadyExists(f"key {body.new.hex()[:16]} is in use already")
    delay = ctx.env.params.validator_delay
    bond(ctx.state, ctx.height, delay, body.new, record.stake)
    bond(ctx.state, ctx.height, delay, body.old, 0)
    return Outcome()
