"""Validator-set changes and the punishment of equivocation.

A change made in block ``h`` takes effect at height ``h + params.validator_delay``: the set that
signs each height is fixed two blocks ahead, so a light verifier can follow the set from genesis
using headers alone (each header carries the hash of its own set and of the next one).
"""

from __future__ import annotations

from ledger.block import VOTE, DuplicateVoteEvidence
from ledger.encoding import decode
from ledger.errors import InvalidEvidence, StakeError
from ledger.state.records import (
    NIL,
    VALIDATOR_RECORD,
    ValidatorRecord,
    k_evidence,
    k_validator,
    k_valset,
    load,
    store,
)
from ledger.state.view import StateReader
from ledger.validators import ValidatorSet

_VSET_PREFIX = b"vset/"


def validator_set_at(state: StateReader, height: int) -> ValidatorSet:
    """The set in force at ``height``: the latest entry scheduled at or before it."""
    last = state.last(_VSET_PREFIX, k_valset(height + 1))
    if last is None:
        raise StakeError(f"no validator set is in force at height {height}")
    return ValidatorSet.from_wire(decode(last[1]))


def latest_scheduled_set(state: StateReader) -> tuple[int, ValidatorSet]:
    """The newest scheduled set (it may take effect in the future) and its height."""
    last = state.last(_VSET_PREFIX, b"vset0")
    if last is None:
        raise StakeError("no validator set was ever scheduled")
    return int.from_bytes(last[0][len(_VSET_PREFIX):], "big"), ValidatorSet.from_wire(decode(last[1]))


def schedule_power(state, height: int, delay: int, key: bytes, power: int) -> None:
    """Set ``key``'s voting power from height ``height + delay`` on (0 removes it)."""
    _, current = latest_scheduled_set(state)
    try:
        updated = current.with_power(key, power)
    except ValueError as exc:
        raise StakeError(f"the change would leave an invalid validator set: {exc}") from None
    if updated != current:
        state.put(k_valset(height + delay), updated.encode())


def bond(state, height: int, delay: int, key: bytes, stake: int) -> None:
    store(state, k_validator(key), VALIDATOR_RECORD, ValidatorRecord(stake=stake, jailed=False))
    schedule_power(state, height, delay, key, stake)


def punish_equivocation(state, chain_id: str, height: int, delay: int, slash_bps: int,
                        max_age: int, ev: DuplicateVoteEvidence) -> bytes:
    """Check evidence of a double vote; slash and jail its validator. Returns the validator."""
    a, b = ev.a, ev.b
    if not a.conflicts_with(b):
        raise InvalidEvidence("the two votes do not conflict")
    if not VOTE.encode(a) < VOTE.encode(b):
        raise InvalidEvidence("the votes of evidence are ordered by their encoding (one hash per offence)")
    if a.height >= height:
        raise InvalidEvidence("evidence from the future")
    if height - a.height > max_age:
        raise InvalidEvidence(f"evidence older than {max_age} blocks")
    if not (a.verify(chain_id) and b.verify(chain_id)):
        raise InvalidEvidence("a vote in the evidence is not validly signed")
    if validator_set_at(state, a.height).power_of(a.validator) == 0:
        raise InvalidEvidence("the signer was not a validator at that height")
    marker = k_evidence(ev.hash)
    if state.get(marker) is not None:
        raise InvalidEvidence("this evidence was already punished")
    # one punishment per validator, height and round, whatever pair of votes proves it
    offence = k_evidence(a.validator + a.height.to_bytes(8, "big") + a.round.to_bytes(4, "big"))
    if state.get(offence) is not None:
        raise InvalidEvidence("this equivocation was already punished")
    record = load(state, k_validator(a.validator), VALIDATOR_RECORD) or ValidatorRecord(0, False)
    if record.jailed:
        # punished once until the council bonds it again: a jailed validator's votes in the
        # blocks before its removal takes effect cannot drain its stake offence by offence
        raise InvalidEvidence("the validator is jailed already")
    state.put(marker, NIL)
    state.put(offence, NIL)
    slashed = record.stake - record.stake * slash_bps // 10_000
    store(state, k_validator(a.validator), VALIDATOR_RECORD, ValidatorRecord(stake=slashed, jailed=True))
    _, current = latest_scheduled_set(state)
    if a.validator in current:
        try:
            schedule_power(state, height, delay, a.validator, 0)
        except StakeError:
            # the last validator standing is slashed but cannot be jailed out of the set
            schedule_power(state, height, delay, a.validator, max(slashed, 1))
    return a.validator
