"""The body of each kind of transaction: its fields and their bounds.

Kinds are stable strings; a body's fields are checked by its :class:`Schema` on decode, so a
rule never sees an out-of-range value. Bodies name the actor that must sign (terminal, guardian,
authority); who else must sign (the child's biometric key, council members, enough guardians)
the rules decide from the state, see :mod:`ledger.rules`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger.encoding import Bool, Bytes, Int, List, Optional, Schema, Str
from ledger.params import PARAMS, Params

KEY = Bytes(32)
HASH = Bytes(32)
IDENTITY = Bytes(16)  # a pseudonymous identity id chosen at enrolment, never a name
LABEL = Str(max=64)  # names an institution or a device (a post, an authority), never a person
POST = Str(min=1, max=32)
TIME = Int()  # integer milliseconds since the Unix epoch, UTC
DAY = Int(max=200_000)  # whole days since 1970-01-01 UTC: dates go on the chain to the day, no finer
DAY_MS = 86_400_000
COUNTRY = Str(min=2, max=8)
# The accompanying adult, as a keyed tag: HMAC-SHA256 under the child's pseudonym key (held by
# the enrolment authority, the guardians and the child's sealed card, never by the chain) of the
# adult's normalised document number, truncated to 16 bytes. See ledger/privacy/tags.py.
COMPANION = Bytes(16)
MAX_GUARDIANS = 8

# Enumerated codes replace free text on the chain (DESIGN: no free text). The numbers are part of
# the wire format: add codes at the end, never renumber.
DENY_REASONS = ("unspecified", "not-informed", "destination-not-agreed", "companion-not-agreed",
                "custody-dispute", "safety-concern", "other")
REVOKE_REASONS = ("unspecified", "compromised", "retired", "rotated", "misuse")
ERASE_BASES = ("court-order", "retention-expired", "data-subject-request", "enrolment-error")

EXIT, ENTRY, ANY = "exit", "entry", "any"
APPROVE, DENY = "approve", "deny"

# roles a key can hold
ROLE_AUTHORITY = "enrolment-authority"
ROLE_TERMINAL = "terminal"
ROLE_AUDITOR = "auditor"
ROLE_OVERSIGHT = "oversight"  # a data-protection authority: reads the access log, nothing else


# --------------------------------------------------------------------------- governance


@dataclass(frozen=True, slots=True)
class RegisterAuthority:
    key: bytes
    label: str


@dataclass(frozen=True, slots=True)
class RegisterPost:
    post: str
    label: str


@dataclass(frozen=True, slots=True)
class RegisterTerminal:
    key: bytes
    post: str
    label: str


@dataclass(frozen=True, slots=True)
class RegisterAuditor:
    key: bytes
    label: str


@dataclass(frozen=True, slots=True)
class RegisterOversight:
    """An oversight body (a data-protection authority): it reads nodes' access logs, nothing else."""

    key: bytes
    label: str


@dataclass(frozen=True, slots=True)
class SetValidator:
    """Bond ``stake`` to validator ``key``; 0 removes it. Also releases a jailed validator."""

    key: bytes
    stake: int


@dataclass(frozen=True, slots=True)
class RevokeKey:
    key: bytes
    reason: int  # index into REVOKE_REASONS


@dataclass(frozen=True, slots=True)
class RotateKey:
    """Move every role of ``old`` (authority, terminal, auditor, guardian, council) to ``new``."""

    old: bytes
    new: bytes


# --------------------------------------------------------------------------- identities


@dataclass(frozen=True, slots=True)
class Policy:
    """How a minor's pending crossing is decided: ``approvals`` of the guardians must approve
    within ``deadline`` ms of the request's commit; with ``veto`` any single denial denies."""

    approvals: int
    deadline: int
    veto: bool


POLICY = Schema(
    Policy,
    {"approvals": Int(min=1, max=MAX_GUARDIANS), "deadline": Int(min=1, max=30 * 86_400_000), "veto": Bool()},
)
GUARDIANS = List(KEY, min=1, max=MAX_GUARDIANS, unique_sorted=True)


@dataclass(frozen=True, slots=True)
class Enrol:
    """An enrolment authority enrols a child. ``commitment`` is the Ed25519 public key derived
    from the child's biometrics; it co-signs to prove the authority holds the matching secret."""

    authority: bytes
    identity: bytes
    commitment: bytes
    majority_day: int  # the day (since 1970-01-01 UTC) from which the child crosses as an adult
    guardians: tuple[bytes, ...]
    policy: Policy


@dataclass(frozen=True, slots=True)
class UpdateGuardians:
    """A court order changes a child's guardians or policy. The chain holds only ``order``, a
    salted hash of the order's reference (ledger/privacy/tags.py); the authority keeps the
    reference and the salt, so an auditor shown them can check the hash."""

    authority: bytes
    identity: bytes
    guardians: tuple[bytes, ...]
    policy: Policy
    order: bytes


@dataclass(frozen=True, slots=True)
class Reenrol:
    """A fresh biometric commitment replaces the old one; the identity and history stay."""

    authority: bytes
    identity: bytes
    commitment: bytes


# --------------------------------------------------------------------------- crossings


@dataclass(frozen=True, slots=True)
class CrossingRequest:
    """Submitted by a terminal, co-signed by the child's biometric key just recovered from a scan."""

    terminal: bytes
    identity: bytes
    post: str
    direction: str
    event_time: int
    destination: str
    companion: bytes | None


@dataclass(frozen=True, slots=True)
class GuardianDecision:
    """A guardian approves or denies one pending request, named by its transaction id."""

    guardian: bytes
    request: bytes
    identity: bytes
    decision: str
    reason: int  # index into DENY_REASONS (0 for an approval)


@dataclass(frozen=True, slots=True)
class GrantConsent:
    """A travel consent given in advance by enough guardians (the policy's ``approvals``).

    ``destination``/``companion`` of None mean any; ``direction`` may be "any".
    """

    identity: bytes
    not_before: int
    not_after: int
    direction: str
    destination: str | None
    companion: bytes | None
    uses: int


@dataclass(frozen=True, slots=True)
class RevokeConsent:
    guardian: bytes
    consent: bytes
    identity: bytes


# --------------------------------------------------------------------------- governance that evolves


@dataclass(frozen=True, slots=True)
class ScheduleUpgrade:
    """From ``height`` on, blocks follow protocol ``version`` (its rules and transaction kinds)."""

    height: int
    version: int


@dataclass(frozen=True, slots=True)
class SetParams:
    """From ``height`` on, the chain runs with ``params`` (all of them, so the change is explicit)."""

    height: int
    params: Params


@dataclass(frozen=True, slots=True)
class SetCouncil:
    """The council replaces its members and threshold (signed by a quorum of the current council)."""

    threshold: int
    members: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class RotateValidator:
    """A validator's stake moves from its consensus key ``old`` to ``new`` when a validator-set
    change would take effect (``validator_delay`` blocks later)."""

    old: bytes
    new: bytes


# --------------------------------------------------------------------------- erasure


@dataclass(frozen=True, slots=True)
class EraseIdentity:
    """The council orders a child's personal records erased from every node.

    ``child`` is the child's tag (ledger/privacy/tags.py), not the identity id, so the order
    itself names no record once the records are gone; ``order`` is a salted hash of the order's
    reference, kept off chain by the council; ``basis`` indexes ERASE_BASES.
    """

    child: bytes
    order: bytes
    basis: int


# --------------------------------------------------------------------------- nodes


@dataclass(frozen=True, slots=True)
class AccessCheckpoint:
    """A node commits the root of its access log (node/access/log.py) to the chain.

    ``size`` and ``root`` are an RFC 6962 tree head over the log's entries; ``proof`` is the
    consistency proof from the node's previous checkpoint (empty for the first), so the chain
    itself refuses a log that was rewritten instead of extended. Signed by ``node``'s key.
    """

    node: bytes
    size: int
    root: bytes
    proof: tuple[bytes, ...]


MAX_LOG_SIZE = 2**48
MAX_CONSISTENCY_PROOF = 2 * 48  # a consistency proof has at most about 2 log2(n) hashes


# --------------------------------------------------------------------------- registry

GOV_REGISTER_AUTHORITY = "gov.register-authority"
GOV_REGISTER_POST = "gov.register-post"
GOV_REGISTER_TERMINAL = "gov.register-terminal"
GOV_REGISTER_AUDITOR = "gov.register-auditor"
GOV_REGISTER_OVERSIGHT = "gov.register-oversight"
GOV_SET_VALIDATOR = "gov.set-validator"
GOV_REVOKE_KEY = "gov.revoke-key"
GOV_ROTATE_KEY = "gov.rotate-key"
GOV_ERASE = "gov.erase"
GOV_SCHEDULE_UPGRADE = "gov.schedule-upgrade"
GOV_SET_PARAMS = "gov.set-params"
GOV_SET_COUNCIL = "gov.set-council"
GOV_ROTATE_VALIDATOR = "gov.rotate-validator"
ENROL = "identity.enrol"
UPDATE_GUARDIANS = "identity.update-guardians"
REENROL = "identity.reenrol"
CROSSING = "crossing.request"
DECISION = "guardian.decide"
GRANT_CONSENT = "consent.grant"
REVOKE_CONSENT = "consent.revoke"
ACCESS_CHECKPOINT = "node.access-checkpoint"

GOVERNANCE_KINDS = frozenset(
    {GOV_REGISTER_AUTHORITY, GOV_REGISTER_POST, GOV_REGISTER_TERMINAL, GOV_REGISTER_AUDITOR,
     GOV_REGISTER_OVERSIGHT, GOV_SET_VALIDATOR, GOV_REVOKE_KEY, GOV_ROTATE_KEY, GOV_ERASE, GOV_SCHEDULE_UPGRADE,
     GOV_SET_PARAMS, GOV_SET_COUNCIL, GOV_ROTATE_VALIDATOR}
)

BODIES: dict[str, Schema] = {
    GOV_REGISTER_AUTHORITY: Schema(RegisterAuthority, {"key": KEY, "label": LABEL}),
    GOV_REGISTER_POST: Schema(RegisterPost, {"post": POST, "label": LABEL}),
    GOV_REGISTER_TERMINAL: Schema(RegisterTerminal, {"key": KEY, "post": POST, "label": LABEL}),
    GOV_REGISTER_AUDITOR: Schema(RegisterAuditor, {"key": KEY, "label": LABEL}),
    GOV_REGISTER_OVERSIGHT: Schema(RegisterOversight, {"key": KEY, "label": LABEL}),
    GOV_SET_VALIDATOR: Schema(SetValidator, {"key": KEY, "stake": Int(max=2**48)}),
    GOV_REVOKE_KEY: Schema(RevokeKey, {"key": KEY, "reason": Int(max=len(REVOKE_REASONS) - 1)}),
    GOV_ROTATE_KEY: Schema(RotateKey, {"old": KEY, "new": KEY}),
    GOV_ERASE: Schema(EraseIdentity, {"child": HASH, "order": HASH, "basis": Int(max=len(ERASE_BASES) - 1)}),
    GOV_SCHEDULE_UPGRADE: Schema(ScheduleUpgrade, {"height": Int(min=2), "version": Int(min=1, max=1000)}),
    GOV_SET_PARAMS: Schema(SetParams, {"height": Int(min=2), "params": PARAMS}),
    GOV_SET_COUNCIL: Schema(SetCouncil, {"threshold": Int(min=1, max=32),
                                         "members": List(KEY, min=1, max=32, unique_sorted=True)}),
    GOV_ROTATE_VALIDATOR: Schema(RotateValidator, {"old": KEY, "new": KEY}),
    ENROL: Schema(
        Enrol,
        {"authority": KEY, "identity": IDENTITY, "commitment": KEY, "majority_day": DAY,
         "guardians": GUARDIANS, "policy": POLICY},
    ),
    UPDATE_GUARDIANS: Schema(
        UpdateGuardians,
        {"authority": KEY, "identity": IDENTITY, "guardians": GUARDIANS, "policy": POLICY,
         "order": HASH},
    ),
    REENROL: Schema(Reenrol, {"authority": KEY, "identity": IDENTITY, "commitment": KEY}),
    CROSSING: Schema(
        CrossingRequest,
        {"terminal": KEY, "identity": IDENTITY, "post": POST, "direction": Str(max=8, choices=(EXIT, ENTRY)),
         "event_time": TIME, "destination": COUNTRY, "companion": Optional(COMPANION)},
    ),
    DECISION: Schema(
        GuardianDecision,
        {"guardian": KEY, "request": HASH, "identity": IDENTITY,
         "decision": Str(max=8, choices=(APPROVE, DENY)), "reason": Int(max=len(DENY_REASONS) - 1)},
    ),
    GRANT_CONSENT: Schema(
        GrantConsent,
        {"identity": IDENTITY, "not_before": TIME, "not_after": TIME,
         "direction": Str(max=8, choices=(EXIT, ENTRY, ANY)), "destination": Optional(COUNTRY),
         "companion": Optional(COMPANION), "uses": Int(min=1, max=100)},
    ),
    REVOKE_CONSENT: Schema(RevokeConsent, {"guardian": KEY, "consent": HASH, "identity": IDENTITY}),
    ACCESS_CHECKPOINT: Schema(
        AccessCheckpoint,
        {"node": KEY, "size": Int(min=1, max=MAX_LOG_SIZE), "root": HASH,
         "proof": List(HASH, max=MAX_CONSISTENCY_PROOF)},
    ),
}
