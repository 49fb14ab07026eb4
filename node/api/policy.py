"""Who may read what, decided from the current committed state, and which purposes fit.

==============================  =============================================================
route                           who may read it
==============================  =============================================================
``/v1/identities/{id}``         the child's guardians, enrolment authorities
``/v1/identities/{id}/requests`` the child's guardians, enrolment authorities
``/v1/requests/{id}``           the child's guardians, enrolment authorities, the terminal that
                                submitted it
``/v1/consents/{id}``           the child's guardians, enrolment authorities
``/v1/alerts``                  enrolment authorities; a terminal for its own post only
``/v1/guardians/{key}/pending`` that guardian; enrolment authorities
``/v1/terminals/{key}/requests`` that terminal; enrolment authorities
``/v1/access-log``              the child's guardians, oversight keys (and nothing else for
                                oversight keys)
``/v1/access/whoami``           any signed caller (its own roles and wards)
==============================  =============================================================

"The child's guardians" means the guardians the child's record names *now*: a guardian a court
order removed is refused everything about the child from the order's height on (its earlier
requests, their transaction bytes, its pending list, its events), whatever that guardian
signed or was asked before.

Auditors hold no role here: they verify integrity data and never need a child's records.
Integrity readers (auditors, enrolment authorities, council members, node keys) read every
transaction's bytes (node.api.server). A refusal does not reveal whether a record exists: a
caller without a role for a child gets 403 whether or not the child is enrolled, and only
enrolment authorities see 404.

Every read that serves a child's records or transaction bytes needs a stated purpose
(node.access.purpose) that fits the caller's role: 400 ``purpose-required`` without one, 403
``purpose-not-allowed`` for one the role may not state.
"""

from __future__ import annotations

from collections.abc import Iterable

from ledger.state.records import Consent, Request, k_ward
from ledger.state.view import scan_prefix
from ledger.tx.envelope import Transaction
from node.access.purpose import GUARDIAN, INTEGRITY_PURPOSES, OVERSIGHT, PURPOSES, ROLE_PURPOSES, Purpose
from node.access.signature import HEADER_PURPOSE
from node.api.auth import Caller
from node.api.refusal import Refused, forbidden
from node.app import NodeApp

MAX_LIST = 100
INTEGRITY_READERS = "auditors, enrolment authorities, council members and nodes"
#: purposes for reading the access log
ACCESS_LOG_PURPOSES = {GUARDIAN: frozenset({"guardian-review"}), OVERSIGHT: frozenset({"oversight"})}


class Policy:
    def __init__(self, app: NodeApp) -> None:
        self.app = app

    @property
    def state(self):
        return self.app.store.state

    # ---- guardianship now
    def guardian_of(self, key: bytes, identity: bytes) -> bool:
        return self.state.get(k_ward(key, identity)) is not None

    def wards(self, key: bytes, limit: int = MAX_LIST) -> list[bytes]:
        prefix = k_ward(key)
        out = []
        for k, _ in scan_prefix(self.state, prefix):
            out.append(k[len(prefix):])
            if len(out) >= limit:
                break
        return out

    # ---- records
    def may_read_child(self, caller: Caller, identity: bytes) -> bool:
        return caller.is_authority or (caller.role is None and self.guardian_of(caller.key, identity))

    def may_read_request(self, caller: Caller, record: Request) -> bool:
        if caller.is_authority:
            return True
        if caller.is_terminal:
            return record.terminal == caller.key
        return caller.role is None and self.guardian_of(caller.key, record.identity)

    def may_read_consent(self, caller: Caller, consent: Consent) -> bool:
        return self.may_read_child(caller, consent.identity)

    def may_read_tx(self, caller: Caller, tx: Transaction, crossing_readable: bool) -> bool:
        """A transaction's bytes: integrity readers; the parties of a crossing the caller may
        read; a signer, unless the transaction concerns a child the caller may no longer read."""
        if caller.reads_integrity or crossing_readable:
            return True
        if caller.key not in tx.signers:
            return False
        identity = getattr(tx.body, "identity", None)
        return identity is None or self.may_read_child(caller, identity)

    def require_integrity_reader(self, caller: Caller, what: str) -> None:
        if not caller.reads_integrity:
            raise forbidden(f"{what} is served only to integrity readers ({INTEGRITY_READERS}); "
                            f"{caller.describe()} is none of them")

    def may_read_access_log(self, caller: Caller, identity: bytes) -> bool:
        return caller.is_oversight or (caller.role is None and self.guardian_of(caller.key, identity))

    # ---- purposes
    def require_purpose(self, caller: Caller, allowed: Iterable[str] | None = None) -> Purpose:
        """The caller's stated purpose if its role may state it for this read; else refused.

        ``allowed`` defaults to the purposes of the caller's role for a child's records."""
        purpose = caller.purpose
        if purpose is None:
            raise Refused(400, "purpose-required", "a purpose is needed",
                          f"state why you read this: send {HEADER_PURPOSE}: CODE (one of {', '.join(PURPOSES)}), "
                          "optionally '; ref=<hash of your case reference>'")
        if allowed is None:
            allowed = ROLE_PURPOSES.get(caller.role_name or "", frozenset())
        permitted = frozenset(allowed)
        if purpose.code not in permitted:
            raise Refused(403, "purpose-not-allowed", "this purpose does not fit the caller's role",
                          f"{caller.describe()} may state {', '.join(sorted(permitted)) or 'no purpose'} here, "
                          f"not {purpose.code!r}")
        return purpose

    def require_tx_purpose(self, caller: Caller) -> Purpose:
        """A transaction's bytes or its crossing: the role's purposes, or ``audit`` for
        integrity readers."""
        allowed = ROLE_PURPOSES.get(caller.role_name or "", frozenset())
        return self.require_purpose(caller, allowed | (INTEGRITY_PURPOSES if caller.reads_integrity else frozenset()))

    def require_integrity_purpose(self, caller: Caller) -> Purpose:
        return self.require_purpose(caller, INTEGRITY_PURPOSES)

    def require_access_log_purpose(self, caller: Caller) -> Purpose:
        return self.require_purpose(caller, ACCESS_LOG_PURPOSES.get(caller.role_name or "", frozenset()))
