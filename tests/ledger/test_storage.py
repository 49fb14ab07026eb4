"""The chain store: LevelDB survives restarts, refuses a foreign genesis, and commits all or nothing."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pytest
from chainkit import Chain

from ledger.errors import StorageError
from ledger.genesis import Genesis
from ledger.storage.chainstore import ChainStore
from ledger.storage.kv import LevelKV, MemoryKV


def everything(store: ChainStore) -> dict[bytes, bytes]:
    return dict(store.kv.iterate(b"", b"\xff"))


def story(chain: Chain):
    """A few blocks of ordinary traffic; returns the last crossing request and its approvals."""
    authority, terminal = chain.open_border()
    child = chain.enrol_child(authority)
    request = chain.pending_crossing(terminal, child)
    approvals = [chain.approve(g, request, child) for g in child.guardians]
    chain.commit(*approvals)
    return [request, *approvals]


@pytest.fixture
def disk_chain(tmp_path) -> Iterator[Chain]:
    chain = Chain(path=tmp_path / "node0")
    yield chain
    chain.store.close()


def test_reopened_leveldb_store_has_the_same_tip_state_and_blocks(disk_chain: Chain):
    txs = story(disk_chain)
    tip, state = disk_chain.store.tip, disk_chain.state()
    blocks = [disk_chain.store.block_bytes(h) for h in range(1, tip.height + 1)]

    disk_chain.reopen()
    store = disk_chain.store
    assert store.tip == tip and disk_chain.state() == state
    assert [store.block_bytes(h) for h in range(1, tip.height + 1)] == blocks
    assert store.genesis == disk_chain.genesis and store.chain.chain_id == disk_chain.chain_id
    assert store.height_of(tip.hash) == tip.height
    assert store.commit(tip.height).block == tip.hash
    request, *approvals = txs
    assert store.tx_location(request.id).height == tip.height - 1
    assert [store.tx_location(a.id).height for a in approvals] == [tip.height] * len(approvals)
    disk_chain.advance(1_000)  # and it carries on from there
    assert store.height == tip.height + 1


def test_reopening_without_a_genesis_reads_the_stored_one(disk_chain: Chain, tmp_path):
    story(disk_chain)
    tip = disk_chain.store.tip
    disk_chain.store.close()
    store = ChainStore.open(tmp_path / "node0")
    try:
        assert store.tip == tip and store.genesis.hash == disk_chain.genesis.hash
    finally:
        store.close()


def test_rejects_initialising_a_store_with_another_genesis(disk_chain: Chain, tmp_path):
    disk_chain.advance(1_000)
    other = Chain()  # another council, other validators: another chain
    disk_chain.store.close()
    with pytest.raises(StorageError, match="genesis"):
        ChainStore.open(tmp_path / "node0", other.genesis)
    disk_chain.reopen()  # the data directory is untouched
    assert disk_chain.height == 1


def test_rejects_another_genesis_in_memory_too(chain: Chain):
    with pytest.raises(StorageError):
        chain.store.initialize(Chain().genesis)
    chain.store.initialize(chain.genesis)  # the same one again is fine
    assert chain.height == 0


def test_an_uninitialised_store_says_so():
    store = ChainStore.memory()
    with pytest.raises(StorageError):
        _ = store.tip


def test_rejects_storing_a_block_that_does_not_extend_the_tip(chain: Chain):
    proposed, _ = chain.propose()
    commit = chain.precommits(proposed)
    chain.finalize(proposed)
    with pytest.raises(StorageError):
        chain.store.commit_block(proposed, commit)  # the same block again
    assert chain.height == 1


def test_rejects_storing_a_block_with_the_commit_of_another_block(chain: Chain):
    first, _ = chain.propose()
    other, _ = chain.propose(time=chain.now + 5_000)
    with pytest.raises(StorageError):
        chain.store.commit_block(first, chain.precommits(other))
    assert chain.height == 0


# --------------------------------------------------------------------------- crash in the middle of a write


class PowerCut(Exception):
    """The process dies while the write batch is being assembled."""


class HalfWrittenMapping(Mapping):
    """The changes of one block, of which only the first ``survive`` reach the batch."""

    def __init__(self, changes: Mapping[bytes, bytes | None], survive: int) -> None:
        self._changes, self._survive = changes, survive

    def __getitem__(self, key):
        return self._changes[key]

    def __len__(self):
        return len(self._changes)

    def __iter__(self):
        for i, key in enumerate(self._changes):
            if i == self._survive:
                raise PowerCut
            yield key

    def items(self):
        for i, item in enumerate(self._changes.items()):
            if i == self._survive:
                raise PowerCut
            yield item


class CrashingKV:
    """A key-value store whose next write dies half way through."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.armed = False

    def get(self, key):
        return self.inner.get(key)

    def iterate(self, start, stop, *, reverse=False):
        return self.inner.iterate(start, stop, reverse=reverse)

    def write(self, changes, *, sync=True):
        if self.armed:
            self.armed = False
            changes = HalfWrittenMapping(changes, survive=len(changes) // 2)
        self.inner.write(changes, sync=sync)

    def close(self):
        self.inner.close()


@pytest.mark.parametrize("backend", ["leveldb", "memory"])
def test_a_block_commit_that_fails_half_way_leaves_the_previous_tip(tmp_path, backend):
    chain = Chain()
    genesis: Genesis = chain.genesis
    kv = CrashingKV(LevelKV(tmp_path / "db") if backend == "leveldb" else MemoryKV())
    chain.store = ChainStore(kv)
    chain.store.initialize(genesis)
    story(chain)
    tip, before = chain.store.tip, everything(chain.store)

    proposed, _ = chain.propose([chain.register_post("MD-99")])
    kv.armed = True
    with pytest.raises(PowerCut):
        chain.finalize(proposed)
    assert everything(chain.store) == before, "half a block reached the store"
    assert chain.store.tip == tip

    if backend == "leveldb":  # the node restarts on the same data directory
        chain.store.close()
        chain.store = ChainStore(LevelKV(tmp_path / "db"))
        chain.store.initialize(genesis)
        assert chain.store.tip == tip and everything(chain.store) == before
    chain.commit(chain.register_post("MD-99"))
    assert chain.height == tip.height + 1


def test_a_transaction_is_not_committed_for_readers_before_the_tip_that_holds_it(disk_chain: Chain):
    """The writer thread writes a block's batch, then moves the cached tip: a reader in between
    must not see a location that no proof up to its tip can cover."""
    authority, terminal = disk_chain.open_border()
    adult = disk_chain.enrol_child(authority, minor=False)
    store = disk_chain.store
    before = store.tip
    crossing = disk_chain.crossing(terminal, adult)
    disk_chain.commit(crossing)
    assert store.tx_location(crossing.id) is not None
    store._tip = before  # the instant between the batch and the tip's update
    assert store.tx_location(crossing.id) is None


def test_index_records_and_slot_changes_are_stored_as_their_schemas_encode_them(chain: Chain, border):
    """The store builds a block's index records and slot changes without the schemas' generic
    walk; the bytes must be the schemas' own, for crossings permitted and pending, with and
    without a ref, and for blocks whose executed transactions sit at other places than 0, 1, ...
    (stubs between), and for a slot emptied (nil)."""
    from dataclasses import replace

    from ledger.encoding import encode
    from ledger.storage.chainstore import (
        SLOTS,
        TX_LOCATION,
        Slot,
        encode_slots,
        encoded_locations,
        expected_location,
    )

    authority, terminal = border
    adult, minor = chain.enrol_child(authority, minor=False), chain.enrol_child(authority)
    consented = chain.enrol_child(authority)
    chain.commit(chain.grant_consent(consented))
    executed = chain.commit(chain.crossing(terminal, adult), chain.crossing(terminal, minor),
                            chain.crossing(terminal, consented))
    statuses = [r.outcome.status for r in executed.changes.results]
    refs = [r.outcome.ref for r in executed.changes.results]
    assert statuses == ["permitted", "pending", "permitted"] and refs[0] is None and refs[2] is not None
    for block in (executed, replace(executed, positions=(0, 2, 5))):
        expected = [TX_LOCATION.encode(expected_location(block, i)) for i in range(len(block.txs))]
        assert encoded_locations(block) == expected
    assert [TX_LOCATION.decode(r).index for r in encoded_locations(replace(executed, positions=(0, 2, 5)))] == [0, 2, 5]

    slots = (*executed.changes.slots, (b"\xff" * 32, None))
    assert len(executed.changes.slots) == 3
    assert encode_slots(slots) == encode(SLOTS.wire([Slot(tag, value) for tag, value in slots]))
    assert encode_slots(()) == encode([])


def test_the_stored_state_finds_the_last_entry_of_a_range_as_its_scan_ends(disk_chain: Chain):
    """``last`` reads LevelDB backwards (a snapshot forwards): the same entry a scan ends with,
    for ranges that hold many entries, one, or none, and for bounds between entries."""
    chain = disk_chain
    authority, terminal = chain.open_border()
    validator = chain.add_validator()
    chain.commit(chain.set_validator(validator.public, 7))
    for _ in range(3):
        chain.enrol_child(authority)
    state, snapshot = chain.store.state, chain.store.snapshot()
    keys = [k for k, _ in state.scan(b"", b"\xff")]
    assert len(keys) > 20 and sum(k.startswith(b"vset/") for k in keys) >= 2
    bounds = [b"", b"\xff", b"vset/", b"vset0", b"c/", b"c0", b"zz"] + keys[::3] + [k + b"\x00" for k in keys[::5]]
    try:
        for start in bounds:
            for stop in bounds:
                entries = list(state.scan(start, stop))
                expected = entries[-1] if entries else None
                assert state.last(start, stop) == expected == snapshot.last(start, stop), (start, stop)
    finally:
        snapshot.close()


def test_leveldb_iterates_a_range_backwards_as_memory_does(tmp_path):
    """Every range, both ways, the same on LevelDB as in memory: plyvel alone, going backwards,
    leaves out the range's first key when it is the only one (``[b"a1", b"a2")`` gave nothing)."""
    keys = [b"a1", b"a2", b"b", b"c"]
    disk, memory = LevelKV(tmp_path / "kv"), MemoryKV()
    for kv in (disk, memory):
        kv.write({k: b"v" + k for k in keys})
    bounds = [b"\x01", b"a", b"a1", b"a1\x00", b"a2", b"a3", b"b", b"c", b"d"]
    for start in bounds:
        for stop in bounds:
            for reverse in (False, True):
                expected = list(memory.iterate(start, stop, reverse=reverse))
                assert list(disk.iterate(start, stop, reverse=reverse)) == expected, (start, stop, reverse)
    assert list(disk.iterate(b"a1", b"a2", reverse=True)) == [(b"a1", b"va1")]
