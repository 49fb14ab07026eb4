"""Following the chain's headers from a trusted point without executing blocks.

A light verifier trusts one header (at first the genesis: height 0, its hash, its validator set)
and extends that trust to later headers:

* every header links to the one before it (``prev_hash``), has the next height and the chain id;
* every header names the set that signs it (``validators_hash``): that must be the set the
  previous trusted header named as next (``next_validators_hash``);
* a header that names a *different* next set is a **set change**: its commit certificate must
  carry more than 2/3 of the stake of the set that signs it (signatures verified), and the new
  set's keys and stakes must hash to the named hash;
* the header the verifier stops at is checked the same way (its certificate by its own set).

Headers in between are not signature-checked one by one: the last certified header commits to
all of them through its ``prev_hash`` chain, and each set change was certified by the set trusted
before it, so a made-up set can never be slipped in. The cost is a hash per header plus one
certificate per set change and one for the target. The trust assumption is the chain's own: more
than 2/3 of the stake of each set in force signs only one block per height.

This module is pure (no I/O): the caller fetches headers, certificates and sets.
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger.block import Commit, Header
from ledger.errors import ChainError, CustosError
from ledger.genesis import Genesis
from ledger.validators import ValidatorSet


class LightError(CustosError):
    """Headers that do not extend the trusted chain as claimed."""

    code = "light-client"


@dataclass(frozen=True, slots=True)
class Trusted:
    """The last header trusted: its height and hash, and the set that signs the next one."""

    chain_id: str
    height: int
    hash: bytes
    next_validators: ValidatorSet
    state_root: bytes | None = None  # None at genesis (the genesis state's root is not in a header)

    @classmethod
    def from_genesis(cls, genesis: Genesis) -> Trusted:
        return cls(genesis.chain_id, 0, genesis.hash, genesis.validator_set())


@dataclass(frozen=True, slots=True)
class Step:
    """One header after the trusted one, with what may be needed to trust it.

    ``commit`` certifies this header (needed at set changes and at the target);
    ``next_validators`` is the set the header names as next (needed at set changes)."""

    header: Header
    commit: Commit | None = None
    next_validators: ValidatorSet | None = None


def advance(trusted: Trusted, steps: list[Step], *, target: int | None = None,
            verify_signatures: bool = True) -> tuple[Trusted, Header | None]:
    """Extend ``trusted`` through ``steps`` (consecutive headers from ``trusted.height + 1``).

    Returns the new trusted point (the last header that is certified, directly or through a later
    certified header) and the header at ``target`` if it was among the steps and certified. Raises
    :class:`LightError` naming the first header that does not hold.
    """
    current = trusted.next_validators
    prev_hash, height = trusted.hash, trusted.height
    certified = trusted
    found: Header | None = None
    last = steps[-1].header.height if steps else height
    for step in steps:
        h = step.header
        where = f"header {h.height}"
        if h.height != height + 1:
            raise LightError(f"{where}: expected height {height + 1}")
        if h.chain_id != trusted.chain_id:
            raise LightError(f"{where}: chain {h.chain_id!r}, not {trusted.chain_id!r}")
        if h.prev_hash != prev_hash:
            raise LightError(f"{where}: does not link to the header before it")
        if h.validators_hash != current.hash:
            raise LightError(f"{where}: names validator set {h.validators_hash.hex()[:16]}, "
                             f"the trusted chain says {current.hash.hex()[:16]}")
        changes = h.next_validators_hash != h.validators_hash
        if changes or h.height == target or h.height == last:
            _certify(step, current, verify_signatures)
            nxt = current
            if changes:
                if step.next_validators is None or step.next_validators.hash != h.next_validators_hash:
                    raise LightError(f"{where}: the next validator set given does not hash to the one named")
                nxt = step.next_validators
            certified = Trusted(trusted.chain_id, h.height, h.hash, nxt, h.state_root)
            if h.height == target:
                found = h
            current = nxt
        prev_hash, height = h.hash, h.height
    return certified, found


def _certify(step: Step, validators: ValidatorSet, verify_signatures: bool) -> None:
    h = step.header
    if step.commit is None:
        raise LightError(f"header {h.height}: its commit certificate is needed and missing")
    try:
        step.commit.check(h.chain_id, validators, height=h.height, block=h.hash, verify_signatures=verify_signatures)
    except ChainError as exc:
        raise LightError(f"header {h.height}: {exc}") from None


__all__ = ["LightError", "Step", "Trusted", "advance"]
