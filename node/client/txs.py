"""Building signed transactions of every kind, as clients need them.

Each method returns a signed :class:`~ledger.tx.envelope.Transaction`; ``.raw`` is what goes to
a node. Nonces are random unless given, so issuing the same body twice on purpose works, while a
resubmission of the same ``raw`` bytes is recognised by the node as the same transaction.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from ledger.crypto.keys import SigningKey
from ledger.errors import InvalidValue
from ledger.params import Params
from ledger.tx import bodies as b
from ledger.tx.envelope import Transaction, make_tx


def _code(codes: tuple[str, ...], name: str, what: str) -> int:
    """The chain's number for an enumerated code (the chain holds codes, never free text)."""
    try:
        return codes.index(name)
    except ValueError:
        raise InvalidValue(f"{name!r} is not a {what}; one of: {', '.join(codes)}") from None


def _nonce(nonce: int | None) -> int:
    return secrets.randbits(63) if nonce is None else nonce


class TxFactory:
    def __init__(self, chain_id: str) -> None:
        self.chain_id = chain_id

    def make(self, kind: str, body: object, signers: Sequence[SigningKey], nonce: int | None = None) -> Transaction:
        return make_tx(kind, body, _nonce(nonce), list(signers), self.chain_id)

    # ---- council
    def register_authority(self, council: Sequence[SigningKey], key: bytes, label: str = "") -> Transaction:
        return self.make(b.GOV_REGISTER_AUTHORITY, b.RegisterAuthority(key, label), council)

    def register_post(self, council: Sequence[SigningKey], post: str, label: str = "") -> Transaction:
        return self.make(b.GOV_REGISTER_POST, b.RegisterPost(post, label), council)

    def register_terminal(self, council: Sequence[SigningKey], key: bytes, post: str, label: str = "") -> Transaction:
        return self.make(b.GOV_REGISTER_TERMINAL, b.RegisterTerminal(key, post, label), council)

    def register_auditor(self, council: Sequence[SigningKey], key: bytes, label: str = "") -> Transaction:
        return self.make(b.GOV_REGISTER_AUDITOR, b.RegisterAuditor(key, label), council)

    def register_oversight(self, council: Sequence[SigningKey], key: bytes, label: str = "") -> Transaction:
        """An oversight body (a data-protection authority): it reads access logs, nothing else."""
        return self.make(b.GOV_REGISTER_OVERSIGHT, b.RegisterOversight(key, label), council)

    def set_validator(self, council: Sequence[SigningKey], key: bytes, stake: int) -> Transaction:
        return self.make(b.GOV_SET_VALIDATOR, b.SetValidator(key, stake), council)

    def revoke_key(self, council: Sequence[SigningKey], key: bytes, reason: str = "unspecified") -> Transaction:
        return self.make(b.GOV_REVOKE_KEY, b.RevokeKey(key, _code(b.REVOKE_REASONS, reason, 'revocation reason')),
                         council)

    def rotate_key(self, council: Sequence[SigningKey], old: bytes, new: bytes) -> Transaction:
        return self.make(b.GOV_ROTATE_KEY, b.RotateKey(old, new), council)

    def schedule_upgrade(self, council: Sequence[SigningKey], height: int, version: int) -> Transaction:
        return self.make(b.GOV_SCHEDULE_UPGRADE, b.ScheduleUpgrade(height, version), council)

    def set_params(self, council: Sequence[SigningKey], height: int, params: Params) -> Transaction:
        return self.make(b.GOV_SET_PARAMS, b.SetParams(height, params), council)

    def set_council(self, council: Sequence[SigningKey], threshold: int, members: Sequence[bytes]) -> Transaction:
        return self.make(b.GOV_SET_COUNCIL, b.SetCouncil(threshold, tuple(sorted(set(members)))), council)

    def rotate_validator(self, council: Sequence[SigningKey], old: bytes, new: bytes) -> Transaction:
        return self.make(b.GOV_ROTATE_VALIDATOR, b.RotateValidator(old, new), council)

    def erase(self, council: Sequence[SigningKey], child: bytes, order: bytes,
              basis: str = "court-order") -> Transaction:
        """``child`` is the child's tag and ``order`` the salted hash of the order's reference
        (ledger.privacy.tags)."""
        return self.make(b.GOV_ERASE, b.EraseIdentity(child, order, _code(b.ERASE_BASES, basis, 'basis for erasure')),
                         council)

    # ---- enrolment authority
    def enrol(self, authority: SigningKey, biometric: SigningKey, identity: bytes, *, majority_day: int,
              guardians: Sequence[bytes], approvals: int, deadline_ms: int, veto: bool) -> Transaction:
        body = b.Enrol(authority.public, identity, biometric.public, majority_day, tuple(sorted(guardians)),
                       b.Policy(approvals, deadline_ms, veto))
        return self.make(b.ENROL, body, [authority, biometric])

    def update_guardians(self, authority: SigningKey, identity: bytes, *, guardians: Sequence[bytes],
                         approvals: int, deadline_ms: int, veto: bool, order: bytes) -> Transaction:
        """``order`` is the salted hash of the court order's reference (ledger.privacy.tags)."""
        body = b.UpdateGuardians(authority.public, identity, tuple(sorted(guardians)),
                                 b.Policy(approvals, deadline_ms, veto), order)
        return self.make(b.UPDATE_GUARDIANS, body, [authority])

    def reenrol(self, authority: SigningKey, biometric: SigningKey, identity: bytes) -> Transaction:
        return self.make(b.REENROL, b.Reenrol(authority.public, identity, biometric.public), [authority, biometric])

    # ---- terminal
    def crossing(self, terminal: SigningKey, biometric: SigningKey, identity: bytes, *, post: str,
                 direction: str, event_time: int, destination: str, companion: bytes | None = None,
                 nonce: int | None = None) -> Transaction:
        body = b.CrossingRequest(terminal.public, identity, post, direction, event_time, destination, companion)
        return self.make(b.CROSSING, body, [terminal, biometric], nonce)

    # ---- guardians
    def decide(self, guardian: SigningKey, request: bytes, identity: bytes, decision: str,
               reason: str = "unspecified") -> Transaction:
        """``reason`` is one of ledger.tx.bodies.DENY_REASONS (free text never goes on the chain)."""
        body = b.GuardianDecision(guardian.public, request, identity, decision,
                                  _code(b.DENY_REASONS, reason, 'denial reason'))
        return self.make(b.DECISION, body, [guardian])

    def grant_consent(self, guardians: Sequence[SigningKey], identity: bytes, *, not_before: int, not_after: int,
                      direction: str = b.ANY, destination: str | None = None, companion: bytes | None = None,
                      uses: int = 1) -> Transaction:
        body = b.GrantConsent(identity, not_before, not_after, direction, destination, companion, uses)
        return self.make(b.GRANT_CONSENT, body, guardians)

    def revoke_consent(self, guardian: SigningKey, consent: bytes, identity: bytes) -> Transaction:
        return self.make(b.REVOKE_CONSENT, b.RevokeConsent(guardian.public, consent, identity), [guardian])
