"""A block's execution reads each committed key once, and still sees its own writes first."""

from __future__ import annotations

from collections import Counter

from ledger.chain import execute_block
from ledger.errors import RejectedTransaction
from ledger.state.view import Overlay, ReadCache
from tests.ledger.chainkit import Chain


class Counting:
    def __init__(self, base):
        self.base, self.reads = base, Counter()

    def get(self, key):
        self.reads[key] += 1
        return self.base.get(key)

    def scan(self, start, stop):
        return self.base.scan(start, stop)

    def last(self, start, stop):
        return self.base.last(start, stop)

    def tree_node(self, position):
        return self.base.tree_node(position)


def test_each_key_is_read_from_the_base_once_and_absence_is_remembered_too():
    base = Counting({b"a": b"1"})
    cache = ReadCache(base)
    assert [cache.get(b"a") for _ in range(5)] == [b"1"] * 5
    assert [cache.get(b"missing") for _ in range(5)] == [None] * 5
    assert base.reads == {b"a": 1, b"missing": 1}


def test_writes_above_the_cache_are_seen_before_what_it_remembers():
    cache = ReadCache(Counting({b"k": b"old"}))
    overlay = Overlay(cache)
    assert overlay.get(b"k") == b"old"
    overlay.put(b"k", b"new")
    assert overlay.get(b"k") == b"new"
    overlay.delete(b"k")
    assert overlay.get(b"k") is None


def test_a_terminal_revoked_earlier_in_the_block_cannot_record_a_crossing_later_in_it():
    chain = Chain()
    authority, terminal = chain.open_border()
    adult = chain.enrol_child(authority, minor=False)
    before = chain.crossing(terminal, adult)  # reads the terminal's role: now remembered
    revoke = chain.revoke(terminal.public)
    after = chain.crossing(terminal, adult)
    executed, rejected = chain.propose([before, revoke, after])
    assert [tx.id for tx in executed.txs] == [before.id, revoke.id]
    assert [tx.id for tx, _ in rejected] == [after.id]
    assert isinstance(rejected[0][1], RejectedTransaction) and "revoked" in str(rejected[0][1]).lower()
    again = execute_block(chain.store, executed.block)  # a validator agrees
    assert again.changes.state_root == executed.changes.state_root


def test_a_block_of_crossings_reads_its_terminal_s_records_once(monkeypatch):
    chain = Chain()
    authority, terminal = chain.open_border()
    adult = chain.enrol_child(authority, minor=False)
    executed, _ = chain.propose([chain.crossing(terminal, adult) for _ in range(40)])
    counting = Counting(chain.store.state)
    monkeypatch.setattr(type(chain.store), "state", property(lambda self: counting))
    execute_block(chain.store, executed.block)
    assert counting.reads and max(counting.reads.values()) <= 3  # not once a crossing
