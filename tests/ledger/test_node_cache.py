"""The state trees' node cache: it never keeps a record the store no longer holds."""

from __future__ import annotations

import pytest
from chainkit import HOUR, Chain

from ledger.chain import execute_block
from ledger.errors import StorageError
from ledger.storage.chainstore import ChainStore
from ledger.storage.nodecache import NodeCache


def test_a_read_that_straddles_a_write_does_not_keep_the_record_it_read():
    cache, store = NodeCache(), {b"p": b"old", b"q": b"old"}

    def read_then_write(position: bytes) -> bytes | None:
        value = store.get(position)  # read from the store just before a block's write lands
        with cache.writing({b"p": b"new"}):
            store[b"p"] = b"new"
        return value

    assert cache.get(b"p", read_then_write) == b"old"  # the caller gets what it read...
    assert cache.get(b"p", lambda _: pytest.fail("read the store")) == b"new"  # ...the cache the write

    with cache.writing({b"q": None}):  # a read between the two ends of a write
        assert cache.get(b"q", store.get) == b"old"
        del store[b"q"]
    assert cache.get(b"q", store.get) is None


def test_a_failed_write_leaves_the_positions_to_the_store():
    cache, store = NodeCache(), {b"p": b"stored"}
    assert cache.get(b"p", store.get) == b"stored"
    with pytest.raises(StorageError), cache.writing({b"p": b"never written"}):
        raise StorageError("disk full")
    assert cache.get(b"p", store.get) == b"stored"


def test_holds_at_most_its_limit():
    cache = NodeCache(limit=4)
    for i in range(10):
        cache.get(bytes([i]), lambda position: b"record " + position)
        assert len(cache) <= 4
    with cache.writing({bytes([i]): b"written" for i in range(20, 26)}):
        pass
    assert cache.get(bytes([25]), lambda _: None) == b"written"


def test_a_leveldb_store_with_a_small_cache_follows_a_chain_with_erasures_and_holds_what_it_wrote(tmp_path):
    chain = Chain(path=tmp_path / "leader")
    follower = ChainStore.open(tmp_path / "follower", chain.genesis, tree_blocks=0)  # nodes written with each block
    cache = follower.state.nodes
    cache.limit = 16  # emptied again and again
    authority, terminal = chain.open_border()

    def follow(height: int) -> None:
        block = chain.store.block(height)
        assert block is not None
        mine = execute_block(follower, block)
        assert mine.changes.state_root == block.header.state_root
        follower.commit_block(mine, chain.store.commit(height))

    for height in range(1, chain.height + 1):
        follow(height)
    children = [chain.enrol_child(authority) for _ in range(6)]
    requests = [(chain.pending_crossing(terminal, child), child) for child in children[:4]]
    chain.commit(chain.crossing(terminal, children[5]))
    chain.commit(chain.erase(children[4]))  # a child's whole tree deleted
    for request, child in requests[:2]:
        chain.commit(*(chain.approve(g, request, child) for g in child.guardians))
    chain.advance(3 * HOUR)  # the other requests expire
    for height in range(follower.height + 1, chain.height + 1):
        follow(height)
    assert follower.tip.state_root == chain.store.tip.state_root
    held = dict(cache._nodes)
    assert held  # and each record it holds is the one on disk
    assert all(follower.kv.get(b"M" + position) == node for position, node in held.items())
    follower.reopen_files()  # the files replaced: nothing of them is kept
    assert len(cache) == 0
    follower.close()
