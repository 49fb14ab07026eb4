"""The records the state machine keeps, their keys, and typed access to them.

Keys are short ASCII prefixes followed by fixed-width binary parts, so that prefix scans are
ordered the same way on every node (deadlines and heights are big-endian).

=====================  ==========================================================
key                    value
=====================  ==========================================================
``chain``              :class:`ChainInfo` (chain id, genesis hash, params)
``council``            :class:`Council` (threshold and member keys)
``role/<key>``         :class:`KeyRole` of an authority, terminal or auditor key
``post/<post>``        :class:`Post`
``revoked/<key>``      :class:`Revocation`
``id/<identity>``      :class:`Identity`
``cm/<commitment>``    :class:`CommitmentIndex` (which identity a biometric key belongs to)
``gw/<key><identity>`` nil: the key is a guardian of that identity
``req/<tx id>``        :class:`Request` (a crossing request and its decision)
``exp/<deadline><id>`` nil: a pending request that expires after ``deadline``
``pend/<identity><id>`` nil: the identity's pending requests
``consent/<tx id>``    :class:`Consent`
``ic/<identity><id>``  nil: the identity's consents, in id order
``alert/<h><id>``      :class:`Alert` (a denied or expired minor crossing)
``val/<key>``          :class:`ValidatorRecord` (bonded stake, jailed)
``vset/<height>``      the validator set in force from that height on
``ev/<hash>``          nil: evidence already punished
=====================  ==========================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from ledger.encoding import Bool, Int, List, Optional, Schema, Str, decode, encode
from ledger.tx.bodies import COMPANION, COUNTRY, GUARDIANS, HASH, IDENTITY, KEY, LABEL, POLICY, POST, Policy

T = TypeVar("T")

# request and crossing statuses
PERMITTED = "permitted"
PENDING = "pending"
DENIED = "denied"
EXPIRED = "expired"
STATUSES = (PERMITTED, PENDING, DENIED, EXPIRED)


def be64(n: int) -> bytes:
    return n.to_bytes(8, "big")


# --------------------------------------------------------------------------- chain and roles


@dataclass(frozen=True, slots=True)
class Params:
    """Chain parameters fixed in genesis."""

    validator_delay: int  # a validator-set change made in block h takes effect at h + delay
    slash_bps: int  # share of stake slashed for equivocation, in basis points
    evidence_max_age: int  # blocks after which evidence is no longer accepted
    max_block_txs: int
    max_block_bytes: int
    event_future_ms: int  # how far past the block time an event time may lie (clock skew)
    event_max_age_ms: int  # how old an event may be when it arrives (offline terminals)
    max_consent_ms: int  # longest travel-consent window


PARAMS = Schema(
    Params,
    {
        "validator_delay": Int(min=1, max=1000),
        "slash_bps": Int(max=10_000),
        "evidence_max_age": Int(min=1, max=10**9),
        "max_block_txs": Int(min=1, max=20_000),
        "max_block_bytes": Int(min=1024, max=8 * 1024 * 1024),
        "event_future_ms": Int(max=86_400_000),
        "event_max_age_ms": Int(max=365 * 86_400_000),
        "max_consent_ms": Int(min=1, max=5 * 365 * 86_400_000),
    },
)

DEFAULT_PARAMS = Params(
    validator_delay=2,
    slash_bps=500,
    evidence_max_age=100_000,
    max_block_txs=5000,
    max_block_bytes=4 * 1024 * 1024,
    event_future_ms=5 * 60_000,
    event_max_age_ms=7 * 86_400_000,
    max_consent_ms=366 * 86_400_000,
)


@dataclass(frozen=True, slots=True)
class ChainInfo:
    chain_id: str
    genesis_hash: bytes
    params: Params


CHAIN_INFO = Schema(ChainInfo, {"chain_id": Str(min=1, max=64), "genesis_hash": HASH, "params": PARAMS})


@dataclass(frozen=True, slots=True)
class Council:
    threshold: int
    members: tuple[bytes, ...]


COUNCIL = Schema(Council, {"threshold": Int(min=1, max=32), "members": List(KEY, min=1, max=32, unique_sorted=True)})


@dataclass(frozen=True, slots=True)
class KeyRole:
    role: str
    label: str
    post: str | None  # terminals only


KEY_ROLE = Schema(KeyRole, {"role": Str(max=32), "label": LABEL, "post": Optional(POST)})


@dataclass(frozen=True, slots=True)
class Post:
    label: str


POST_RECORD = Schema(Post, {"label": LABEL})


@dataclass(frozen=True, slots=True)
class Revocation:
    height: int
    reason: str


REVOCATION = Schema(Revocation, {"height": Int(), "reason": Str(max=200)})


# --------------------------------------------------------------------------- identities


@dataclass(frozen=True, slots=True)
class Identity:
    authority: bytes
    commitment: bytes
    majority_date: int
    guardians: tuple[bytes, ...]
    policy: Policy
    enrolled_height: int
    version: int  # 1 at enrolment, +1 per re-enrolment or guardianship change


IDENTITY_RECORD = Schema(
    Identity,
    {
        "authority": KEY,
        "commitment": KEY,
        "majority_date": Int(),
        "guardians": GUARDIANS,
        "policy": POLICY,
        "enrolled_height": Int(),
        "version": Int(min=1),
    },
)


@dataclass(frozen=True, slots=True)
class CommitmentIndex:
    identity: bytes
    active: bool  # False once a re-enrolment replaced it; a retired commitment is never reused


COMMITMENT_INDEX = Schema(CommitmentIndex, {"identity": IDENTITY, "active": Bool()})


# --------------------------------------------------------------------------- crossings


@dataclass(frozen=True, slots=True)
class Request:
    """A crossing request and everything its decision depends on, frozen at submission."""

    identity: bytes
    terminal: bytes
    post: str
    direction: str
    event_time: int
    destination: str
    companion: bytes | None
    height: int  # block that recorded the request
    time: int  # that block's time
    status: str
    deadline: int  # block time after which a pending request expires (0 if never pending)
    guardians: tuple[bytes, ...]  # guardians at submission; only they may decide
    approvals_needed: int
    veto: bool
    approvals: tuple[bytes, ...]
    denials: tuple[bytes, ...]
    consent: bytes | None  # the travel consent that permitted it
    closed_height: int | None  # block that permitted, denied or expired it


REQUEST = Schema(
    Request,
    {
        "identity": IDENTITY,
        "terminal": KEY,
        "post": POST,
        "direction": Str(max=8),
        "event_time": Int(),
        "destination": COUNTRY,
        "companion": Optional(COMPANION),
        "height": Int(),
        "time": Int(),
        "status": Str(max=16, choices=STATUSES),
        "deadline": Int(),
        "guardians": List(KEY, max=8),
        "approvals_needed": Int(max=8),
        "veto": Bool(),
        "approvals": List(KEY, max=8, unique_sorted=True),
        "denials": List(KEY, max=8, unique_sorted=True),
        "consent": Optional(HASH),
        "closed_height": Optional(Int()),
    },
)


@dataclass(frozen=True, slots=True)
class Consent:
    identity: bytes
    not_before: int
    not_after: int
    direction: str
    destination: str | None
    companion: bytes | None
    uses_left: int
    revoked: bool
    granted_height: int
    signers: tuple[bytes, ...]


CONSENT = Schema(
    Consent,
    {
        "identity": IDENTITY,
        "not_before": Int(),
        "not_after": Int(),
        "direction": Str(max=8),
        "destination": Optional(COUNTRY),
        "companion": Optional(COMPANION),
        "uses_left": Int(max=100),
        "revoked": Bool(),
        "granted_height": Int(),
        "signers": List(KEY, max=8, unique_sorted=True),
    },
)


@dataclass(frozen=True, slots=True)
class Alert:
    """A minor's crossing that was denied or expired: the signal authorities must follow up."""

    kind: str  # "denied" | "expired"
    request: bytes
    identity: bytes
    post: str
    direction: str
    event_time: int
    time: int  # block time the alert was raised


ALERT = Schema(
    Alert,
    {
        "kind": Str(max=16, choices=(DENIED, EXPIRED)),
        "request": HASH,
        "identity": IDENTITY,
        "post": POST,
        "direction": Str(max=8),
        "event_time": Int(),
        "time": Int(),
    },
)


# --------------------------------------------------------------------------- validators


@dataclass(frozen=True, slots=True)
class ValidatorRecord:
    stake: int
    jailed: bool


VALIDATOR_RECORD = Schema(ValidatorRecord, {"stake": Int(max=2**48), "jailed": Bool()})

NIL = encode(None)


# --------------------------------------------------------------------------- keys

K_CHAIN = b"chain"
K_COUNCIL = b"council"


def k_role(key: bytes) -> bytes:
    return b"role/" + key


def k_post(post: str) -> bytes:
    return b"post/" + post.encode()


def k_revoked(key: bytes) -> bytes:
    return b"revoked/" + key


def k_identity(identity: bytes) -> bytes:
    return b"id/" + identity


def k_commitment(commitment: bytes) -> bytes:
    return b"cm/" + commitment


def k_ward(guardian: bytes, identity: bytes = b"") -> bytes:
    return b"gw/" + guardian + identity


def k_request(request: bytes) -> bytes:
    return b"req/" + request


def k_expiry(deadline: int, request: bytes = b"") -> bytes:
    return b"exp/" + be64(deadline) + request


def k_pending(identity: bytes, request: bytes = b"") -> bytes:
    return b"pend/" + identity + request


def k_consent(consent: bytes) -> bytes:
    return b"consent/" + consent


def k_identity_consent(identity: bytes, consent: bytes = b"") -> bytes:
    return b"ic/" + identity + consent


def k_alert(height: int, request: bytes = b"") -> bytes:
    return b"alert/" + be64(height) + request


def k_validator(key: bytes) -> bytes:
    return b"val/" + key


def k_valset(height: int) -> bytes:
    return b"vset/" + be64(height)


def k_evidence(evidence_hash: bytes) -> bytes:
    return b"ev/" + evidence_hash


# --------------------------------------------------------------------------- typed access


_DECODED: dict[tuple[int, bytes], Any] = {}
_DECODED_MAX = 20_000


def load(reader: Any, key: bytes, schema: Schema[T]) -> T | None:
    """The record at ``key``, decoded. Records are immutable, so the same stored bytes decode to
    one shared object: a bounded memo saves re-checking a child's record at every crossing."""
    raw = reader.get(key)
    if raw is None:
        return None
    memo = (id(schema), raw)
    obj = _DECODED.get(memo)
    if obj is None:
        obj = schema.check(decode(raw))
        if len(_DECODED) >= _DECODED_MAX:
            _DECODED.clear()
        _DECODED[memo] = obj
    return obj


def store(writer: Any, key: bytes, schema: Schema[T], obj: T) -> None:
    writer.put(key, schema.encode(obj))
