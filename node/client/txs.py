"""Building signed transactions of every kind, as clients need them.

Each method returns a signed :class:`~ledger.tx.envelope.Transaction`; ``.raw`` is what goes to
a node. Nonces are random unless given, so issuing the same body twice on purpose works, while a
resubmission of the same ``raw`` bytes is recognised by the node as the same transaction.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from ledger.crypto.keys import SigningKey
from ledger.tx import bodies as b
from ledger.tx.envelope import Transaction, make_tx


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

    def set_validator(self, council: Sequence[SigningKey], key: bytes, stake: int) -> Transaction:
        return self.make(b.GOV_SET_VALIDATOR, b.SetValidator(key, stake), council)

    def revoke_key(self, council: Sequence[SigningKey], key: bytes, reason: str = "") -> Transaction:
        return self.make(b.GOV_REVOKE_KEY, b.RevokeKey(key, reason), council)

    def rotate_key(self, council: Sequence[SigningKey], old: bytes, new: bytes) -> Transaction:
        return self.make(b.GOV_ROTATE_KEY, b.RotateKey(old, new), council)

    # ---- enrolment authority
    def enrol(self, authority: SigningKey, biometric: SigningKey, identity: bytes, *, majority_date: int,
              guardians: Sequence[bytes], approvals: int, deadline_ms: int, veto: bool) -> Transaction:
        body = b.Enrol(authority.public, identity, biometric.public, majority_date, tuple(sorted(guardians)),
                       b.Policy(approvals, deadline_ms, veto))
        return self.make(b.ENROL, body, [authority, biometric])

    def update_guardians(self, authority: SigningKey, identity: bytes, *, guardians: Sequence[bytes],
                         approvals: int, deadline_ms: int, veto: bool, order_ref: str) -> Transaction:
        body = b.UpdateGuardians(authority.public, identity, tuple(sorted(guardians)),
                                 b.Policy(approvals, deadline_ms, veto), order_ref)
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
               reason: str = "") -> Transaction:
        return self.make(b.DECISION, b.GuardianDecision(guardian.public, request, identity, decision, reason),
                         [guardian])

    def grant_consent(self, guardians: Sequence[SigningKey], identity: bytes, *, not_before: int, not_after: int,
                      direction: str = b.ANY, destination: str | None = None, companion: bytes | None = None,
                      uses: int = 1) -> Transaction:
        body = b.GrantConsent(identity, not_before, not_after, direction, destination, companion, uses)
        return self.make(b.GRANT_CONSENT, body, guardians)

    def revoke_consent(self, guardian: SigningKey, consent: bytes, identity: bytes) -> Transaction:
        return self.make(b.REVOKE_CONSENT, b.RevokeConsent(guardian.public, consent, identity), [guardian])
