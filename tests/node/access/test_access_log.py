"""The access log on its own: entries, proofs, and what tampering on disk does to them."""

from __future__ import annotations

import pytest

from ledger.merkle import MemoryNodeStore, MerkleLog
from ledger.privacy.tags import child_tag
from node.access.entry import Entry, decode_entry
from node.access.log import AccessLog, AccessLogDamaged
from node.access.verify import NodeReport, audit_whole_log, check_child_answer

CHILD, OTHER = bytes(range(16)), bytes(range(1, 17))


def entry(i: int, identity: bytes | None = CHILD, purpose: str = "guardian-review") -> Entry:
    return Entry(1_000 + i, bytes([i % 256]) * 32, "guardian", child_tag(identity) if identity else None,
                 "identity", None, purpose, None)


def filled(n: int = 10) -> AccessLog:
    log = AccessLog.memory()
    for i in range(n):
        log.append([entry(i, CHILD if i % 3 == 0 else OTHER)])
    return log


def answer(log: AccessLog, anchor: tuple[int, bytes] | None) -> dict:
    """What GET /v1/access-log answers about CHILD (node/api/access_log.py), as msgpack gives it."""
    a_size = anchor[0] if anchor else 0
    entries = [{"index": i, "entry": log.entry(i),
                "proof": log.inclusion_proof(i, a_size if i < a_size else log.size)}
               for i in log.of_child(child_tag(CHILD))]
    return {"node": b"n" * 32, "size": log.size, "root": log.root(),
            "anchor": None if anchor is None else {"size": anchor[0], "root": anchor[1], "height": 5,
                                                   "tx": b"t" * 32},
            "consistency": log.consistency_proof(a_size, log.size) if a_size else [], "entries": entries}


def test_entries_round_trip_and_index_by_child():
    log = filled()
    assert log.size == 10
    assert log.of_child(child_tag(CHILD)) == [0, 3, 6, 9]
    assert log.of_child(child_tag(CHILD), after=3, limit=1) == [6]
    assert decode_entry(log.entry(3)) == entry(3)
    assert log.verify(None) is None


def test_a_verified_answer_lists_every_read_of_the_child():
    log = filled()
    anchor = (8, log.root(8))
    report = NodeReport("node")
    check_child_answer(report, answer(log, anchor), CHILD)
    assert report.ok, report.failures
    assert [(r.index, r.anchored) for r in report.reads] == [(0, True), (3, True), (6, True), (9, False)]
    rows = list(log.entries(0, log.size))
    audit_whole_log(report, rows, CHILD)
    assert report.ok, report.failures


def test_rejects_an_answer_with_an_altered_entry():
    log = filled()
    doc = answer(log, (8, log.root(8)))
    forged = entry(3, purpose="case-work")
    doc["entries"][1]["entry"] = forged.raw  # the purpose changed on the way
    report = NodeReport("node")
    check_child_answer(report, doc, CHILD)
    assert [r.index for r in report.reads] == [0, 6, 9]
    assert report.failures == ["entry 3 is not in the log it claims (the checkpoint on the chain): it was altered"]


def test_rejects_an_answer_that_left_an_entry_out_when_the_whole_log_is_read():
    log = filled()
    doc = answer(log, (10, log.root()))
    del doc["entries"][2]  # entry 6 hidden from the answer
    report = NodeReport("node")
    check_child_answer(report, doc, CHILD)
    assert report.ok  # presence proofs alone cannot see it
    audit_whole_log(report, list(log.entries(0, log.size)), CHILD)
    assert report.failures == ["the answer about the child left out entries [6]"]


def edit_on_disk(log: AccessLog, index: int, new: Entry, *, rebuild_tree: bool) -> None:
    """What an operator with the store in hand can do: replace an entry's bytes, and (the
    thorough way) recompute the stored tree so that it matches the edited entries."""
    kv = log.kv
    kv.write({b"e" + index.to_bytes(8, "big"): new.raw})
    if rebuild_tree:
        nodes = MemoryNodeStore()
        tree = MerkleLog(nodes.get, 0)
        for _, raw in log.entries(0, log.size):
            tree.append(decode_entry(raw).leaf)
        kv.write({b"n" + bytes([level]) + i.to_bytes(8, "big"): h for (level, i), h in tree.take_pending().items()})


def test_detects_an_entry_edited_on_disk():
    log = filled()
    edit_on_disk(log, 3, entry(3, purpose="case-work"), rebuild_tree=False)
    again = AccessLog(log.kv)
    assert "entry 3 does not match its leaf" in again.verify(None)
    with pytest.raises(AccessLogDamaged):
        again.append([entry(11)])


def test_detects_an_edited_entry_with_a_rebuilt_tree_by_the_chains_checkpoint():
    """The thorough forgery is consistent with itself; only the root the chain holds shows it,
    which is why a node commits its log's root: the attack is bounded by the checkpoint interval."""
    log = filled()
    anchor = (8, log.root(8))
    edit_on_disk(log, 3, entry(3, purpose="case-work"), rebuild_tree=True)
    again = AccessLog(log.kv)
    assert again.verify(None) is None  # without the chain: undetectable
    assert "do not give the root the chain holds" in again.verify(anchor)
    assert again.verify((8, anchor[1])) is not None


def test_an_edit_after_the_last_checkpoint_is_not_detected():
    """The bound, stated as a test: entries newer than the chain's checkpoint can be rewritten."""
    log = filled()
    anchor = (8, log.root(8))
    edit_on_disk(log, 9, entry(9, purpose="case-work"), rebuild_tree=True)
    assert AccessLog(log.kv).verify(anchor) is None


def test_detects_removed_entries():
    log = filled()
    anchor = (10, log.root())
    log.kv.write({b"s": (8).to_bytes(8, "big"), b"e" + (8).to_bytes(8, "big"): None,
                  b"e" + (9).to_bytes(8, "big"): None})
    assert "entries were removed" in AccessLog(log.kv).verify(anchor)
