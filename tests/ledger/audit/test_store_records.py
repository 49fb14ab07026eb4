"""A data-directory audit of what only a node's store holds beyond its state and indexes: the
state trees' nodes, the tree journal of a node that stopped without writing them, the
transactions in log order, the blocks' recorded slot changes and each child's transactions.

Each store is a real LevelDB written by :class:`ChainStore` as a node writes it (tree nodes held
in memory, their changes journalled); "stopped" is a store closed as a node closes it, "crashed"
a copy of its directory taken while it was open (what a power cut leaves). A store the node
would refuse to start on, or whose indexes lie, must not audit as valid.
"""

from __future__ import annotations

import shutil

import pytest
from chainkit import SECOND, Chain

from ledger.audit.auditor import Auditor
from ledger.chain import execute_block
from ledger.errors import StorageError
from ledger.genesis import Genesis
from ledger.storage.chainstore import ChainStore, split_subject_key
from ledger.storage.kv import LevelKV
from ledger.storage.treejournal import JOURNAL_NAME
from node.audit.datadir import DataDirSource


@pytest.fixture(scope="module")
def chain() -> Chain:
    """Two children: one crossing after both guardians approved, one adult crossing freely."""
    c = Chain()
    authority, terminal = c.open_border()
    child = c.enrol_child(authority)
    adult = c.enrol_child(authority, minor=False)
    request = c.pending_crossing(terminal, child)
    c.commit(c.approve(child.guardians[0], request, child))
    c.commit(c.approve(child.guardians[1], request, child), c.crossing(terminal, adult))
    c.advance(SECOND)
    return c


def write_store(c: Chain, path, *, crashed: bool):
    """The chain as a node's store holds it at ``path``: closed cleanly, or cut off as by a crash."""
    live = path.parent / (path.name + "-live")
    store = ChainStore.open(live if crashed else path, c.genesis)
    for h in range(1, c.height + 1):
        store.commit_block(execute_block(store, c.store.block(h)), c.store.commit(h))
    if crashed:
        assert store.kv.get(b"J") is not None, "the store holds its tree nodes in memory"
        shutil.copytree(live, path)
    store.close()
    return path


def audit(path, genesis: Genesis):
    source = DataDirSource(path)
    try:
        return Auditor(source, genesis=genesis).run()
    finally:
        source.close()


def edit(path, changes: dict) -> None:
    kv = LevelKV(path, create=False)
    try:
        kv.write(changes)
    finally:
        kv.close()


def records(path, prefix: bytes) -> dict[bytes, bytes]:
    kv = LevelKV(path, create=False)
    try:
        return dict(kv.iterate(prefix, bytes([prefix[0] + 1])))
    finally:
        kv.close()


def failure(report) -> tuple[int | None, str]:
    assert report.failure is not None, "the audit passed"
    return report.failure.height, report.failure.check


@pytest.mark.parametrize("crashed", [False, True], ids=["stopped", "crashed"])
def test_a_node_store_audits_valid_with_its_trees_journal_and_indexes_checked(chain, tmp_path, crashed):
    report = audit(write_store(chain, tmp_path / "chain", crashed=crashed), chain.genesis)
    assert report.ok, report.failure
    done = set(report.checks)
    assert {"tree-node", "tx-order", "slot-record", "subject-index"} <= done
    assert ("tree-journal" in done) is crashed
    assert not {n.check for n in report.not_checked} & {"tree-node", "tree-journal"}


def test_a_missing_tree_node_is_found(chain, tmp_path):
    path = write_store(chain, tmp_path / "chain", crashed=False)
    nodes = records(path, b"M")
    edit(path, {sorted(nodes)[len(nodes) // 2]: None})
    assert failure(audit(path, chain.genesis)) == (chain.height, "tree-node")


@pytest.mark.parametrize("damage", ["cut-short", "emptied", "removed", "byte-flipped"])
def test_a_tree_journal_the_node_could_not_restart_from_is_found(chain, tmp_path, damage):
    path = write_store(chain, tmp_path / "chain", crashed=True)
    journal = path / JOURNAL_NAME
    data = journal.read_bytes()
    if damage == "cut-short":
        journal.write_bytes(data[:100])
    elif damage == "emptied":
        journal.write_bytes(b"")
    elif damage == "removed":
        journal.unlink()
    else:
        journal.write_bytes(data[:len(data) // 2] + bytes([data[len(data) // 2] ^ 1]) + data[len(data) // 2 + 1:])
    with pytest.raises(StorageError, match="tree journal"):  # what the node says of it
        ChainStore.open(shutil.copytree(path, tmp_path / "node-copy"), chain.genesis).close()
    assert failure(audit(path, chain.genesis))[1] == "tree-journal"


def test_a_tree_base_record_moved_or_removed_is_found(chain, tmp_path):
    moved = write_store(chain, tmp_path / "moved", crashed=True)
    edit(moved, {b"J": (1).to_bytes(8, "big")})
    assert failure(audit(moved, chain.genesis))[1] in ("tree-node", "tree-journal")
    removed = write_store(chain, tmp_path / "removed", crashed=True)
    edit(removed, {b"J": None})  # the nodes on disk, of an early height, now pass for the tip's
    assert failure(audit(removed, chain.genesis)) == (chain.height, "tree-node")


def test_index_records_of_log_order_slots_and_subjects_are_checked(chain, tmp_path):
    base = write_store(chain, tmp_path / "base", crashed=False)
    order, slots, subjects = records(base, b"K"), records(base, b"R"), records(base, b"I")
    assert order and slots and subjects

    def damaged(name: str, changes: dict):
        path = shutil.copytree(base, tmp_path / name)
        edit(path, changes)
        return failure(audit(path, chain.genesis))

    key = sorted(order)[2]
    assert damaged("order-deleted", {key: None})[1] == "tx-order"
    assert damaged("order-changed", {key: bytes(32)})[1] == "tx-order"
    key = sorted(slots)[0]
    assert damaged("slots-changed", {key: slots[key][:-1] + bytes([slots[key][-1] ^ 1])}) == (
        int.from_bytes(key[1:], "big"), "slot-record")
    key = sorted(subjects)[-1]
    _, height, _ = split_subject_key(key)
    assert damaged("subject-deleted", {key: None}) == (height, "subject-index")
    # an entry naming another transaction of the same block: an erasure would stub the wrong one
    identity, height, position = split_subject_key(key)
    forged = key[:-4] + (position + 1 if position == 0 else 0).to_bytes(4, "big")
    assert forged not in subjects
    assert damaged("subject-forged", {forged: b""}) == (height, "subject-index")


def test_accepted_transactions_of_a_store_are_named_as_not_checked(chain, tmp_path):
    """The P records (the node's durable mempool) are vouched for by no block: said, not judged."""
    path = write_store(chain, tmp_path / "chain", crashed=False)
    assert "accepted-transactions" not in {n.check for n in audit(path, chain.genesis).not_checked}
    edit(path, {b"P" + (0).to_bytes(8, "big"): chain.store.block(1).txs[0]})
    report = audit(path, chain.genesis)
    assert report.ok and "accepted-transactions" in {n.check for n in report.not_checked}
