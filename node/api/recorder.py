"""Recording reads in the access log before they are served (docs/ACCESS-LOG.md).

A route calls :meth:`ReadRecorder.record` once it knows what it is about to reveal and before it
answers: one entry per child the answer concerns (by tag), or one entry naming no child. If
the log cannot take the entries (damaged, or the disk refuses) the read is refused with 503:
no read is served that the log does not hold.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ledger.errors import StorageError
from ledger.privacy.tags import child_tag
from node.access.entry import Entry
from node.access.log import AccessLog, AccessLogDamaged
from node.api.auth import Caller
from node.api.refusal import Refused


class ReadRecorder:
    def __init__(self, log: AccessLog, clock_ms: Callable[[], int]) -> None:
        self.log = log
        self.clock_ms = clock_ms

    def record(self, caller: Caller, kind: str, identities: Iterable[bytes] = (), record: bytes | None = None) -> None:
        """Log that ``caller`` read ``kind`` about the children ``identities`` (ids; only their
        tags are written). The caller's purpose must have been checked already."""
        purpose = caller.purpose
        if purpose is None:  # a route that forgot to check: refuse rather than log nothing
            raise Refused(400, "purpose-required", "a purpose is needed", "this read states no purpose")
        tags: list[bytes | None] = list(dict.fromkeys(child_tag(i) for i in identities)) or [None]
        now = self.clock_ms()
        entries = [Entry(now, caller.key, caller.role_name or "key", tag, kind, record, purpose.code, purpose.ref)
                   for tag in tags]
        try:
            self.log.append(entries)
        except (AccessLogDamaged, StorageError) as exc:
            raise Refused(503, "access-log-unavailable", "the access log cannot record this read",
                          f"reads of children's records are suspended on this node: {exc}") from None

    def healthy(self) -> str | None:
        """None, or why the log is unfit (for /healthz)."""
        return None if self.log.damage is None else f"the access log is damaged: {self.log.damage}"
