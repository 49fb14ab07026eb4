"""What an audit finds: the first failure (height, object, check, expected vs found) and the report.

An audit stops at the first failure: whatever follows a broken block would only repeat it.
Every check the audit performs has a stable name (``prev-hash``, ``commit-quorum``,
``tx-index``...) so that scripts can act on it; ``execute_block`` and ``Commit.check`` name
theirs, the auditor adds its own (see :data:`AUDIT_CHECKS`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ledger.errors import ChainError, CustosError

#: checks the auditor adds to those of ``ledger.chain.execute_block`` and ``Commit.check``
AUDIT_CHECKS = {
    "genesis-encoding": "the source's genesis is its canonical encoding",
    "genesis-hash": "the source's genesis is the pinned one (--genesis)",
    "block-missing": "the source holds every block up to its tip",
    "block-encoding": "a block is the canonical encoding of a well-formed block",
    "commit-missing": "every block has its commit certificate",
    "commit-encoding": "a commit certificate is canonically encoded",
    "hash-index": "the store's header-hash index points at the right height",
    "tx-index": "the store's transaction index agrees with re-execution (height, position, log index, result)",
    "log-node": "the store's log nodes agree with the re-executed log",
    "state": "the store's state equals the re-executed state",
    "tx-order": "the store's index of transactions in log order (what state-sync snapshots serve) agrees with "
                "re-execution",
    "slot-record": "the store's record of each block's changes to children's slots agrees with re-execution",
    "subject-index": "the store's index of each child's transactions (what an erasure stubs) names exactly the "
                     "child's whole transactions",
    "tree-node": "the store's state-tree nodes equal re-execution's, at the height they stand at",
    "tree-journal": "the store's tree journal holds the tree changes of the blocks after its nodes' height, as "
                    "re-execution made them",
    "extra-block": "the store holds no block beyond its tip",
    "tip-record": "the store's tip record names the last block and its roots",
    "status": "the node's status names the last block and its roots",
    "checkpoint-genesis": "the chain is the one the checkpoint audited",
    "checkpoint-height": "the chain is at least as long as the audited one",
    "checkpoint-header": "the header at the checkpoint height is the audited one",
    "log-consistency": "the log at the tip extends the audited log (RFC 6962 consistency proof)",
    "execution": "re-execution raised an error no rule names",
}


def show(value: Any) -> Any:
    """A JSON-friendly rendering: bytes as hex, numbers and None as they are, the rest as text."""
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    return str(value)


@dataclass(frozen=True)
class AuditFailure:
    """The first thing found wrong: at ``height`` (0 is the genesis), in ``obj``, by ``check``."""

    height: int | None
    obj: str
    check: str
    message: str
    expected: Any = None
    found: Any = None

    @classmethod
    def from_error(cls, exc: ChainError, *, height: int | None = None, obj: str | None = None) -> AuditFailure:
        """From a :class:`ChainError`; its own height and object win over the defaults given."""
        return cls(
            height=exc.height if exc.height is not None else height,
            obj=exc.obj or obj or "block",
            check=exc.check,
            message=_message_of(exc),
            expected=exc.expected,
            found=exc.found,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "height": self.height,
            "object": self.obj,
            "check": self.check,
            "message": self.message,
            "expected": show(self.expected),
            "found": show(self.found),
        }

    def __str__(self) -> str:
        where = "genesis" if self.height == 0 else f"height {self.height}"
        text = f"{where}: {self.check} ({self.obj}): {self.message}"
        if self.expected is not None or self.found is not None:
            text += f"; expected {show(self.expected)}, found {show(self.found)}"
        return text


def _message_of(exc: ChainError) -> str:
    """The error's own message without the height/check/diff decorations ChainError adds."""
    text = str(exc)
    where = f"height {exc.height}: " if exc.height is not None else ""
    prefix = f"{where}{exc.check}{f' ({exc.obj})' if exc.obj else ''}: "
    if text.startswith(prefix):
        text = text[len(prefix):]
    if exc.expected is not None or exc.found is not None:
        cut = text.rfind("; expected ")
        if cut >= 0:
            text = text[:cut]
    return text


class AuditStop(CustosError):
    """Raised inside the auditor to stop at a failure; the report carries it out."""

    code = "audit-failure"

    def __init__(self, failure: AuditFailure) -> None:
        self.failure = failure
        super().__init__(str(failure))


@dataclass(frozen=True)
class NotChecked:
    """A check this audit could not perform, and why. Never silently skipped."""

    check: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"check": self.check, "reason": self.reason}


@dataclass
class Counts:
    blocks: int = 0  # blocks re-executed
    txs: int = 0
    tx_signatures: int = 0
    commits: int = 0  # commit certificates checked (stored or served with the block)
    carried_commits: int = 0  # certificates of the previous block carried inside a block
    commit_signatures: int = 0
    evidence: int = 0
    store_entries: int = 0  # store records compared with the replay (data directories)
    erased_txs: int = 0  # stubs of erased transactions: counted in roots, not re-executed
    followed_slots: int = 0  # erased children's state changes taken from the recorded slots

    def to_json(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Erasure:
    """An erasure the audited chain carries out: at which height, whose records (the child's
    tag), on which order (a salted hash; zero for the end of retention), on what basis."""

    height: int
    child: bytes
    order: bytes
    basis: str

    def to_json(self) -> dict[str, Any]:
        return {"height": self.height, "child": self.child.hex(), "order": self.order.hex(), "basis": self.basis}


@dataclass
class AuditReport:
    """The outcome of one audit. ``failure`` is None when everything checked out."""

    mode: str  # "full" or "incremental"
    source: str
    jobs: int
    chain_id: str | None = None
    genesis_hash: bytes | None = None
    genesis_pinned: bool = False
    start_height: int = 1
    target_height: int | None = None  # the tip the source claimed when the audit began
    checked_height: int = 0  # every block up to here passed
    tip_hash: bytes | None = None
    tip_state_root: bytes | None = None
    tip_log_size: int | None = None
    tip_log_root: bytes | None = None
    checkpoint_in: dict[str, Any] | None = None
    checkpoint_out: str | None = None
    counts: Counts = field(default_factory=Counts)
    checks: list[str] = field(default_factory=list)
    not_checked: list[NotChecked] = field(default_factory=list)
    erasures: list[Erasure] = field(default_factory=list)
    erased_blocks: list[int] = field(default_factory=list)
    failure: AuditFailure | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.failure is None

    def did(self, check: str) -> None:
        if check not in self.checks:
            self.checks.append(check)

    def skipped(self, check: str, reason: str) -> None:
        self.not_checked.append(NotChecked(check, reason))

    def outcome(self) -> dict[str, Any]:
        """Everything the audit established, without how long it took or how many processes it
        used: the part a serial and a parallel run of the same input must agree on."""
        return {
            "ok": self.ok,
            "mode": self.mode,
            "source": self.source,
            "trust_anchor": {
                "chain_id": self.chain_id,
                "genesis_hash": show(self.genesis_hash),
                "pinned": self.genesis_pinned,
            },
            "range": {"from": self.start_height, "to": self.target_height},
            "checked_height": self.checked_height,
            "tip": {
                "height": self.checked_height,
                "hash": show(self.tip_hash),
                "state_root": show(self.tip_state_root),
                "log_size": self.tip_log_size,
                "log_root": show(self.tip_log_root),
            },
            "counts": self.counts.to_json(),
            "checks": list(self.checks),
            "not_checked": [n.to_json() for n in self.not_checked],
            "erasures": [e.to_json() for e in self.erasures],
            "checkpoint_in": self.checkpoint_in,
            "failure": None if self.failure is None else self.failure.to_json(),
        }

    def to_json(self) -> dict[str, Any]:
        doc = self.outcome()
        rate = self.counts.txs / self.seconds if self.seconds > 0 else None
        doc.update({
            "checkpoint_out": self.checkpoint_out,
            "jobs": self.jobs,
            "seconds": round(self.seconds, 3),
            "txs_per_second": None if rate is None else round(rate, 1),
        })
        return doc
