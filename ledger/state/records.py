"""The records the state machine keeps, their keys, and typed access to them.

This module is the one owner of state keys: rules, API and audit call the ``k_*`` functions and
the prefix constants here, never spell a prefix themselves.

Keys are short ASCII prefixes followed by fixed-width binary parts, so that prefix scans are
ordered the same way on every node (deadlines and heights are big-endian). There are three kinds:

**Global records** (authenticated by the state root):

=====================  ==========================================================
``chain``              :class:`ChainInfo` (chain id, genesis hash, params)
``council``            :class:`Council` (threshold and member keys)
``role/<key>``         :class:`KeyRole` of an authority, terminal, auditor or oversight key
``post/<post>``        :class:`Post`
``revoked/<key>``      :class:`Revocation`
``val/<key>``          :class:`ValidatorRecord` (bonded stake, jailed)
``vset/<height>``      the validator set in force from that height on
``ev/<hash>``          nil: evidence already punished
``proto/<height>``     the protocol version in force from that height on
``params/<height>``    :class:`ledger.params.Params` in force from that height on (scheduled)
``erased/<tag>``       :class:`Erased`: the tombstone of an erased child (tag, never the id)
``acl/<node key>``     :class:`AccessCheckpointRecord`: the node's last access-log checkpoint
``txlog``              :class:`TxLog`: size and right edge of the transaction-id log
                       (protocol 4 on, :mod:`ledger.state.txindex`)
=====================  ==========================================================

**A child's records**, all under ``c/<identity>`` (16 bytes), so that one child's records form
one subtree of the state and erasing a child deletes one prefix:

=========================  ======================================================
``c/<id>i``                :class:`Identity`
``c/<id>m<commitment>``    nil: a biometric commitment of this child (current or retired)
``c/<id>r<request>``       :class:`Request` (a crossing request and its decision)
``c/<id>p<request>``       nil: a pending request (protocols 1 to 4; from 5, ``x/pd/``)
``c/<id>c<consent>``       :class:`Consent`
``c/<id>a<consent>``       nil: a consent that may still be used
``c/<id>l<request>``       :class:`Alert` (a denied or expired minor crossing)
=========================  ======================================================

**Derived indexes** under ``x/``: functions of the records above that rules and reads use to
find them (rebuilt from the records, never authenticated, deleted with the child):

===============================  ===============================================
``x/cm/<commitment>``            :class:`CommitmentIndex` (whose key it is, still active?)
``x/gw/<guardian><id>``          nil: the key is a guardian of that child
``x/exp/<deadline><id><req>``    nil: a pending request that expires after ``deadline``
``x/alert/<height><id><req>``    nil: an alert raised at that height
``x/ct/<tag>``                   the identity id a child tag stands for
``x/rq/<request or consent>``    the identity id a request or consent concerns
``x/ret/<day><id>``              nil: the child's records fall due for erasure on that day
``x/pd/<id><req>``               nil: a pending request of the child (protocol 5 on)
===============================  ===============================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from ledger.encoding import Bool, Int, List, Optional, Schema, Str, decode, encode
from ledger.params import DEFAULT_PARAMS as DEFAULT_PARAMS  # re-exported: the chain record holds them
from ledger.params import PARAMS, Params
from ledger.tx.bodies import (
    COMPANION,
    COUNTRY,
    DAY,
    ERASE_BASES,
    GUARDIANS,
    HASH,
    IDENTITY,
    KEY,
    LABEL,
    POLICY,
    POST,
    REVOKE_REASONS,
    Policy,
)

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
    reason: int  # index into ledger.tx.bodies.REVOKE_REASONS


REVOCATION = Schema(Revocation, {"height": Int(), "reason": Int(max=len(REVOKE_REASONS) - 1)})


@dataclass(frozen=True, slots=True)
class Erased:
    """What stays of an erased child: when, on which order (a salted hash), on what basis."""

    height: int
    order: bytes
    basis: int  # index into ledger.tx.bodies.ERASE_BASES


ERASED = Schema(Erased, {"height": Int(), "order": HASH, "basis": Int(max=len(ERASE_BASES) - 1)})


@dataclass(frozen=True, slots=True)
class AccessCheckpointRecord:
    """The tree head of a node's access log last committed, and the transaction that did it."""

    size: int
    root: bytes
    height: int
    tx: bytes


ACCESS_CHECKPOINT_RECORD = Schema(
    AccessCheckpointRecord, {"size": Int(), "root": HASH, "height": Int(), "tx": HASH})


@dataclass(frozen=True, slots=True)
class TxLog:
    """The transaction-id log (:mod:`ledger.state.txindex`): its size and its right edge, the
    hashes of its complete subtrees, largest first (one per set bit of ``size``)."""

    size: int
    frontier: tuple[bytes, ...]


TX_LOG = Schema(TxLog, {"size": Int(), "frontier": List(HASH, max=64)})


# --------------------------------------------------------------------------- identities


@dataclass(frozen=True, slots=True)
class Identity:
    authority: bytes
    commitment: bytes
    majority_day: int
    guardians: tuple[bytes, ...]
    policy: Policy
    enrolled_height: int
    version: int  # 1 at enrolment, +1 per re-enrolment or guardianship change
    erase_day: int  # the day its records are erased when retention ends (0: kept until an order)


IDENTITY_RECORD = Schema(
    Identity,
    {
        "authority": KEY,
        "commitment": KEY,
        "majority_day": DAY,
        "guardians": GUARDIANS,
        "policy": POLICY,
        "enrolled_height": Int(),
        "version": Int(min=1),
        "erase_day": DAY,
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
K_TX_LOG = b"txlog"
P_ROLE = b"role/"
P_POST = b"post/"
P_REVOKED = b"revoked/"
P_VALIDATOR = b"val/"
P_VALSET = b"vset/"
P_EVIDENCE = b"ev/"
P_ERASED = b"erased/"
P_PROTOCOL = b"proto/"
P_PARAMS_AT = b"params/"
P_ACCESS_CHECKPOINT = b"acl/"
P_CHILD = b"c/"
P_DERIVED = b"x/"
P_COMMITMENT = b"x/cm/"
P_WARD = b"x/gw/"
P_EXPIRY = b"x/exp/"
P_ALERT = b"x/alert/"
P_CHILD_TAG = b"x/ct/"
P_SUBJECT = b"x/rq/"
P_PENDING_INDEX = b"x/pd/"
P_RETENTION = b"x/ret/"
CHILD_KEY_LEN = len(P_CHILD) + 16  # c/ + identity id

# sub-prefixes of a child's records, after c/<identity>
_IDENTITY, _COMMITMENT, _REQUEST, _PENDING, _CONSENT, _ACTIVE_CONSENT, _ALERT = b"i", b"m", b"r", b"p", b"c", b"a", b"l"


def k_role(key: bytes) -> bytes:
    return P_ROLE + key


def k_post(post: str) -> bytes:
    return P_POST + post.encode()


def k_revoked(key: bytes) -> bytes:
    return P_REVOKED + key


def k_validator(key: bytes) -> bytes:
    return P_VALIDATOR + key


def k_valset(height: int) -> bytes:
    return P_VALSET + be64(height)


def k_evidence(evidence_hash: bytes) -> bytes:
    return P_EVIDENCE + evidence_hash


def k_protocol(height: int) -> bytes:
    return P_PROTOCOL + be64(height)


def k_params_at(height: int) -> bytes:
    return P_PARAMS_AT + be64(height)


def k_erased(tag: bytes) -> bytes:
    return P_ERASED + tag


def k_access_checkpoint(node: bytes) -> bytes:
    return P_ACCESS_CHECKPOINT + node


def k_child(identity: bytes) -> bytes:
    """The prefix of every record of one child."""
    return P_CHILD + identity


def child_of_key(key: bytes) -> bytes | None:
    """The identity id whose records hold ``key``, or None for a global or derived key."""
    if key.startswith(P_CHILD) and len(key) > CHILD_KEY_LEN:
        return key[len(P_CHILD):CHILD_KEY_LEN]
    return None


def k_identity(identity: bytes) -> bytes:
    return P_CHILD + identity + _IDENTITY


def k_child_commitment(identity: bytes, commitment: bytes = b"") -> bytes:
    return P_CHILD + identity + _COMMITMENT + commitment


def k_request(identity: bytes, request: bytes = b"") -> bytes:
    return P_CHILD + identity + _REQUEST + request


def k_pending(identity: bytes, request: bytes = b"") -> bytes:
    """A pending request's marker in the child's tree (protocols 1 to 4)."""
    return P_CHILD + identity + _PENDING + request


def k_pending_index(identity: bytes, request: bytes = b"") -> bytes:
    """A pending request's marker in the derived index (protocol 5 on)."""
    return P_PENDING_INDEX + identity + request


def k_consent(identity: bytes, consent: bytes = b"") -> bytes:
    return P_CHILD + identity + _CONSENT + consent


def k_identity_consent(identity: bytes, consent: bytes = b"") -> bytes:
    """A consent of the child that may still be used (not revoked, uses left)."""
    return P_CHILD + identity + _ACTIVE_CONSENT + consent


def k_alert(identity: bytes, request: bytes = b"") -> bytes:
    return P_CHILD + identity + _ALERT + request


def k_commitment(commitment: bytes) -> bytes:
    return P_COMMITMENT + commitment


def k_ward(guardian: bytes, identity: bytes = b"") -> bytes:
    return P_WARD + guardian + identity


def k_expiry(deadline: int, identity: bytes = b"", request: bytes = b"") -> bytes:
    return P_EXPIRY + be64(deadline) + identity + request


def k_alert_at(height: int, identity: bytes = b"", request: bytes = b"") -> bytes:
    return P_ALERT + be64(height) + identity + request


def k_child_tag(tag: bytes) -> bytes:
    return P_CHILD_TAG + tag


def k_subject(record_id: bytes) -> bytes:
    """Which child a request or consent (named by its transaction id) concerns."""
    return P_SUBJECT + record_id


def k_retention(day: int, identity: bytes = b"") -> bytes:
    return P_RETENTION + be64(day) + identity


def split_time_key(prefix: bytes, key: bytes) -> tuple[int, bytes, bytes]:
    """(time, identity, record id) of an ``x/exp/`` or ``x/alert/`` key."""
    rest = key[len(prefix):]
    return int.from_bytes(rest[:8], "big"), rest[8:24], rest[24:]


def subject_of(reader: Any, record_id: bytes) -> bytes | None:
    """The identity id a request or consent concerns, if the state knows it."""
    return reader.get(k_subject(record_id))


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


def request_by_id(reader: Any, request_id: bytes) -> Request | None:
    """A crossing request by its id alone (the subject index names the child it concerns)."""
    identity = subject_of(reader, request_id)
    return None if identity is None else load(reader, k_request(identity, request_id), REQUEST)


def consent_by_id(reader: Any, consent_id: bytes) -> Consent | None:
    identity = subject_of(reader, consent_id)
    return None if identity is None else load(reader, k_consent(identity, consent_id), CONSENT)
