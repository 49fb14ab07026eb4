"""A store that holds the state trees' nodes in memory for some blocks (``tree_blocks``): it ends
with the same nodes, byte for byte, as a store that writes them with every block; it rebuilds
them after stopping without writing them; it refuses damaged tree changes; and its frozen views
keep the nodes of their height."""

from __future__ import annotations

import pytest
from chainkit import HOUR, Chain

from ledger.chain import execute_block
from ledger.errors import StorageError
from ledger.state.proof import ProofError, check_record, prove_record
from ledger.state.records import k_identity, k_request
from ledger.storage import chainstore
from ledger.storage.chainstore import ChainStore, decode_tree_updates, encode_tree_updates

W = b"W"


def busy_chain() -> tuple[Chain, list]:
    """A chain whose blocks enrol, cross, approve, erase and expire: every kind of tree change
    (new entries, new values, entries moving down and up, a child's whole tree deleted)."""
    chain = Chain()
    authority, terminal = chain.open_border()
    children = [chain.enrol_child(authority) for _ in range(8)]
    requests = [(chain.pending_crossing(terminal, child), child) for child in children[:5]]
    for child in children[5:]:
        chain.commit(chain.crossing(terminal, child))
    chain.commit(chain.erase(children[7]))
    for request, child in requests[:2]:
        chain.commit(*(chain.approve(g, request, child) for g in child.guardians))
    chain.advance(3 * HOUR)  # the other requests expire
    return chain, requests


def follow(store: ChainStore, chain: Chain, upto: int | None = None) -> None:
    for height in range(store.tip.height + 1, (upto or chain.height) + 1):
        executed = execute_block(store, chain.store.block(height))
        assert executed.changes.state_root == chain.store.block(height).header.state_root
        store.commit_block(executed, chain.store.commit(height))


def records(store: ChainStore, start: bytes, stop: bytes) -> dict[bytes, bytes]:
    return dict(store.kv.iterate(start, stop))


def stop_without_writing_the_nodes(store: ChainStore) -> None:
    """What a crash leaves: every block's batch is on disk, the nodes held in memory are not."""
    store.kv._db.close()


@pytest.fixture(scope="module")
def busy():
    return busy_chain()


def test_holding_nodes_for_three_blocks_ends_with_the_nodes_of_a_store_that_writes_every_block(busy, tmp_path):
    chain, _ = busy
    assert chain.height > 10
    every = ChainStore.open(tmp_path / "every", chain.genesis, tree_blocks=0)
    held = ChainStore.open(tmp_path / "held", chain.genesis, tree_blocks=3)
    for height in range(1, chain.height + 1):
        follow(every, chain, height)
        follow(held, chain, height)
        assert held.tip == every.tip
        kept = records(held, W, b"X")  # the blocks since the nodes were last written
        assert len(kept) == height % 3
        assert sorted(int.from_bytes(k[1:], "big") for k in kept) == list(range(height - height % 3 + 1, height + 1))
        assert records(held, b"S", b"T") == records(every, b"S", b"T")
    assert records(held, b"M", b"N") != records(every, b"M", b"N") or chain.height % 3 == 0
    held.flush_tree()
    assert records(held, W, b"X") == {}
    assert records(held, b"M", b"N") == records(every, b"M", b"N")


def test_a_store_that_stopped_without_writing_its_nodes_rebuilds_them_and_goes_on(busy, tmp_path):
    chain, requests = busy
    store = ChainStore.open(tmp_path / "store", chain.genesis, tree_blocks=1000)
    follow(store, chain, chain.height - 2)
    stop_without_writing_the_nodes(store)

    store = ChainStore.open(tmp_path / "store", chain.genesis, tree_blocks=1000)
    assert len(records(store, W, b"X")) == chain.height - 2  # nothing written since genesis but the changes
    header = chain.store.header(store.tip.height)
    request, child = requests[0]
    for key in (k_identity(child.identity), k_request(child.identity, request.id)):
        check_record(header.state_root, prove_record(store.state.get, store.state.tree_node, key))
    follow(store, chain)  # the last two blocks, on the rebuilt nodes
    store.close()  # writes them

    store = ChainStore.open(tmp_path / "store", chain.genesis, tree_blocks=1000)
    assert records(store, W, b"X") == {}
    reference = ChainStore.memory(chain.genesis)
    follow(reference, chain)
    assert records(store, b"M", b"N") == records(reference, b"M", b"N")
    store.close()


def damaged(tmp_path, chain: Chain, damage) -> str:
    """Follow the chain holding every node in memory, stop without writing them, damage the
    kept tree changes, and return why opening the store again fails."""
    path = tmp_path / "store"
    store = ChainStore.open(path, chain.genesis, tree_blocks=1000)
    follow(store, chain)
    kept = records(store, W, b"X")
    stop_without_writing_the_nodes(store)
    from ledger.storage.kv import LevelKV

    kv = LevelKV(path, create=False)
    kv.write(damage(kept))
    kv.close()
    with pytest.raises(StorageError) as err:
        ChainStore.open(path, chain.genesis)
    return str(err.value)


def test_damaged_tree_changes_are_refused_at_start(busy, tmp_path):
    chain, _ = busy
    first = W + (1).to_bytes(8, "big")
    assert "do not decode" in damaged(tmp_path / "a", chain, lambda kept: {first: b"\xc1"})
    middle = W + (chain.height // 2).to_bytes(8, "big")
    assert "not a run up to its tip" in damaged(tmp_path / "b", chain, lambda kept: {middle: None})

    def wrong_value(kept):  # well formed, but one value hash is not what the block wrote
        key = max(kept, key=lambda k: len(kept[k]))
        updates = decode_tree_updates(kept[key])
        namespace, changes, root = updates[0]
        changed = next(k for k, v in changes.items() if v is not None)
        changes[changed] = bytes(32)
        return {key: encode_tree_updates(tuple(updates))}

    assert "does not come out with its recorded root" in damaged(tmp_path / "c", chain, wrong_value)

    def wrong_root(kept):  # the last tree (the global one) recorded with a root it does not have
        key = max(kept)
        *rest, (namespace, changes, root) = decode_tree_updates(kept[key])
        return {key: encode_tree_updates((*rest, (namespace, changes, bytes(32))))}

    assert "does not come out with its recorded root" in damaged(tmp_path / "d", chain, wrong_root)


def test_a_frozen_view_keeps_the_nodes_of_its_height_after_later_blocks_write_them(busy, tmp_path):
    chain, requests = busy
    request, child = requests[0]  # pending when made, approved later
    store = ChainStore.open(tmp_path / "store", chain.genesis, tree_blocks=4)
    follow(store, chain, chain.store.tx_location(request.id).height)
    height = store.tip.height
    view, raw = store.snapshot(), store.raw_view()
    key = k_request(child.identity, request.id)
    before = prove_record(view.get, view.tree_node, key)
    follow(store, chain)  # the request's record changes; the nodes held then are written
    assert records(store, W, b"X") == {} or store.tip.height % 4
    root_then = chain.store.header(height).state_root
    check_record(root_then, prove_record(view.get, view.tree_node, key))
    assert prove_record(view.get, view.tree_node, key) == before
    with pytest.raises(ProofError):  # the view is not the tip
        check_record(store.tip.state_root, before)
    assert raw.height == height
    with pytest.raises(StorageError, match="read by position"):
        list(raw.items(b"M", b"N"))
    view.close()
    raw.close()
    store.close()


def test_a_store_holding_more_nodes_than_it_may_writes_them_at_once(busy, tmp_path, monkeypatch):
    chain, _ = busy
    monkeypatch.setattr(chainstore, "TREE_NODES_HELD", 1)
    store = ChainStore.open(tmp_path / "store", chain.genesis, tree_blocks=1000)
    follow(store, chain)
    assert records(store, W, b"X") == {}
    assert store.state.pending == {}
    store.close()
