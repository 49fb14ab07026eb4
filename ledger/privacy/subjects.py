"""Which committed transactions are about a child, and so leave the nodes when the child is erased.

A child's personal transactions are those whose body names the child's identity: enrolment,
court orders, re-enrolments, crossing requests, guardians' decisions, consents and their
revocations. Governance transactions, including the erasure order itself (which names the
child by its tag only), stay whole.
"""

from __future__ import annotations

from ledger.tx import bodies as b
from ledger.tx.envelope import Transaction

#: the kinds whose body carries the child's ``identity``
PERSONAL_KINDS = frozenset({
    b.ENROL, b.UPDATE_GUARDIANS, b.REENROL, b.CROSSING, b.DECISION, b.GRANT_CONSENT, b.REVOKE_CONSENT,
})


def subject_of(tx: Transaction) -> bytes | None:
    """The identity of the child ``tx`` is about, or None for a transaction about no child."""
    if tx.kind in PERSONAL_KINDS:
        return tx.body.identity
    return None
