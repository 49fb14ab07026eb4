"""Validator sets: who may sign blocks at a height, with what voting power.

Voting power is the stake the council bonded. A set is kept sorted by public key so that its
hash, its quorum arithmetic and its proposer choice are the same on every node.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ledger.encoding import Bytes, Int, List, Schema, encode
from ledger.errors import DecodeError
from ledger.hashing import TAG_VALIDATORS, tagged_hash

MAX_VALIDATORS = 128
MAX_POWER = 2**48  # keeps sums of powers far from overflow in any language


@dataclass(frozen=True, slots=True)
class Validator:
    key: bytes
    power: int


VALIDATOR = Schema(Validator, {"key": Bytes(32), "power": Int(min=1, max=MAX_POWER)})


class ValidatorSet:
    """An immutable, sorted set of validators with positive power."""

    __slots__ = ("_index", "hash", "total_power", "validators")

    def __init__(self, validators: Iterable[Validator]) -> None:
        vals = tuple(sorted(validators, key=lambda v: v.key))
        if not vals:
            raise ValueError("a validator set cannot be empty")
        if len(vals) > MAX_VALIDATORS:
            raise ValueError(f"at most {MAX_VALIDATORS} validators")
        for i, v in enumerate(vals):
            if len(v.key) != 32 or not 1 <= v.power <= MAX_POWER:
                raise ValueError(f"invalid validator {v.key.hex()} with power {v.power}")
            if i and vals[i - 1].key == v.key:
                raise ValueError(f"validator {v.key.hex()} listed twice")
        self.validators = vals
        self._index = {v.key: i for i, v in enumerate(vals)}
        self.total_power = sum(v.power for v in vals)
        self.hash = tagged_hash(TAG_VALIDATORS, self.encode())

    # ---- wire
    def wire(self) -> list:
        return [VALIDATOR.wire(v) for v in self.validators]

    def encode(self) -> bytes:
        return encode(self.wire())

    @classmethod
    def from_wire(cls, value: object, path: str = "validators") -> ValidatorSet:
        items = List(VALIDATOR, min=1, max=MAX_VALIDATORS, unique_sorted=False).check(value, path)
        try:
            vs = cls(items)
        except ValueError as exc:
            raise DecodeError(str(exc), path) from None
        if vs.validators != items:
            raise DecodeError("validators must be sorted by key", path)
        return vs

    # ---- queries
    def __len__(self) -> int:
        return len(self.validators)

    def __iter__(self):
        return iter(self.validators)

    def __contains__(self, key: bytes) -> bool:
        return key in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ValidatorSet) and self.hash == other.hash

    def __hash__(self) -> int:
        return hash(self.hash)

    def power_of(self, key: bytes) -> int:
        i = self._index.get(key)
        return 0 if i is None else self.validators[i].power

    def has_quorum(self, power: int) -> bool:
        """More than two thirds of the total power (the commit and lock threshold)."""
        return 3 * power > 2 * self.total_power

    def exceeds_one_third(self, power: int) -> bool:
        """More than one third: at least one honest validator is among them."""
        return 3 * power > self.total_power

    def proposer(self, height: int, round_: int) -> bytes:
        """The proposer of (height, round), chosen with probability proportional to power.

        Stateless: a hash of height and round picks a point on the line of cumulative power.
        Every node and every auditor computes the same choice from the set alone.
        """
        digest = tagged_hash(b"custos/proposer", encode([height, round_, self.hash]))
        point = int.from_bytes(digest, "big") % self.total_power
        for v in self.validators:
            if point < v.power:
                return v.key
            point -= v.power
        raise AssertionError("unreachable: point is below the total power")

    def with_power(self, key: bytes, power: int) -> ValidatorSet:
        """A copy with ``key`` set to ``power`` (0 removes it)."""
        rest = [v for v in self.validators if v.key != key]
        if power > 0:
            rest.append(Validator(key, power))
        return ValidatorSet(rest)

    def __repr__(self) -> str:
        return f"ValidatorSet({len(self)} validators, power {self.total_power}, {self.hash.hex()[:12]})"
