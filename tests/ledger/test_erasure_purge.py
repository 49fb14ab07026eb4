"""Purging an erased child from a node's store: stubs in the blocks, nothing else left, in one batch."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
from chainkit import DAY, Chain

from ledger.audit.receipt import ReceiptError, receipt_from_store
from ledger.audit.replay import ReplayKV, ReplayStore
from ledger.block import is_stub, tx_root
from ledger.chain import execute_block
from ledger.privacy.tags import child_tag
from ledger.state.records import DEFAULT_PARAMS
from ledger.state.view import prefix_end
from ledger.storage.chainstore import subject_key
from ledger.storage.erasure import apply_purge, plan_purge
from ledger.storage.kv import LevelKV
from tests.scankit import files_holding


def random_child(chain: Chain, **kw):
    """A child whose identity id is random bytes, so finding it in a file means something."""
    return replace(chain.new_child(**kw), identity=os.urandom(16))


def where(chain: Chain, txs) -> list[tuple[int, int]]:
    return [(chain.location(tx).height, chain.location(tx).index) for tx in txs]


def entries(chain: Chain) -> dict[tuple[int, int], bytes]:
    out = {}
    for height in range(1, chain.height + 1):
        for position, entry in enumerate(chain.store.block(height).txs):
            out[(height, position)] = entry
    return out


def test_the_erasing_block_records_the_pending_purge_and_the_purge_stubs_exactly_the_childs_transactions(
        chain: Chain, authority, terminal):
    child, mine = chain.child_with_history(authority, terminal)
    other, theirs = chain.child_with_history(authority, terminal)
    before = entries(chain)
    erasing = chain.commit(chain.erase(child))
    tag = child_tag(child.identity)
    assert chain.store.pending_erasures() == [(tag, child.identity)]
    purge = plan_purge(chain.store, tag, child.identity)
    assert sorted((h, p) for h, p, _ in purge.stubbed) == sorted(where(chain, mine))
    apply_purge(chain.store, purge)
    after = entries(chain)
    for place, entry in after.items():
        if place in where(chain, mine):
            assert is_stub(entry)
        else:
            assert entry == before.get(place, entry) and not is_stub(entry)
    for height in range(1, chain.height + 1):  # headers, roots and certificates as they were
        block = chain.store.block(height)
        assert tx_root(block.txs) == block.header.tx_root
        assert chain.store.commit(height).block == block.hash
    assert chain.store.pending_erasures() == [] and chain.store.compaction_due
    assert list(chain.store.kv.iterate(subject_key(child.identity), prefix_end(subject_key(child.identity)))) == []
    assert [chain.location(tx).status for tx in mine] == ["ok", "ok", "permitted", "pending", "pending", "denied"]
    assert all(not is_stub(entry) for place, entry in after.items() if place in where(chain, theirs))
    assert erasing.height == chain.height
    # a second run (a crash after the batch, say) finds nothing left to do
    again = plan_purge(chain.store, tag, child.identity)
    assert again.stubbed == [] and again.accepted == []


def test_the_erasing_block_itself_is_purged_of_the_childs_transactions(chain: Chain, authority, terminal):
    child = random_child(chain)
    enrolled = chain.commit(chain.enrol(authority, child))
    crossing = chain.crossing(terminal, child)
    erasing = chain.commit(crossing, chain.erase(child))
    purge = plan_purge(chain.store, child_tag(child.identity), child.identity)
    assert [(h, p) for h, p, _ in purge.stubbed] == [(enrolled.height, 0), (erasing.height, 0)]
    apply_purge(chain.store, purge)
    block = chain.store.block(erasing.height)
    assert is_stub(block.txs[0]) and not is_stub(block.txs[1])  # the order itself stays whole


def test_retention_erasure_records_a_pending_purge_too():
    chain = Chain(params=replace(DEFAULT_PARAMS, retention_days=1))
    authority, terminal = chain.open_border()
    child = random_child(chain)
    today = chain.now // DAY
    child.majority_day = today + 1
    chain.commit(chain.enrol(authority, child))
    chain.commit(chain.crossing(terminal, child))
    chain.commit(time=(today + 2) * DAY)
    assert chain.store.pending_erasures() == [(child_tag(child.identity), child.identity)]
    purge = plan_purge(chain.store, child_tag(child.identity), child.identity)
    assert len(purge.stubbed) == 2


def test_accepted_transactions_about_the_child_leave_the_durable_mempool(chain: Chain, authority, terminal):
    child, other = random_child(chain), random_child(chain)
    chain.commit(chain.enrol(authority, child), chain.enrol(authority, other))
    waiting, unrelated = chain.crossing(terminal, child), chain.crossing(terminal, other)
    chain.store.accept({7: waiting.raw, 8: unrelated.raw, 9: b"not a transaction"})
    chain.commit(chain.erase(child))
    purge = plan_purge(chain.store, child_tag(child.identity), child.identity)
    assert purge.accepted == [7]
    apply_purge(chain.store, purge)
    assert [seq for seq, _ in chain.store.accepted()] == [8, 9]


def test_an_auditors_replay_keeps_no_erasure_records(chain: Chain, authority, terminal):
    child = random_child(chain)
    chain.commit(chain.enrol(authority, child))
    chain.commit(chain.erase(child))
    replay = ReplayStore.from_genesis(ReplayKV(), chain.genesis)
    for height in range(1, chain.height + 1):
        replay.record(execute_block(replay, chain.store.block(height)))
    assert replay.pending_erasures() == []
    assert list(replay.kv.iterate(b"I", b"J")) == []


# --------------------------------------------------------------------------- LevelDB's own files


def test_compacting_and_reopening_leaves_no_deleted_key_or_value_in_leveldbs_files(tmp_path):
    secret = os.urandom(16)
    kv = LevelKV(tmp_path / "db")
    kv.write({b"A" + os.urandom(8): os.urandom(64) for _ in range(200)})
    kv.write({b"Z" + secret + bytes([i]): b"v" + secret for i in range(5)})  # the last keys of the table
    kv.reopen()  # the log becomes a table whose largest key holds the secret, listed in the MANIFEST
    assert files_holding(tmp_path / "db", {"secret": secret})
    kv.write({b"Z" + secret + bytes([i]): None for i in range(5)})
    kv.compact()
    kv.reopen()
    assert files_holding(tmp_path / "db", {"secret": secret}) == []
    assert len(list(kv.iterate(b"A", b"B"))) == 200
    kv.close()


def test_a_record_and_its_deletion_flushed_together_into_a_fresh_database_leave_no_trace(tmp_path):
    # a young database: the flush of its memory table lands at the deepest level, record and
    # deletion side by side in one table, which a manual compaction alone would never rewrite
    secret = os.urandom(16)
    kv = LevelKV(tmp_path / "db")
    kv.write({b"S" + secret: b"v" + secret, b"T": b"tip"})
    kv.write({b"S" + secret: None})
    kv.compact()
    kv.reopen()
    assert files_holding(tmp_path / "db", {"secret": secret}) == []
    assert kv.get(b"T") == b"tip"
    kv.close()


def test_after_the_purge_no_file_of_the_store_holds_the_childs_data(tmp_path):
    chain = Chain(path=tmp_path / "chain")
    authority, terminal = chain.open_border()
    child, mine = chain.child_with_history(authority, terminal)
    other, _ = chain.child_with_history(authority, terminal)
    chain.store.kv.reopen()  # what was written so far is in tables now, not only in LevelDB's log
    chain.commit(chain.erase(child))
    needles = {"identity": child.identity, "commitment": child.biometric.public,
               **{f"guardian {i}": g.public for i, g in enumerate(child.guardians)},
               **{f"{tx.kind} signature": tx.sigs[0].sig for tx in mine}}
    # the erasing block's tree changes name the child's id (its tree's namespace) in the journal
    assert "identity in TREE-JOURNAL" in files_holding(tmp_path / "chain", needles)
    tag = child_tag(child.identity)
    apply_purge(chain.store, plan_purge(chain.store, tag, child.identity))
    chain.store.compact_files()
    chain.store.reopen_files()
    chain.store.compaction_done()
    assert files_holding(tmp_path / "chain", needles) == []
    assert files_holding(tmp_path / "chain", {"other": other.identity})  # nobody else is touched
    assert chain.store.kv.get(b"S" + b"erased/" + tag) is not None
    chain.commit(chain.crossing(terminal, other))  # the chain goes on


def test_rejects_cutting_a_receipt_for_an_erased_transaction(chain: Chain, authority, terminal):
    child, mine = chain.child_with_history(authority, terminal)
    chain.commit(chain.erase(child))
    apply_purge(chain.store, plan_purge(chain.store, child_tag(child.identity), child.identity))
    with pytest.raises(ReceiptError, match="erased by order"):
        receipt_from_store(chain.store, mine[2].id)
