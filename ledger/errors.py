"""The error family of the ledger core.

Every error the ledger raises on purpose derives from :class:`CustosError` and can explain
itself in one line (``diagnostics()``) and name a stable problem ``type`` for the HTTP API
(RFC 9457). Rejections of a transaction name the rule they break, so a terminal, a guardian's
client and an auditor all see the same reason.
"""

from __future__ import annotations

PROBLEM_BASE = "https://custos.dev/problems/"


class CustosError(Exception):
    """Base of every deliberate error in Custos."""

    #: stable short name, used as the last segment of the problem ``type`` URI
    code = "error"

    def diagnostics(self) -> str:
        return f"{self.code}: {self}"

    @property
    def problem_type(self) -> str:
        return PROBLEM_BASE + self.code


class DecodeError(CustosError, ValueError):
    """Bytes that are not the canonical encoding of a valid object."""

    code = "malformed"

    def __init__(self, message: str, path: str = "") -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class CryptoError(CustosError):
    """A key or signature that cannot be used (wrong length, bad passphrase, ...)."""

    code = "crypto"


class KeyFileError(CryptoError):
    code = "key-file"


class ChainError(CustosError):
    """A block or chain that breaks the protocol; names the height and the check."""

    code = "invalid-chain"

    def __init__(
        self,
        check: str,
        message: str,
        *,
        height: int | None = None,
        obj: str | None = None,
        expected: object = None,
        found: object = None,
    ) -> None:
        self.check = check
        self.height = height
        self.obj = obj
        self.expected = expected
        self.found = found
        where = f"height {height}: " if height is not None else ""
        what = f" ({obj})" if obj else ""
        diff = ""
        if expected is not None or found is not None:
            diff = f"; expected {_show(expected)}, found {_show(found)}"
        super().__init__(f"{where}{check}{what}: {message}{diff}")


class InvalidBlock(ChainError):
    code = "invalid-block"


class ErasedTransactions(InvalidBlock):
    """A block whose stored copy holds stubs of erased transactions (see :mod:`ledger.block`).

    Its header, transaction root, certificates and log entries verify, but its transactions
    cannot be re-executed: the erased ones are gone. ``positions`` are the stubs' places in the
    block.
    """

    code = "erased-transactions"
    CHECK = "tx-erased"

    def __init__(self, height: int, positions: list[int]) -> None:
        self.positions = list(positions)
        where = ", ".join(map(str, self.positions))
        super().__init__(
            self.CHECK,
            f"the transactions at positions {where} were erased by order and only their stubs are kept; "
            "the block cannot be re-executed without the erased children's recorded state",
            height=height, obj="block", found=f"{len(self.positions)} stub(s)")


class StorageError(CustosError):
    code = "storage"


def _show(value: object) -> str:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    return repr(value)


# --------------------------------------------------------------------------- transactions


class RejectedTransaction(CustosError):
    """A transaction that breaks a rule of the state machine.

    ``rule`` is the stable name of the rule; subclasses exist so that callers can catch a
    family, but the rule name is what travels over the wire.
    """

    code = "rejected"
    rule = "rejected"

    def __init__(self, message: str, *, rule: str | None = None) -> None:
        if rule is not None:
            self.rule = rule
        super().__init__(message)

    @property
    def problem_type(self) -> str:
        return PROBLEM_BASE + self.rule

    def diagnostics(self) -> str:
        return f"rejected by rule {self.rule}: {self}"


class MalformedTransaction(RejectedTransaction):
    """The transaction bytes or fields are not acceptable (a decode or bounds error)."""

    rule = "malformed-transaction"


class DuplicateTransaction(RejectedTransaction):
    """The transaction is committed already, or appears twice in one block."""

    rule = "duplicate-transaction"


class BadSignature(RejectedTransaction):
    """A signature does not verify for this chain and transaction."""

    rule = "bad-signature"


class MissingSignature(RejectedTransaction):
    """A key that must sign this transaction did not."""

    rule = "missing-signature"


class UnexpectedSignature(RejectedTransaction):
    """A signature by a key that has no part in this transaction."""

    rule = "unexpected-signature"


class UnknownKey(RejectedTransaction):
    """The signing key is not registered for the role this transaction needs."""

    rule = "unknown-key"


class RevokedKey(RejectedTransaction):
    """The signing key was revoked by the council."""

    rule = "revoked-key"


class WrongRole(RejectedTransaction):
    """The key is registered, but its role may not do this."""

    rule = "wrong-role"


class InsufficientCouncilSignatures(RejectedTransaction):
    """A governance transaction without the council's k-of-n signatures."""

    rule = "council-quorum"


class AlreadyExists(RejectedTransaction):
    """The object this transaction creates exists already."""

    rule = "already-exists"


class NotFound(RejectedTransaction):
    """The transaction refers to an object the chain does not have."""

    rule = "not-found"


class InvalidValue(RejectedTransaction):
    """A field's value breaks a rule (window order, policy bounds, ...)."""

    rule = "invalid-value"


class NotGuardian(RejectedTransaction):
    """The signer is not a guardian of the child concerned."""

    rule = "not-guardian"


class DuplicateDecision(RejectedTransaction):
    """This guardian already decided on this request."""

    rule = "duplicate-decision"


class RequestNotPending(RejectedTransaction):
    """The crossing request was already permitted, denied or expired."""

    rule = "request-not-pending"


class WrongPost(RejectedTransaction):
    """A terminal submitted for a border post it is not bound to."""

    rule = "wrong-post"


class EventTimeOutOfRange(RejectedTransaction):
    """The event time lies too far in the future, or too far in the past to be accepted."""

    rule = "event-time-out-of-range"


class BiometricMismatch(RejectedTransaction):
    """The crossing was not signed with the child's enrolled biometric key."""

    rule = "biometric-mismatch"


class ConsentNotActive(RejectedTransaction):
    """The travel consent is revoked, used up or past its window."""

    rule = "consent-not-active"


class StakeError(RejectedTransaction):
    """A validator-set change that would break the set's rules."""

    rule = "validator-set"


class InvalidEvidence(RejectedTransaction):
    """Evidence of equivocation that does not prove anything."""

    rule = "invalid-evidence"


class Erased(RejectedTransaction):
    """The child's records were erased by order; nothing about the child can be done or read."""

    rule = "erased"


class KindNotInProtocol(RejectedTransaction):
    """The transaction kind is not part of the protocol version in force at this height."""

    rule = "kind-not-in-protocol"
