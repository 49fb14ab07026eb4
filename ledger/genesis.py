"""Genesis: the chain id, the council, the first validators and their stakes, the parameters.

The genesis file is TOML (so an operator can comment it; see ``configs/genesis.example.toml``).
It is validated with pydantic for clear errors, then turned into a canonical :class:`Genesis`
whose hash every node and auditor must agree on: block 1 names it as its previous hash.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ledger.encoding import Bytes, Int, List, Schema, Str
from ledger.errors import DecodeError
from ledger.hashing import TAG_GENESIS, tagged_hash
from ledger.protocol import LATEST, SUPPORTED, encode_version
from ledger.state.authenticated import Commitment, commit
from ledger.state.records import (
    CHAIN_INFO,
    COUNCIL,
    DEFAULT_PARAMS,
    K_CHAIN,
    K_COUNCIL,
    PARAMS,
    VALIDATOR_RECORD,
    ChainInfo,
    Council,
    Params,
    ValidatorRecord,
    k_protocol,
    k_validator,
    k_valset,
)
from ledger.validators import MAX_POWER, Validator, ValidatorSet


@dataclass(frozen=True, slots=True)
class GenesisValidator:
    key: bytes
    stake: int
    label: str


@dataclass(frozen=True, slots=True)
class Genesis:
    chain_id: str
    genesis_time: int
    council: Council
    validators: tuple[GenesisValidator, ...]
    params: Params
    protocol_version: int = LATEST  # the rules block 1 follows (ledger/protocol.py)

    @property
    def hash(self) -> bytes:
        return tagged_hash(TAG_GENESIS, GENESIS.encode(self))

    def validator_set(self) -> ValidatorSet:
        return ValidatorSet(Validator(v.key, v.stake) for v in self.validators)

    def chain_info(self) -> ChainInfo:
        return ChainInfo(chain_id=self.chain_id, genesis_hash=self.hash, params=self.params)

    def state_writes(self) -> dict[bytes, bytes]:
        """The state before block 1."""
        writes = {
            K_CHAIN: CHAIN_INFO.encode(self.chain_info()),
            K_COUNCIL: COUNCIL.encode(self.council),
            k_valset(1): self.validator_set().encode(),
            k_protocol(1): encode_version(self.protocol_version),
        }
        for v in self.validators:
            writes[k_validator(v.key)] = VALIDATOR_RECORD.encode(ValidatorRecord(stake=v.stake, jailed=False))
        return writes

    def state_commitment(self) -> Commitment:
        """The authenticated state before block 1: its root and tree nodes."""
        return commit(lambda _: None, sorted(self.state_writes().items()))

    def state_root(self) -> bytes:
        return self.state_commitment().root


GENESIS_VALIDATOR = Schema(
    GenesisValidator, {"key": Bytes(32), "stake": Int(min=1, max=MAX_POWER), "label": Str(max=64)}
)
GENESIS = Schema(
    Genesis,
    {
        "chain_id": Str(min=1, max=64),
        "genesis_time": Int(),
        "council": COUNCIL,
        "validators": List(GENESIS_VALIDATOR, min=1, max=128),
        "params": PARAMS,
        "protocol_version": Int(min=1, max=1000),
    },
)


# --------------------------------------------------------------------------- the file


def _hex32(value: str) -> bytes:
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise ValueError("expected 64 hex digits") from None
    if len(raw) != 32:
        raise ValueError("expected a 32-byte key (64 hex digits)")
    return raw


class _ValidatorIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str
    stake: int = Field(ge=1, le=MAX_POWER)
    label: str = Field(default="", max_length=64)

    @field_validator("key")
    @classmethod
    def _key(cls, v: str) -> str:
        _hex32(v)
        return v


class _CouncilIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    threshold: int = Field(ge=1, le=32)
    members: list[str] = Field(min_length=1, max_length=32)

    @field_validator("members")
    @classmethod
    def _members(cls, v: list[str]) -> list[str]:
        for m in v:
            _hex32(m)
        if len(set(v)) != len(v):
            raise ValueError("a council member is listed twice")
        return v


class _ParamsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    validator_delay: int = DEFAULT_PARAMS.validator_delay
    slash_bps: int = DEFAULT_PARAMS.slash_bps
    evidence_max_age: int = DEFAULT_PARAMS.evidence_max_age
    max_block_txs: int = DEFAULT_PARAMS.max_block_txs
    max_block_bytes: int = DEFAULT_PARAMS.max_block_bytes
    event_future_ms: int = DEFAULT_PARAMS.event_future_ms
    event_max_age_ms: int = DEFAULT_PARAMS.event_max_age_ms
    max_consent_ms: int = DEFAULT_PARAMS.max_consent_ms
    retention_days: int = DEFAULT_PARAMS.retention_days


class _GenesisIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    chain_id: str = Field(min_length=1, max_length=64)
    genesis_time: int = Field(ge=0)
    council: _CouncilIn
    validators: list[_ValidatorIn] = Field(min_length=1, max_length=128)
    params: _ParamsIn = _ParamsIn()
    protocol_version: int = Field(default=LATEST, ge=1, le=1000)


def genesis_from_dict(doc: dict) -> Genesis:
    """Validate a parsed genesis document; :class:`DecodeError` names the offending field."""
    try:
        g = _GenesisIn.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise DecodeError(f"{first['msg']} ({exc.error_count()} problem(s) in genesis)", where) from None
    if g.council.threshold > len(g.council.members):
        raise DecodeError("threshold exceeds the number of members", "council.threshold")
    members = tuple(sorted(_hex32(m) for m in g.council.members))
    validators = tuple(sorted((GenesisValidator(_hex32(v.key), v.stake, v.label) for v in g.validators),
                              key=lambda v: v.key))
    genesis = Genesis(
        chain_id=g.chain_id,
        genesis_time=g.genesis_time,
        council=Council(threshold=g.council.threshold, members=members),
        validators=validators,
        params=Params(**g.params.model_dump()),
        protocol_version=g.protocol_version,
    )
    if genesis.protocol_version not in SUPPORTED:
        raise DecodeError(f"this software knows protocol versions {SUPPORTED[0]}..{SUPPORTED[-1]}", "protocol_version")
    # the canonical schemas apply their bounds too (params ranges, duplicate validators)
    GENESIS.decode(GENESIS.encode(genesis))
    try:
        genesis.validator_set()
    except ValueError as exc:
        raise DecodeError(str(exc), "validators") from None
    return genesis


def genesis_from_toml(data: bytes, where: str = "genesis") -> Genesis:
    """Parse a genesis file's bytes (reading the file: :func:`node.genesis_file.load_genesis`)."""
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DecodeError(f"not UTF-8 text: {exc}", where) from None
    except tomllib.TOMLDecodeError as exc:
        raise DecodeError(f"not valid TOML: {exc}", where) from None
    return genesis_from_dict(doc)


def genesis_to_toml(genesis: Genesis) -> str:
    """Write a genesis back as TOML (used by the devnet to create one)."""
    lines = [
        "# Custos genesis. Every node and auditor of this chain must use exactly this file.",
        f'chain_id = "{genesis.chain_id}"',
        f"genesis_time = {genesis.genesis_time}  # ms since the Unix epoch, UTC",
        f"protocol_version = {genesis.protocol_version}  # the rules block 1 follows",
        "",
        "[council]  # k-of-n keys that govern the chain",
        f"threshold = {genesis.council.threshold}",
        "members = [",
        *[f'  "{m.hex()}",' for m in genesis.council.members],
        "]",
        "",
        "[params]",
        *[f"{name} = {getattr(genesis.params, name)}" for name in PARAMS.spec],
    ]
    for v in genesis.validators:
        lines += ["", "[[validators]]", f'key = "{v.key.hex()}"', f"stake = {v.stake}", f'label = "{v.label}"']
    return "\n".join(lines) + "\n"
