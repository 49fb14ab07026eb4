"""Audit checkpoints: where the last successful audit stopped, so the next one checks only what
is new.

A checkpoint is two things side by side::

    FILE            JSON: chain id, genesis hash, height, header hash, time, state root, log
                    size and root, the next validator set's hash, and a digest of the replay
    FILE.replay/    LevelDB: the auditor's own replay state at that height (state, log nodes,
                    transaction and hash indexes), re-derived from the blocks, never copied
                    from a node

The next audit re-executes from the replay state, so it trusts nothing the node says about the
past either: it checks that the chain still holds the audited header at the checkpoint height,
re-executes the new blocks on its own state, and proves with an RFC 6962 consistency proof that
the audited log is a prefix of the new one. Before using the replay state it recomputes its
digest (one pass over its records, no re-execution); a damaged or edited replay is refused.

The audited replay is never modified in place: an incremental audit keeps its writes in memory
over it, and a new checkpoint is written beside the old one and swapped in by renames, so a
failed or interrupted audit leaves the previous checkpoint usable.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ledger.audit.auditor import CheckpointAnchor
from ledger.errors import CustosError

FORMAT = "custos-audit-checkpoint/1"
_BATCH = 20_000


class CheckpointError(CustosError):
    """A checkpoint that cannot be used: unreadable, malformed, or its replay state damaged."""

    code = "audit-checkpoint"


@dataclass(frozen=True)
class Checkpoint:
    chain_id: str
    genesis_hash: bytes
    height: int
    header_hash: bytes
    time: int
    state_root: bytes
    log_size: int
    log_root: bytes
    next_validators_hash: bytes
    replay_dir: str  # relative to the checkpoint file's directory
    replay_digest: bytes
    source: str
    written_at: str

    def anchor(self) -> CheckpointAnchor:
        return CheckpointAnchor(self.height, self.header_hash, self.log_size, self.log_root, self.genesis_hash)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"format": FORMAT}
        for name, value in asdict(self).items():
            doc[name] = value.hex() if isinstance(value, bytes) else value
        return doc

    @classmethod
    def from_json(cls, doc: Any) -> Checkpoint:
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise CheckpointError(f"not an audit checkpoint (format {FORMAT!r} expected)")
        fields: dict[str, Any] = {}
        for name, kind in cls.__annotations__.items():
            value = doc.get(name)
            try:
                if kind == "bytes":
                    if not isinstance(value, str):
                        raise ValueError
                    raw = bytes.fromhex(value)
                    if len(raw) != 32:
                        raise ValueError
                    fields[name] = raw
                elif kind == "int":
                    if type(value) is not int or value < 0:
                        raise ValueError
                    fields[name] = value
                else:
                    if not isinstance(value, str):
                        raise ValueError
                    fields[name] = value
            except (TypeError, ValueError):
                raise CheckpointError(f"checkpoint field {name!r} is missing or malformed") from None
        replay_dir = fields["replay_dir"]
        if not replay_dir or "/" in replay_dir or replay_dir in (".", ".."):  # one name, beside the file
            raise CheckpointError("checkpoint field 'replay_dir' must name a directory beside the checkpoint")
        return cls(**fields)
