"""The auditor's replay store keeps the chain store's contract: it can stand in for one."""

from __future__ import annotations

from ledger.audit.replay import ReplayKV, ReplayStore


def test_a_replay_store_answers_a_commit_read_like_a_chain_store():
    # A replay keeps no blocks and no commit certificates: asked for one, it has none, as a
    # chain store answers for a height it does not hold.
    store = ReplayStore(ReplayKV())
    assert store.commit(1) is None


def test_entries_stop_at_the_end_of_the_prefix():
    kv = ReplayKV()
    kv.write({b"Sval/1": b"a", b"Sval/2": b"b", b"Svalid": b"c", b"Sw": b"d", b"V": b"e"})
    store = ReplayStore(kv)
    assert list(store.entries(b"Sval/")) == [(b"Sval/1", b"a"), (b"Sval/2", b"b")]
    assert list(store.entries(b"\xff\xff")) == []
