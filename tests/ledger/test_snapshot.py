"""State-sync snapshots: a node that installs one holds what a node that replayed every block
holds, goes on with the same roots, still refuses old transactions replayed, and takes nothing
from a snapshot that the certified header does not commit to (docs/adr/0007-state-sync.md)."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
from chainkit import DAY, HOUR, Chain, keys, with_params

from ledger.block import Header
from ledger.chain import build_block, execute_block
from ledger.encoding import decode, encode
from ledger.errors import InvalidBlock, StorageError
from ledger.snapshot.format import CHUNK, MANIFEST, ChildRecords, PartRef, Record
from ledger.snapshot.make import Plan, SnapshotUnavailable, chunk_bytes, plan
from ledger.snapshot.verify import Assembly, NotCovered, SnapshotError
from ledger.state.proof import prove_record
from ledger.state.records import K_TX_LOG, k_identity
from ledger.storage.chainstore import ChainStore
from ledger.storage.health import Patrol, check_recent
from ledger.storage.kv import MemoryKV

TARGET = 700  # small parts and chunks, so that a small chain has many of each and outlined children


@pytest.fixture(scope="module")
def history() -> tuple[Chain, list, dict]:
    """A chain through every rule that writes a derived index: enrolments (retention on),
    crossings permitted, pending, approved, denied, expired and under a consent, a revoked
    consent, a re-enrolment, a court order changing guardians, a guardian's key rotated, and
    children erased by order and by retention."""
    chain = Chain(params=with_params(retention_days=30))
    authority, terminal = chain.open_border()
    children = []
    for _ in range(4):
        child, txs = chain.child_with_history(authority, terminal)
        children.append((child, txs))
    busy = children[0][0]
    for _ in range(6):  # a child whose records outgrow a part: it travels as its own tree
        chain.pending_crossing(terminal, busy)
    expiring = chain.pending_crossing(terminal, children[1][0])
    chain.advance(2 * HOUR)  # past the deadline: expired, alert raised
    assert chain.status(expiring) == "expired"
    chain.pending_crossing(terminal, children[1][0])  # still pending at the snapshot
    consent = chain.grant_consent(children[2][0])
    chain.commit(consent)
    chain.commit(chain.revoke_consent(children[2][0].guardians[0], consent, children[2][0]))
    new_bio = keys(1)[0]
    chain.commit(chain.reenrol(authority, children[2][0], new_bio))
    chain.commit(chain.update_guardians(authority, children[3][0], keys(3)))
    rotated = keys(1)[0]
    chain.commit(chain.rotate(children[1][0].guardians[1].public, rotated.public))
    erased = children[3][0]
    chain.commit(chain.erase(erased))
    adult = replace(chain.new_child(minor=False), identity=os.urandom(16))
    chain.commit(chain.enrol(authority, adult))
    chain.advance(40 * DAY)  # the adult's retention ends: erased by the begin-block rule
    assert chain.identity(adult) is None
    late = chain.enrol_child(authority)
    chain.pending_crossing(terminal, late)
    return chain, children, {"erased": erased, "adult": adult, "terminal": terminal, "late": late}


def snapshot_of(chain: Chain, target: int = TARGET) -> tuple[Plan, object, Header]:
    view = chain.store.raw_view()
    header = chain.store.header(chain.height)
    return plan(view, header, target=target), view, header


def install(chain: Chain, p: Plan, view, header: Header) -> ChainStore:
    """What a joining node does with the chunks, in an in-memory store."""
    assembly = Assembly(header, p.encoded)
    kv = MemoryKV()
    for index in reversed(range(p.chunk_count)):  # any order
        kv.write(assembly.chunk(index, chunk_bytes(view, p, index)))
    kv.write(assembly.finish())
    first, tip = ChainStore.anchor_writes(chain.genesis, header, chain.store.commit(header.height))
    kv.write(first)
    kv.write(tip)
    return ChainStore(kv)


def prefix(store: ChainStore, start: bytes, stop: bytes) -> dict[bytes, bytes]:
    return dict(store.kv.iterate(start, stop))


def test_an_installed_snapshot_holds_every_record_index_and_tree_node_a_replaying_node_holds(history):
    chain, _, _ = history
    p, view, header = snapshot_of(chain)
    assert len(p.manifest.trees) > 1, "the busy child should travel as its own tree"
    assert p.chunk_count > 5
    synced = install(chain, p, view, header)
    # the state, derived indexes included, and every node of every tree
    assert prefix(synced, b"S", b"T") == prefix(chain.store, b"S", b"T")
    assert prefix(synced, b"M", b"N") == prefix(chain.store, b"M", b"N")
    # the transaction index in both orders
    assert prefix(synced, b"X", b"Y") == prefix(chain.store, b"X", b"Y")
    assert prefix(synced, b"K", b"L") == prefix(chain.store, b"K", b"L")
    assert synced.tip == chain.store.tip and synced.base == header.height
    assert synced.header(header.height) == header and synced.block(header.height) is None


def test_a_node_that_joined_by_snapshot_follows_the_chain_with_the_same_roots(history):
    chain, children, named = history
    p, view, header = snapshot_of(chain)
    synced = install(chain, p, view, header)
    fork = Chain.__new__(Chain)  # the same chain, on from here, with its own store copy
    fork.__dict__.update(chain.__dict__)
    fork.store = ChainStore(MemoryKV())
    fork.store.kv.write(prefix(chain.store, b"\x00", b"\xff"))
    fork.store = ChainStore(fork.store.kv)
    child = children[0][0]
    request = fork.crossing(named["terminal"], child)
    for block in (fork.commit(request), fork.commit(fork.approve(child.guardians[0], request, child)),
                  fork.advance(3 * HOUR)):
        executed = execute_block(synced, block.block)
        assert executed.changes.state_root == block.block.header.state_root
        synced.commit_block(executed, fork.store.commit(block.height))
    assert prefix(synced, b"S", b"T") == prefix(fork.store, b"S", b"T")
    assert synced.log().root() == fork.store.log().root()


def test_a_store_begun_from_a_snapshot_is_whole_to_the_health_checks_and_its_base_is_checked(history):
    chain, _, _ = history
    p, view, header = snapshot_of(chain)
    synced = install(chain, p, view, header)
    check_recent(synced)  # no block at the base, only the certified header: that is whole
    patrol = Patrol(synced)
    assert patrol.step(10) is None and patrol.checked == 0
    # the header it began from, gone or replaced: refused like a missing block
    synced.kv.write({b"H" + header.height.to_bytes(8, "big"): b"\x00"})
    with pytest.raises(StorageError, match="began from"):
        check_recent(synced)


def test_rejects_auditing_a_store_begun_from_a_snapshot_and_says_to_audit_a_replayed_one(history):
    from ledger.audit.auditor import Auditor
    from ledger.audit.source import SourceError, StoreSource

    chain, _, _ = history
    p, view, header = snapshot_of(chain)
    synced = install(chain, p, view, header)
    with pytest.raises(SourceError, match=f"state-sync snapshot at height {header.height}.*replayed"):
        Auditor(StoreSource(synced.kv, "the store")).run()
    assert Auditor(StoreSource(chain.store.kv, "the chain")).run().ok  # the replayed one audits


def test_rejects_an_old_transaction_replayed_to_a_node_that_joined_by_snapshot(history):
    chain, children, named = history
    p, view, header = snapshot_of(chain)
    synced = install(chain, p, view, header)
    old = children[0][1][3]  # a crossing committed long before the snapshot
    assert synced.has_tx(old.id) and synced.tx_location(old.id) == chain.store.tx_location(old.id)
    executed, rejected = build_block(synced, [old], time=synced.tip.time + 1000, proposer=chain.proposer(),
                                     last_commit=chain.store.commit(header.height))
    assert executed.txs == [] and rejected[0][1].rule == "duplicate-transaction"
    # and a block that carries it anyway is invalid on the joined node as on every other
    block = replace(executed.block, txs=(old.raw,))
    with pytest.raises(InvalidBlock):
        execute_block(synced, block)


def test_nothing_of_an_erased_child_is_in_a_snapshot_or_comes_back_through_one(history):
    chain, _, named = history
    p, view, header = snapshot_of(chain)
    blob = b"".join(chunk_bytes(view, p, i) for i in range(p.chunk_count)) + p.encoded
    for gone in (named["erased"], named["adult"]):
        assert gone.identity not in blob
        assert gone.biometric.public not in blob
    synced = install(chain, p, view, header)
    assert synced.state.get(k_identity(named["erased"].identity)) is None
    # a chunk that brings the erased child back is refused: its slot holds the tombstone's hash
    erased = named["erased"]
    before = plan(chain.store.raw_view(), header, target=TARGET)
    assembly = Assembly(header, before.encoded)
    resurrected = Record(k_identity(erased.identity), b"\x80")
    for index in range(len(before.state_chunks)):
        chunk = CHUNK.decode(chunk_bytes(view, before, index))
        forged = replace(chunk, parts=(replace(chunk.parts[0], children=(
            *chunk.parts[0].children, ChildRecords(erased.identity, (resurrected,)))), *chunk.parts[1:]))
        with pytest.raises(SnapshotError):
            assembly.chunk(index, CHUNK.encode(forged))


@pytest.mark.parametrize("lie", ["record-value", "record-dropped", "tx-status", "tx-height", "wrong-index",
                                 "not-decodable", "foreign-record"])
def test_rejects_a_chunk_that_is_not_the_one_the_manifest_names(history, lie):
    chain, _, _ = history
    p, view, header = snapshot_of(chain)
    assembly = Assembly(header, p.encoded)
    state, tx = 0, len(p.state_chunks)
    index = tx if lie.startswith("tx") else state
    chunk = CHUNK.decode(chunk_bytes(view, p, index))
    if lie == "record-value":
        part = next(x for x in chunk.parts if x.records)
        r = part.records[0]
        data = _swap_part(chunk, part, replace(part, records=(replace(r, value=r.value + b"\x00"), *part.records[1:])))
    elif lie == "record-dropped":
        part = next(x for x in chunk.parts if x.records)
        data = _swap_part(chunk, part, replace(part, records=part.records[1:]))
    elif lie == "tx-status":
        e = chunk.txs[0]
        data = CHUNK.encode(replace(chunk, txs=(replace(e, status="permitted" if e.status != "permitted" else "ok"),
                                                *chunk.txs[1:])))
    elif lie == "tx-height":
        e = chunk.txs[-1]
        data = CHUNK.encode(replace(chunk, txs=(*chunk.txs[:-1], replace(e, height=header.height + 1))))
    elif lie == "wrong-index":
        index = 1
        data = chunk_bytes(view, p, 0)
    elif lie == "not-decodable":
        data = chunk_bytes(view, p, index)[:-3]
    else:  # a record of the chain, but one the part does not hold
        part = next(x for x in chunk.parts if x.records)
        data = _swap_part(chunk, part, replace(part, records=(*part.records, Record(b"role/" + bytes(32), b"\x80"))))
    with pytest.raises(SnapshotError):
        assembly.chunk(index, data)
    assert index in assembly.missing
    assembly.chunk(index, chunk_bytes(view, p, index))  # the true chunk, from another peer
    assert index not in assembly.missing


def _swap_part(chunk, old, new) -> bytes:
    parts = tuple(new if x is old else x for x in chunk.parts)
    return CHUNK.encode(replace(chunk, parts=parts))


@pytest.mark.parametrize("lie", ["part-hash", "part-dropped", "log-edge", "tx-chunk", "other-height",
                                 "outlined-slot"])
def test_rejects_a_manifest_the_certified_header_does_not_vouch_for(history, lie):
    chain, _, _ = history
    p, _, header = snapshot_of(chain)
    m = p.manifest
    flip = bytes(31) + b"\x01"
    if lie == "part-hash":
        first = m.parts[0]
        wrong = bytes(a ^ b for a, b in zip(first.hash, flip, strict=True))
        m = replace(m, parts=(PartRef(first.tree, first.path, wrong), *m.parts[1:]))
    elif lie == "part-dropped":
        m = replace(m, parts=m.parts[1:], chunks=(m.chunks[0] - 1, *m.chunks[1:]) if m.chunks[0] > 1 else m.chunks[1:])
    elif lie == "log-edge":
        m = replace(m, log=(*m.log[:-1], bytes(32)))
    elif lie == "tx-chunk":
        m = replace(m, tx_chunks=(bytes(32), *m.tx_chunks[1:]))
    elif lie == "other-height":
        header = chain.store.header(header.height - 1)
    else:
        tree = m.trees[1]
        m = replace(m, trees=(m.trees[0], replace(tree, root=bytes(32)), *m.trees[2:]))
    with pytest.raises(SnapshotError):
        Assembly(header, MANIFEST.encode(m))


def test_a_chain_begun_before_protocol_4_offers_no_snapshot_and_a_claim_that_it_does_is_refused():
    chain = Chain(protocol_version=3)
    authority, terminal = chain.open_border()
    child = chain.enrol_child(authority)
    chain.commit(chain.schedule_upgrade(chain.height + 3, 4))
    chain.advance(1000)
    chain.pending_crossing(terminal, child)  # under protocol 4: the id log starts here
    view, header = chain.store.raw_view(), chain.store.header(chain.height)
    with pytest.raises(SnapshotUnavailable, match="before protocol 4"):
        plan(view, header)
    # a server that claims a snapshot anyway: the txlog record is proven to cover too little
    get_state = lambda key: view.get(b"S" + key)  # noqa: E731
    get_node = lambda key: view.get(b"M" + key)  # noqa: E731
    from ledger.merkle import MerkleLog
    from ledger.snapshot.format import Manifest, TreeRef
    from ledger.storage.chainstore import log_key

    edge = tuple(MerkleLog(lambda lv, i: view.get(log_key(lv, i)), header.log_size).right_edge())
    claim = Manifest(header.height, edge, prove_record(get_state, get_node, K_TX_LOG).encode(),
                     (TreeRef(None, header.state_root, None),), (PartRef(0, b"", header.state_root),), (1,), ())
    with pytest.raises(NotCovered):
        Assembly(header, MANIFEST.encode(claim))


def test_every_honest_node_plans_the_same_manifest(history):
    chain, _, _ = history
    first, _, _ = snapshot_of(chain)
    copy = ChainStore(MemoryKV())
    copy.kv.write(prefix(chain.store, b"\x00", b"\xff"))
    copy = ChainStore(copy.kv)
    again = plan(copy.raw_view(), copy.header(copy.height), target=TARGET)
    assert again.encoded == first.encoded and again.hash == first.hash
    assert decode(first.encoded) == decode(encode(decode(first.encoded)))


def test_transaction_chunks_follow_the_log_in_fixed_subtrees():
    from ledger.snapshot.format import TX_CHUNK_LEVEL, tx_chunk_geometry

    big = 1 << TX_CHUNK_LEVEL
    assert tx_chunk_geometry(0) == []
    assert tx_chunk_geometry(5) == [(2, 0), (0, 4)]
    assert tx_chunk_geometry(2 * big + 3) == [(TX_CHUNK_LEVEL, 0), (TX_CHUNK_LEVEL, big), (1, 2 * big),
                                              (0, 2 * big + 2)]


@pytest.mark.parametrize("bad", ["height-0", "position-bool", "ref-31", "extra-field", "status-long", "id-text"])
def test_rejects_in_the_fast_decoding_of_transaction_chunks_what_the_schema_rejects(history, bad):
    from ledger.errors import DecodeError
    from ledger.snapshot.format import decode_chunk

    chain, _, _ = history
    p, view, _ = snapshot_of(chain)
    data = chunk_bytes(view, p, len(p.state_chunks))
    assert decode_chunk(data) == CHUNK.decode(data)
    raw = decode(data)
    entry = raw["txs"][0]
    if bad == "height-0":
        entry["height"] = 0
    elif bad == "position-bool":
        entry["position"] = True
    elif bad == "ref-31":
        entry["ref"] = bytes(31)
    elif bad == "extra-field":
        entry["more"] = 1
    elif bad == "status-long":
        entry["status"] = "x" * 17
    else:
        entry["id"] = "a" * 32
    forged = encode(raw)
    with pytest.raises(DecodeError):
        CHUNK.decode(forged)
    with pytest.raises(DecodeError):
        decode_chunk(forged)


@pytest.mark.parametrize("bad", ["key-empty", "key-text", "value-float", "extra-field", "identity-15",
                                 "child-records-map", "parts-map", "index-negative"])
def test_rejects_in_the_fast_decoding_of_state_chunks_what_the_schema_rejects(history, bad):
    from ledger.errors import DecodeError
    from ledger.snapshot.format import decode_chunk

    chain, _, _ = history
    p, view, _ = snapshot_of(chain)
    for index in range(len(p.state_chunks)):  # the fast path reads every chunk as the schema does
        data = chunk_bytes(view, p, index)
        assert decode_chunk(data) == CHUNK.decode(data)
    # at the full chunk size, children's records travel inside the global tree's parts
    p = plan(view, chain.store.header(chain.height))
    raw = next(raw for raw in (decode(chunk_bytes(view, p, i)) for i in range(len(p.state_chunks)))
               if any(c["records"] for part in raw["parts"] for c in part["children"]))
    part, child = next((part, c) for part in raw["parts"] for c in part["children"] if c["records"])
    record = child["records"][0]
    if bad == "key-empty":
        record["key"] = b""
    elif bad == "key-text":
        record["key"] = "c/"
    elif bad == "value-float":
        record["value"] = 1.5
    elif bad == "extra-field":
        record["more"] = 1
    elif bad == "identity-15":
        child["identity"] = bytes(15)
    elif bad == "child-records-map":
        child["records"] = {}
    elif bad == "parts-map":
        raw["parts"] = {}
    else:
        raw["index"] = -1
    import msgpack

    forged = msgpack.packb(raw, use_bin_type=True)  # a float has no canonical form: packed as it is
    with pytest.raises(DecodeError):
        CHUNK.decode(forged)
    with pytest.raises(DecodeError):
        decode_chunk(forged)


def test_chunks_and_index_entries_are_encoded_as_their_schemas_encode_them(history):
    from ledger.snapshot.format import encode_chunk
    from ledger.storage.chainstore import TX_LOCATION, encode_location

    chain, _, _ = history
    p, view, _ = snapshot_of(chain)
    for index in range(p.chunk_count):
        data = chunk_bytes(view, p, index)
        assert data == CHUNK.encode(CHUNK.decode(data)) == encode_chunk(CHUNK.decode(data))
    locations = [TX_LOCATION.decode(v) for _, v in chain.store.kv.iterate(b"X", b"Y")]
    assert {loc.status for loc in locations} >= {"permitted", "pending", "denied"}
    assert any(loc.ref is None for loc in locations) and any(loc.ref is not None for loc in locations)
    for loc in locations:
        assert encode_location(loc) == TX_LOCATION.encode(loc)
