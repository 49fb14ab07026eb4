"""Protocol 5: a pending request's marker lives in a derived index, not in the child's tree.

A minor's crossing then writes one record to the child's tree instead of two. Chains that began
earlier keep the markers their requests were made with until those requests close; every rule
and read that looks for pending requests finds both kinds, an audit re-executes both, and a node
that joins by snapshot rebuilds exactly the index a replaying node holds.
"""

from __future__ import annotations

from dataclasses import replace

from chainkit import DAY, HOUR, Chain, keys

from ledger.audit.auditor import Auditor
from ledger.audit.source import StoreSource
from ledger.rules.crossing import pending_ids
from ledger.snapshot.make import chunk_bytes, plan
from ledger.snapshot.verify import Assembly
from ledger.state.authenticated import child_tree, key_hash
from ledger.state.records import k_pending, k_pending_index, k_request
from ledger.storage.chainstore import ChainStore
from ledger.storage.kv import MemoryKV
from node.api.queries import pending_for_guardian


def in_child_tree(chain: Chain, key: bytes, identity: bytes) -> bool:
    return child_tree(identity, chain.store.state.tree_node).lookup(key_hash(key)) is not None


def test_a_pending_request_adds_only_its_record_to_the_childs_tree():
    chain = Chain()  # a new chain starts at the latest protocol
    authority, terminal = chain.open_border()
    child = chain.enrol_child(authority)
    request = chain.pending_crossing(terminal, child)
    state = chain.store.state
    assert state.get(k_pending(child.identity, request.id)) is None
    assert state.get(k_pending_index(child.identity, request.id)) is not None
    assert in_child_tree(chain, k_request(child.identity, request.id), child.identity)
    guardian = child.guardians[0]
    assert [rid for rid, _ in pending_for_guardian(state, guardian.public)] == [request.id]
    chain.commit(*(chain.approve(g, request, child) for g in child.guardians[:child.policy.approvals]))
    assert chain.status(request) == "permitted"
    assert state.get(k_pending_index(child.identity, request.id)) is None
    assert pending_for_guardian(state, guardian.public) == []


def test_markers_made_before_the_upgrade_and_after_it_are_both_found_and_both_cleared(tmp_path):
    chain = Chain(protocol_version=4, path=tmp_path / "store")  # a real LevelDB store
    authority, terminal = chain.open_border()
    child = chain.enrol_child(authority)
    before = chain.pending_crossing(terminal, child)
    assert in_child_tree(chain, k_pending(child.identity, before.id), child.identity)
    chain.commit(chain.schedule_upgrade(chain.height + 3, 5))
    chain.advance(1)
    chain.advance(1)
    chain.advance(1)
    after = chain.pending_crossing(terminal, child)
    assert chain.store.block(chain.height).header.version == 5
    state = chain.store.state
    assert state.get(k_pending_index(child.identity, after.id)) is not None
    assert not in_child_tree(chain, k_pending(child.identity, after.id), child.identity)
    assert pending_ids(state, child.identity) == sorted([before.id, after.id])
    guardian = child.guardians[0]
    assert {rid for rid, _ in pending_for_guardian(state, guardian.public)} == {before.id, after.id}

    # a court order re-evaluates both: the new guardians' policy leaves both pending, for them
    new_guardians = keys(2)
    chain.commit(chain.update_guardians(authority, child, new_guardians))
    assert pending_for_guardian(state, guardian.public) == []
    assert {rid for rid, _ in pending_for_guardian(state, new_guardians[0].public)} == {before.id, after.id}

    # a node that joins here by snapshot holds what this replaying node holds, indexes included
    view, header = chain.store.raw_view(), chain.store.header(chain.height)
    p = plan(view, header)
    assembly = Assembly(header, p.encoded)
    kv = MemoryKV()
    for index in range(p.chunk_count):
        kv.write(assembly.chunk(index, chunk_bytes(view, p, index)))
    kv.write(assembly.finish())
    joined = ChainStore(kv)
    assert dict(joined.kv.iterate(b"S", b"T")) == dict(chain.store.kv.iterate(b"S", b"T"))

    # closing each removes its own marker: the old one from the tree, the new one from the index
    child = replace(child, guardians=new_guardians)
    chain.commit(*(chain.approve(g, before, child) for g in new_guardians[:child.policy.approvals]))
    assert chain.status(before) == "permitted"
    assert state.get(k_pending(child.identity, before.id)) is None
    chain.advance(2 * DAY)  # past the deadline
    assert chain.status(after) == "expired"
    assert state.get(k_pending_index(child.identity, after.id)) is None
    assert pending_ids(state, child.identity) == []

    report = Auditor(StoreSource(chain.store.kv, "store")).run()
    assert report.ok, report.failure
    assert report.checked_height == chain.height


def test_erasing_a_child_removes_its_pending_markers_from_the_index():
    chain = Chain()
    authority, terminal = chain.open_border()
    child = chain.enrol_child(authority)
    request = chain.pending_crossing(terminal, child)
    chain.advance(HOUR // 2)
    chain.commit(chain.erase(child))
    assert chain.store.state.get(k_pending_index(child.identity, request.id)) is None
    assert list(chain.store.kv.iterate(b"Sx/pd/", b"Sx/pd0")) == []
