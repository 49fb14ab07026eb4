"""The purpose a read states: an enumerated code and, optionally, a hashed reference.

Every read of a child's records (and every read of transaction bytes, which name children)
carries a ``Custos-Purpose`` header, signed with the request (node.access.signature)::

    Custos-Purpose: case-work
    Custos-Purpose: case-work; ref=<64 hex digits>

The code says why, from the list below; each role may state only the codes that fit it. The
reference (a case file, a court order, an alert number) never travels or is stored in clear: the
caller sends a 32-byte hash of it, and the access log keeps that hash. Shown the reference and
its salt, an oversight body checks the hash; without them it reveals nothing, however guessable
the reference. The Python client derives the salt from the caller's key and the reference
(:func:`reference_hash`), so an official can reproduce it later without keeping it; any other
client may draw a salt and keep it: the node sees only the hash.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

from ledger.crypto.keys import SigningKey
from ledger.hashing import tagged_hash

TAG_REFERENCE = b"custos/purpose-ref"
SALT_DOMAIN = b"custos/purpose-ref-salt/v1\x00"
SALT_BYTES = 16
MAX_REFERENCE_BYTES = 256

#: the purpose codes, what each means; the codes are part of the access log's format
PURPOSES: dict[str, str] = {
    "guardian-review": "a guardian reviews a ward's record, crossings, consents or pending decisions",
    "border-check": "a border terminal follows the crossing requests it submitted",
    "enrolment": "an enrolment authority enrols a child or checks an enrolment it made",
    "case-work": "a child-protection case (give its reference)",
    "alert-follow-up": "following up a denied or expired minor crossing",
    "court-order": "carrying out a court order (guardianship, erasure)",
    "identification": "identifying a child without a card (1:N search)",
    "oversight": "a data-protection authority reviews who read a child's records",
    "audit": "verifying the chain: blocks and transaction bytes for integrity readers",
}

# who may state which purpose (roles as the access log names them)
GUARDIAN, TERMINAL, AUTHORITY, OVERSIGHT = "guardian", "terminal", "enrolment-authority", "oversight"
AUDITOR, COUNCIL, NODE = "auditor", "council", "node"
ROLE_PURPOSES: dict[str, frozenset[str]] = {
    GUARDIAN: frozenset({"guardian-review"}),
    TERMINAL: frozenset({"border-check"}),
    AUTHORITY: frozenset({"enrolment", "case-work", "alert-follow-up", "court-order", "identification"}),
    OVERSIGHT: frozenset({"oversight"}),
}
#: what integrity readers (auditors, authorities, council members, nodes) state for chain data
INTEGRITY_PURPOSES = frozenset({"audit"})

#: the purpose each kind of client states unless told otherwise
DEFAULT_PURPOSE = {GUARDIAN: "guardian-review", TERMINAL: "border-check", AUTHORITY: "case-work",
                   OVERSIGHT: "oversight", AUDITOR: "audit"}

_HEADER = re.compile(r"([a-z][a-z0-9-]{0,31})(?:; ref=([0-9a-f]{64}))?")


class BadPurpose(ValueError):
    """A ``Custos-Purpose`` value that is malformed or names no known purpose."""


@dataclass(frozen=True, slots=True)
class Purpose:
    code: str
    ref: bytes | None = None  # the reference's salted hash, never the reference

    def __post_init__(self) -> None:
        if self.code not in PURPOSES:
            raise BadPurpose(f"{self.code!r} is no purpose; one of: {', '.join(PURPOSES)}")
        if self.ref is not None and len(self.ref) != 32:
            raise BadPurpose("a purpose's reference is a 32-byte hash")

    def header(self) -> str:
        """The ``Custos-Purpose`` value (what the signature covers)."""
        return self.code if self.ref is None else f"{self.code}; ref={self.ref.hex()}"

    @classmethod
    def parse(cls, value: str) -> Purpose:
        m = _HEADER.fullmatch(value)
        if m is None:
            raise BadPurpose("Custos-Purpose is CODE or 'CODE; ref=<64 hex digits>'")
        return cls(m.group(1), bytes.fromhex(m.group(2)) if m.group(2) else None)

    @classmethod
    def stated(cls, key: SigningKey, code: str, reference: str | None = None) -> Purpose:
        """A purpose as a client states it: ``reference`` (if any) becomes its salted hash."""
        return cls(code, reference_hash(key, reference)[0] if reference else None)


def reference_hash(key: SigningKey, reference: str) -> tuple[bytes, bytes]:
    """(hash, salt) of a reference; the salt is derived from ``key`` and the reference, so the
    key's holder can show it later (to an oversight body) without having stored it."""
    raw = reference.strip().encode()
    if not raw:
        raise BadPurpose("the reference is empty")
    if len(raw) > MAX_REFERENCE_BYTES:
        raise BadPurpose(f"a reference is at most {MAX_REFERENCE_BYTES} bytes")
    salt = hmac.new(key.seed, SALT_DOMAIN + raw, hashlib.sha256).digest()[:SALT_BYTES]
    return check_reference(salt, reference), salt


def check_reference(salt: bytes, reference: str) -> bytes:
    """The hash a reference and its salt give (what an oversight body compares)."""
    return tagged_hash(TAG_REFERENCE, salt + reference.strip().encode())
