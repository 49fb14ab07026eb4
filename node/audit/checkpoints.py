"""Audit checkpoints on disk: the JSON file and the replay state's LevelDB beside it.

The format and its meaning are in :mod:`ledger.audit.checkpoint`; this module reads and writes
them. The audited replay is never modified in place: an incremental audit keeps its writes in
memory over it, and a new checkpoint is written beside the old one and swapped in by renames,
so a failed or interrupted audit leaves the previous checkpoint usable.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from ledger.audit.checkpoint import Checkpoint, CheckpointError
from ledger.audit.replay import OverlayKV, ReplayStore
from ledger.errors import CustosError, StorageError
from ledger.storage.kv import KV, LevelKV

_BATCH = 20_000


def read_checkpoint(path: str | Path) -> Checkpoint:
    try:
        doc = json.loads(Path(path).read_text())
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise CheckpointError(f"checkpoint {path} is not JSON: {exc}") from None
    except RecursionError:  # arrays in arrays, deeper than the parser follows
        raise CheckpointError(f"checkpoint {path} is not a checkpoint: its JSON is nested too deeply") from None
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
    try:
        tmp.write_text(json.dumps(checkpoint.to_json(), indent=2) + "\n")
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # this process's (named by its pid)
        raise
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
