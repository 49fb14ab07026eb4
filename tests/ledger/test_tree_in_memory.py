"""A store that holds the state trees' nodes in memory for some blocks (``tree_blocks``): it ends
with the same nodes, byte for byte, as a store that writes them with every block; it rebuilds
them from its tree journal after stopping without writing them (or from the ``W`` records of a
store written before the journal); it refuses a damaged or missing journal; and its frozen views
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
from ledger.storage.kv import LevelKV
from ledger.storage.treejournal import JOURNAL_NAME, TreeJournal, frame

W, J = b"W", b"J"


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


def journal(store_or_path) -> list[tuple[int, bytes]]:
    """(height, encoded tree changes) of each whole entry of a store's tree journal."""
    path = store_or_path.kv.path if isinstance(store_or_path, ChainStore) else store_or_path
    return [(height, payload) for height, payload, _ in TreeJournal(path / JOURNAL_NAME).read()]


def held_since(store: ChainStore) -> int | None:
    """The height the nodes on disk are at while later blocks' nodes are held (``J``)."""
    raw = store.kv.get(J)
    return None if raw is None else int.from_bytes(raw, "big")


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
        written = height - height % 3  # the last height whose nodes were written
        assert [h for h, _ in journal(held)] == list(range(written + 1, height + 1))
        assert held_since(held) == (written if height % 3 else None)
        assert held.tree_blocks_held == height % 3
        assert records(held, b"S", b"T") == records(every, b"S", b"T")
    assert records(held, b"M", b"N") != records(every, b"M", b"N") or chain.height % 3 == 0
    held.flush_tree()
    assert journal(held) == [] and held_since(held) is None
    assert records(held, b"M", b"N") == records(every, b"M", b"N")
    assert records(held, W, b"X") == {}


def test_a_store_that_stopped_without_writing_its_nodes_rebuilds_them_and_goes_on(busy, tmp_path):
    chain, requests = busy
    store = ChainStore.open(tmp_path / "store", chain.genesis, tree_blocks=1000)
    follow(store, chain, chain.height - 2)
    stop_without_writing_the_nodes(store)

    store = ChainStore.open(tmp_path / "store", chain.genesis, tree_blocks=1000)
    assert len(journal(store)) == chain.height - 2  # nothing written since genesis but the changes
    assert held_since(store) == 0
    header = chain.store.header(store.tip.height)
    request, child = requests[0]
    for key in (k_identity(child.identity), k_request(child.identity, request.id)):
        check_record(header.state_root, prove_record(store.state.get, store.state.tree_node, key))
    follow(store, chain)  # the last two blocks, on the rebuilt nodes
    store.close()  # writes them

    store = ChainStore.open(tmp_path / "store", chain.genesis, tree_blocks=1000)
    assert journal(store) == [] and held_since(store) is None
    reference = ChainStore.memory(chain.genesis)
    follow(reference, chain)
    assert records(store, b"M", b"N") == records(reference, b"M", b"N")
    store.close()


def crashed(path, chain: Chain, upto: int | None = None) -> None:
    """Follow the chain holding every node in memory, and stop without writing them."""
    store = ChainStore.open(path, chain.genesis, tree_blocks=1000)
    follow(store, chain, upto)
    stop_without_writing_the_nodes(store)


def damaged(tmp_path, chain: Chain, damage) -> str:
    """A crashed store whose tree journal ``damage`` rewrites (from its entries to the file's
    new bytes): why opening the store again fails."""
    path = tmp_path / "store"
    crashed(path, chain)
    (path / JOURNAL_NAME).write_bytes(damage(journal(path)))
    with pytest.raises(StorageError) as err:
        ChainStore.open(path, chain.genesis)
    return str(err.value)


def framed(entries) -> bytes:
    return b"".join(frame(height, payload) for height, payload in entries)


def test_a_damaged_or_missing_tree_journal_is_refused_at_start(busy, tmp_path):
    chain, _ = busy
    assert "do not decode" in damaged(tmp_path / "a", chain, lambda kept: framed([(1, b"\xc1"), *kept[1:]]))
    middle = chain.height // 2
    gap = damaged(tmp_path / "b", chain, lambda kept: framed(e for e in kept if e[0] != middle))
    assert "does not hold the tree changes of blocks 1 to" in gap

    def flipped(kept):  # a byte of the first entry's payload changed: its checksum fails
        data = bytearray(framed(kept))
        data[20] ^= 1
        return bytes(data)

    assert "(it holds blocks: none)" in damaged(tmp_path / "c", chain, flipped)
    assert "does not hold" in damaged(tmp_path / "d", chain, lambda kept: b"")
    path = tmp_path / "g" / "store"
    crashed(path, chain)
    kv = LevelKV(path, create=False)
    kv.write({J: chain.height.to_bytes(8, "big")})  # says the nodes on disk are the tip's own
    kv.close()
    with pytest.raises(StorageError, match="is not a height below its tip"):
        ChainStore.open(path, chain.genesis)

    def wrong_value(kept):  # well formed, but one value hash is not what the block wrote
        i = max(range(len(kept)), key=lambda i: len(kept[i][1]))
        updates = decode_tree_updates(kept[i][1])
        namespace, changes, root = updates[0]
        changed = next(k for k, v in changes.items() if v is not None)
        changes[changed] = bytes(32)
        kept[i] = (kept[i][0], encode_tree_updates(tuple(updates)))
        return framed(kept)

    assert "does not come out with its recorded root" in damaged(tmp_path / "e", chain, wrong_value)

    def wrong_root(kept):  # the last tree (the global one) recorded with a root it does not have
        *rest, (namespace, changes, root) = decode_tree_updates(kept[-1][1])
        kept[-1] = (kept[-1][0], encode_tree_updates((*rest, (namespace, changes, bytes(32)))))
        return framed(kept)

    assert "does not come out with its recorded root" in damaged(tmp_path / "f", chain, wrong_root)


@pytest.mark.parametrize("tail", ["whole", "torn"])
def test_an_entry_past_the_tip_is_dropped_and_the_store_goes_on(busy, tmp_path, tail):
    """A crash between the journal's append and the block's batch leaves an entry (whole, or cut
    short) for a block the store does not hold: the store rebuilds without it, drops it, and
    records the block's changes afresh when it stores the block."""
    chain, _ = busy
    path = tmp_path / "store"
    crashed(path, chain, chain.height - 1)
    kept = journal(path)
    extra = frame(chain.height, b"changes of a block never stored")
    (path / JOURNAL_NAME).write_bytes(framed(kept) + (extra if tail == "whole" else extra[:-3]))
    store = ChainStore.open(path, chain.genesis, tree_blocks=1000)
    assert journal(store) == kept
    follow(store, chain)
    assert [h for h, _ in journal(store)] == list(range(1, chain.height + 1))
    store.close()
    reference = ChainStore.memory(chain.genesis)
    follow(reference, chain)
    store = ChainStore.open(path, chain.genesis)
    assert records(store, b"M", b"N") == records(reference, b"M", b"N")
    store.close()


def test_a_block_whose_batch_fails_leaves_no_entry_in_the_journal(busy, tmp_path, monkeypatch):
    chain, _ = busy
    store = ChainStore.open(tmp_path / "store", chain.genesis, tree_blocks=1000)
    follow(store, chain, 3)
    executed = execute_block(store, chain.store.block(4))

    def failing(changes, *, sync=True):
        raise StorageError("LevelDB at store: a write failed: disk full")

    with monkeypatch.context() as m:
        m.setattr(store.kv, "write", failing)
        with pytest.raises(StorageError, match="disk full"):
            store.commit_block(executed, chain.store.commit(4))
    assert [h for h, _ in journal(store)] == [1, 2, 3]
    store.commit_block(executed, chain.store.commit(4))
    assert [h for h, _ in journal(store)] == [1, 2, 3, 4]
    store.close()


def in_the_earlier_layout(path, chain: Chain, leave_out: int | None = None) -> None:
    """A crashed store as the code before the journal left it: the tree changes as ``W`` +
    height records (but block ``leave_out``'s), no ``J``, no journal."""
    crashed(path, chain)
    kv = LevelKV(path, create=False)
    kv.write({J: None, **{W + height.to_bytes(8, "big"): payload for height, payload in journal(path)
                          if height != leave_out}})
    kv.close()
    (path / JOURNAL_NAME).unlink()


def test_a_store_written_before_the_journal_rebuilds_from_its_w_records_and_writes_the_nodes(busy, tmp_path):
    chain, _ = busy
    in_the_earlier_layout(tmp_path / "gap", chain, leave_out=chain.height // 2)
    with pytest.raises(StorageError, match="not a run up to its tip"):
        ChainStore.open(tmp_path / "gap", chain.genesis)
    path = tmp_path / "store"
    in_the_earlier_layout(path, chain)
    store = ChainStore.open(path, chain.genesis)
    assert records(store, W, b"X") == {} and held_since(store) is None
    reference = ChainStore.memory(chain.genesis)
    follow(reference, chain)
    assert records(store, b"M", b"N") == records(reference, b"M", b"N")
    store.close()


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
    assert held_since(store) is None or store.tip.height % 4
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
    assert journal(store) == [] and held_since(store) is None
    assert store.state.pending == {}
    store.close()
