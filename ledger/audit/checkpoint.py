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

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ledger.audit.auditor import CheckpointAnchor
from ledger.audit.replay import OverlayKV, ReplayStore
from ledger.errors import CustosError, StorageError
from ledger.storage.kv import KV, LevelKV

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
        if Path(fields["replay_dir"]).name != fields["replay_dir"]:
            raise CheckpointError("checkpoint field 'replay_dir' must name a directory beside the checkpoint")
        return cls(**fields)


def read_checkpoint(path: str | Path) -> Checkpoint:
    try:
        doc = json.loads(Path(path).read_text())
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise CheckpointError(f"checkpoint {path} is not JSON: {exc}") from None
    return Checkpoint.from_json(doc)


def _replay_dir_for(path: Path) -> Path:
    return path.with_name(path.name + ".replay")


def open_checkpoint_replay(path: str | Path, checkpoint: Checkpoint) -> ReplayStore:
    """The replay state a checkpoint pinned, checked against it, with writes kept in memory."""
    directory = Path(path).parent / checkpoint.replay_dir
    if not (directory / "CURRENT").is_file():
        raise CheckpointError(f"the checkpoint's replay state {directory} is missing: run a full audit")
    try:
        base = LevelKV(directory, create=False)
    except StorageError as exc:
        raise CheckpointError(f"cannot open the checkpoint's replay state: {exc}") from None
    try:
        replay = ReplayStore(OverlayKV(base))
        tip = replay.tip
        claims = ((tip.height, checkpoint.height), (tip.hash, checkpoint.header_hash),
                  (tip.state_root, checkpoint.state_root), (tip.log_size, checkpoint.log_size),
                  (tip.log_root, checkpoint.log_root), (replay.genesis.hash, checkpoint.genesis_hash))
        if any(mine != theirs for mine, theirs in claims) or replay.digest() != checkpoint.replay_digest:
            raise CheckpointError(f"the replay state in {directory} does not match the checkpoint (damaged or "
                                  "edited): run a full audit")
    except CheckpointError:
        base.close()
        raise
    except (CustosError, AssertionError) as exc:
        base.close()
        raise CheckpointError(f"the replay state in {directory} is unusable ({exc}): run a full audit") from None
    return replay


def write_checkpoint(path: str | Path, replay: ReplayStore, *, source: str) -> Checkpoint:
    """Persist ``replay`` beside ``path`` and write the checkpoint file; replaces an older one.

    ``replay`` is closed afterwards. The new replay directory is complete before the rename that
    puts it in place, and the file is renamed into place last.
    """
    path = Path(path)
    final = _replay_dir_for(path)
    pid = os.getpid()
    staging = final.with_name(f"{final.name}.new-{pid}")
    shutil.rmtree(staging, ignore_errors=True)
    kv = replay.kv
    if isinstance(kv, OverlayKV) and (Path(getattr(kv.base, "path", "")) / "CURRENT").is_file():
        base_dir = Path(kv.base.path)  # type: ignore[attr-defined]
        kv.base.close()
        shutil.copytree(base_dir, staging)
        out = LevelKV(staging, create=False)
        changes = kv.changes
        _copy_items(out, iter(changes.items()))
    else:
        out = LevelKV(staging)
        _copy_items(out, kv.iterate(b"", b"\xff" * 64))
        kv.close()
    persisted = ReplayStore(out)
    tip = persisted.tip
    checkpoint = Checkpoint(
        chain_id=persisted.chain.chain_id,
        genesis_hash=persisted.genesis.hash,
        height=tip.height,
        header_hash=tip.hash,
        time=tip.time,
        state_root=tip.state_root,
        log_size=tip.log_size,
        log_root=tip.log_root,
        next_validators_hash=persisted.validators_at(tip.height + 1).hash,
        replay_dir=final.name,
        replay_digest=persisted.digest(),
        source=source,
        written_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    out.close()
    old = final.with_name(f"{final.name}.old-{pid}")
    if final.exists():
        final.rename(old)
    staging.rename(final)
    tmp = path.with_name(f"{path.name}.new-{pid}")
    tmp.write_text(json.dumps(checkpoint.to_json(), indent=2) + "\n")
    tmp.replace(path)
    shutil.rmtree(old, ignore_errors=True)
    return checkpoint


def _copy_items(out: KV, items) -> None:
    batch: dict[bytes, bytes | None] = {}
    for key, value in items:
        batch[key] = value
        if len(batch) >= _BATCH:
            out.write(batch, sync=False)
            batch = {}
    out.write(batch, sync=True)
