"""The rules of the state machine, one small function per rule, grouped by who acts.

``RULES`` maps each transaction kind to the function that applies it. Rules read and write only
through the context's overlay and raise a :class:`ledger.errors.RejectedTransaction` subclass
naming the rule broken; they read no clock and draw no randomness.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ledger.rules import access, consent, crossing, erasure, evolution, governance, identity
from ledger.rules.context import Ctx, Outcome
from ledger.tx import bodies as k

RULES: dict[str, Callable[[Ctx, Any], Outcome]] = {
    k.GOV_REGISTER_AUTHORITY: governance.register_authority,
    k.GOV_REGISTER_POST: governance.register_post,
    k.GOV_REGISTER_TERMINAL: governance.register_terminal,
    k.GOV_REGISTER_AUDITOR: governance.register_auditor,
    k.GOV_REGISTER_OVERSIGHT: governance.register_oversight,
    k.GOV_SET_VALIDATOR: governance.set_validator,
    k.GOV_REVOKE_KEY: governance.revoke_key,
    k.GOV_ROTATE_KEY: governance.rotate_key,
    k.GOV_ERASE: erasure.erase,
    k.GOV_SCHEDULE_UPGRADE: evolution.schedule_upgrade,
    k.GOV_SET_PARAMS: evolution.set_params,
    k.GOV_SET_COUNCIL: evolution.set_council,
    k.GOV_ROTATE_VALIDATOR: evolution.rotate_validator,
    k.ENROL: identity.enrol,
    k.UPDATE_GUARDIANS: identity.update_guardians,
    k.REENROL: identity.reenrol,
    k.CROSSING: crossing.request_crossing,
    k.DECISION: crossing.decide,
    k.GRANT_CONSENT: consent.grant,
    k.REVOKE_CONSENT: consent.revoke,
    k.ACCESS_CHECKPOINT: access.checkpoint,
}

if set(RULES) != set(k.BODIES):  # every kind has exactly one rule
    raise ImportError("transaction kinds and rules disagree")
