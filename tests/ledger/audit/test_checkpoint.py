"""Incremental audits: only what is new is re-executed, on the auditor's own replay state, and
the chain must still hold what the last audit saw."""

from __future__ import annotations

import json

import pytest
from chainkit import SECOND, Chain

from ledger.audit.auditor import Auditor
from ledger.audit.checkpoint import CheckpointError
from ledger.audit.source import StoreSource
from ledger.chain import Tip
from ledger.storage.chainstore import TIP
from ledger.storage.kv import LevelKV
from node.audit.checkpoints import open_checkpoint_replay, read_checkpoint, write_checkpoint

from .chainforge import block_at, block_key, commit_key
from .conftest import copy_kv


def story() -> tuple[Chain, object, object]:
    c = Chain()
    authority, terminal = c.open_border()
    adult = c.enrol_child(authority, minor=False)
    for _ in range(3):
        c.commit(*[c.crossing(terminal, adult) for _ in range(4)])
    return c, terminal, adult


def full_audit_with_checkpoint(kv, path) -> None:
    auditor = Auditor(StoreSource(kv, "memory store"))
    report = auditor.run()
    assert report.ok, report.failure
    write_checkpoint(path, auditor.replay, source=report.source)


def incremental(kv, path, *, source=None):
    checkpoint = read_checkpoint(path)
    auditor = Auditor(source or StoreSource(kv, "memory store"), replay=open_checkpoint_replay(path, checkpoint),
                      anchor=checkpoint.anchor())
    report = auditor.run()
    return auditor, report


def test_incremental_audit_re_executes_only_new_blocks(tmp_path):
    c, terminal, adult = story()
    path = tmp_path / "audit.json"
    full_audit_with_checkpoint(c.store.kv, path)
    audited = c.height
    doc = json.loads(path.read_text())
    assert doc["height"] == audited and doc["header_hash"] == c.store.tip.hash.hex()
    assert (tmp_path / "audit.json.replay" / "CURRENT").is_file()

    c.commit(*[c.crossing(terminal, adult) for _ in range(3)])
    c.advance(SECOND)
    auditor, report = incremental(c.store.kv, path)
    assert report.ok, report.failure
    assert report.mode == "incremental" and report.start_height == audited + 1
    assert auditor.blocks_executed == report.counts.blocks == 2
    assert report.counts.txs == 3
    for check in ("checkpoint-header", "log-consistency", "state", "tx-index", "tip-record"):
        assert check in report.checks
    # the next checkpoint replaces this one; an audit with nothing new passes too
    write_checkpoint(path, auditor.replay, source=report.source)
    assert read_checkpoint(path).height == c.height
    assert not list(tmp_path.glob("*.new-*")) and not list(tmp_path.glob("*.old-*"))
    auditor, report = incremental(c.store.kv, path)
    assert report.ok and report.counts.blocks == 0
    auditor.replay.close()


def test_incremental_audit_catches_a_chain_cut_behind_the_checkpoint(tmp_path):
    c, _, _ = story()
    path = tmp_path / "audit.json"
    full_audit_with_checkpoint(c.store.kv, path)
    kv = copy_kv(c.store.kv)
    keep = c.height - 2
    header = block_at(kv, keep).header
    kv.write({block_key(c.height): None, block_key(c.height - 1): None, commit_key(c.height): None,
              commit_key(c.height - 1): None,
              b"T": TIP.encode(Tip(keep, header.hash, header.time, header.state_root, header.log_size,
                                   header.log_root))})
    auditor, report = incremental(kv, path)
    auditor.replay.close()
    assert (report.failure.height, report.failure.check) == (c.height, "checkpoint-height")


class LyingProofs(StoreSource):
    """A source whose consistency proofs do not prove anything."""

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        return [bytes(32) for _ in super().consistency_proof(first, second)]


def test_incremental_audit_checks_the_log_consistency_proof(tmp_path):
    c, terminal, adult = story()
    path = tmp_path / "audit.json"
    full_audit_with_checkpoint(c.store.kv, path)
    c.commit(*[c.crossing(terminal, adult) for _ in range(2)])
    auditor, report = incremental(c.store.kv, path, source=LyingProofs(c.store.kv))
    auditor.replay.close()
    assert (report.failure.height, report.failure.check) == (c.height, "log-consistency")
    # the checkpoint survives a failed audit
    auditor, report = incremental(c.store.kv, path)
    auditor.replay.close()
    assert report.ok, report.failure


def test_rejects_a_checkpoint_of_another_chain(tmp_path):
    c, _, _ = story()
    path = tmp_path / "audit.json"
    full_audit_with_checkpoint(c.store.kv, path)
    other, _, _ = story()
    auditor, report = incremental(other.store.kv, path)
    auditor.replay.close()
    assert (report.failure.height, report.failure.check) == (0, "checkpoint-genesis")


def test_refuses_a_damaged_replay_state_or_an_edited_checkpoint(tmp_path):
    c, _, _ = story()
    path = tmp_path / "audit.json"
    full_audit_with_checkpoint(c.store.kv, path)
    doc = json.loads(path.read_text())

    edited = dict(doc, state_root="00" * 32)
    path.write_text(json.dumps(edited))
    with pytest.raises(CheckpointError):
        open_checkpoint_replay(path, read_checkpoint(path))
    path.write_text(json.dumps(doc))
    open_checkpoint_replay(path, read_checkpoint(path)).close()

    kv = LevelKV(tmp_path / "audit.json.replay", create=False)
    key, value = next(kv.iterate(b"Sc/", b"Sc0"))
    kv.write({key: value[:-1] + bytes([value[-1] ^ 1])})
    kv.close()
    with pytest.raises(CheckpointError, match="does not match"):
        open_checkpoint_replay(path, read_checkpoint(path))

    for broken in ("{}", "not json", json.dumps(dict(doc, height=-1)), json.dumps(dict(doc, replay_dir="../x"))):
        path.write_text(broken)
        with pytest.raises(CheckpointError):
            read_checkpoint(path)
