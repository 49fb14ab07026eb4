"""What a rule sees: the state overlay, the block it runs in, and checks shared by rules."""

from __future__ import annotations

from dataclasses import dataclass, field

from ledger.errors import (
    InsufficientCouncilSignatures,
    MissingSignature,
    RevokedKey,
    UnexpectedSignature,
    UnknownKey,
    WrongRole,
)
from ledger.state.records import (
    COUNCIL,
    K_COUNCIL,
    KEY_ROLE,
    Council,
    KeyRole,
    Params,
    k_revoked,
    k_role,
    load,
)
from ledger.state.view import Overlay
from ledger.tx.envelope import Transaction


@dataclass(frozen=True, slots=True)
class Event:
    """Something a user should hear about: a pending crossing, a decision, an alert.

    Events are derived from execution (never stored in blocks), so every node and every
    auditor derives the same ones from the same blocks.
    """

    kind: str
    request: bytes
    identity: bytes
    status: str
    guardians: tuple[bytes, ...] = ()
    post: str = ""
    terminal: bytes = b""  # the terminal that submitted the request


@dataclass(slots=True)
class BlockEnv:
    chain_id: str
    height: int
    time: int
    params: Params
    # Re-executing a committed block whose certified root covers what this executor lacks: the
    # records of children erased before it got them (see ledger.state.authenticated).
    certified: bool = False
    version: int = 1  # the protocol version in force (ledger/protocol.py)


@dataclass(slots=True)
class Ctx:
    """One transaction's execution: writes go to ``state``, events to ``events``."""

    env: BlockEnv
    state: Overlay
    tx: Transaction
    events: list[Event] = field(default_factory=list)

    @property
    def height(self) -> int:
        return self.env.height

    @property
    def time(self) -> int:
        return self.env.time


# --------------------------------------------------------------------------- signer checks


def require_signers(tx: Transaction, *keys: bytes) -> None:
    """The transaction is signed by exactly ``keys``: none missing, none extra."""
    wanted = frozenset(keys)
    have = tx.signers
    missing = wanted - have
    if missing:
        raise MissingSignature(f"missing signature of {_hex(min(missing))}")
    extra = have - wanted
    if extra:
        raise UnexpectedSignature(f"signature of {_hex(min(extra))} has no part in {tx.kind}")


def require_quorum(tx: Transaction, allowed: tuple[bytes, ...], threshold: int, what: str,
                   error: type = InsufficientCouncilSignatures) -> tuple[bytes, ...]:
    """At least ``threshold`` of ``allowed`` signed, and nobody else."""
    signers = tx.signers
    extra = signers.difference(allowed)
    if extra:
        raise UnexpectedSignature(f"signature of {_hex(min(extra))}, who is not a member of the {what}")
    if len(signers) < threshold:
        raise error(f"{len(signers)} of the {what} signed; {threshold} are needed")
    return tuple(sorted(signers))


def require_not_revoked(state: Overlay, key: bytes) -> None:
    if state.get(k_revoked(key)) is not None:
        raise RevokedKey(f"key {_hex(key)} was revoked")


def require_role(state: Overlay, key: bytes, role: str) -> KeyRole:
    """``key`` is registered with ``role`` and not revoked."""
    record = load(state, k_role(key), KEY_ROLE)
    require_not_revoked(state, key)
    if record is None:
        raise UnknownKey(f"key {_hex(key)} is not registered (a {role} key is needed)")
    if record.role != role:
        raise WrongRole(f"key {_hex(key)} is a {record.role} key; a {role} key is needed")
    return record


def council_of(state: Overlay) -> Council:
    council = load(state, K_COUNCIL, COUNCIL)
    if council is None:  # genesis always writes it
        raise UnknownKey("the chain has no council")
    return council


def _hex(key: bytes) -> str:
    return key.hex()[:16]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a committed transaction did: for crossings the status it was recorded with, and a
    reference (the consent that permitted it, the request a decision closed)."""

    status: str = "ok"
    ref: bytes | None = None
