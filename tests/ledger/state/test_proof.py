"""Record proofs against the header's state root: every kind of record, present and absent, and
the forgeries a lying node might try (each rejected)."""

from __future__ import annotations

import dataclasses

import pytest
from chainkit import Chain
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.state import smt
from ledger.state.authenticated import value_hash
from ledger.state.proof import ProofError, RecordProof, check_record, prove_record
from ledger.state.records import (
    K_COUNCIL,
    REQUEST,
    k_erased,
    k_identity,
    k_request,
    k_role,
    k_valset,
    k_ward,
)


@pytest.fixture
def story():
    """A chain with a global record, two children, a pending and a permitted request, and an
    erased third child."""
    chain = Chain()
    authority, terminal = chain.open_border()
    child, other, gone = (chain.enrol_child(authority) for _ in range(3))
    pending = chain.crossing(terminal, child)
    chain.commit(pending)
    done = chain.crossing(terminal, other)
    chain.commit(done)
    chain.commit(chain.approve(other.guardians[0], done, other), chain.approve(other.guardians[1], done, other))
    chain.commit(chain.erase(gone))
    return chain, child, other, gone, pending, done


def root(chain: Chain, height: int | None = None) -> bytes:
    header = chain.store.header(chain.store.height if height is None else height)
    assert header is not None
    return header.state_root


def prove(chain: Chain, key: bytes) -> RecordProof:
    state = chain.store.state
    proof = prove_record(state.get, state.tree_node, key)
    return RecordProof.decode(proof.encode())  # what travels is the wire form


def test_every_kind_of_record_is_proven_against_the_header(story):
    chain, child, other, gone, pending, done = story
    r = root(chain)
    council = prove(chain, K_COUNCIL)
    assert council.value is not None and council.child_proof is None
    council.check(r)
    request = prove(chain, k_request(other.identity, done.id))
    request.check(r)
    assert REQUEST.decode(request.value).status == "permitted"
    prove(chain, k_request(child.identity, pending.id)).check(r)
    prove(chain, k_identity(child.identity)).check(r)
    prove(chain, k_valset(1)).check(r)


def test_absence_is_proven_under_a_slot_without_a_slot_and_under_a_tombstone(story):
    chain, child, other, gone, pending, done = story
    r = root(chain)
    missing = prove(chain, k_request(child.identity, b"\x01" * 32))
    assert missing.value is None and missing.slot is not None
    missing.check(r)
    never = prove(chain, k_identity(b"\xee" * 16))
    assert never.value is None and never.slot is None
    never.check(r)
    erased = prove(chain, k_identity(gone.identity))
    assert erased.value is None and erased.tombstone is not None
    erased.check(r)
    prove(chain, k_erased(chain_tag(gone))).check(r)
    prove(chain, k_role(b"\x05" * 32)).check(r)


def chain_tag(child) -> bytes:
    from ledger.privacy.tags import child_tag

    return child_tag(child.identity)


def test_rejects_derived_index_keys(story):
    chain, child, *_ = story
    with pytest.raises(ProofError):
        prove_record(chain.store.state.get, chain.store.state.tree_node, k_ward(child.guardians[0].public))


def _flip(b: bytes, i: int = 0) -> bytes:
    return b[:i] + bytes([b[i] ^ 1]) + b[i + 1:]


def _rejected(proof: RecordProof, state_root: bytes) -> bool:
    try:
        check_record(state_root, proof)
    except ProofError:
        return True
    return False


def test_rejects_a_flipped_byte_anywhere_in_a_proof(story):
    chain, child, *_ = story
    r = root(chain)
    good = prove(chain, k_request(child.identity, story[4].id))
    raw = good.encode()
    flipped_ok = 0
    for i in range(len(raw)):
        try:
            mutated = RecordProof.decode(_flip(raw, i))
        except Exception:
            continue
        assert _rejected(mutated, r), f"flipping byte {i} still verifies"
        flipped_ok += 1
    assert flipped_ok > len(raw) // 2  # most flips decode and must be caught by the check itself


def test_rejects_a_proof_for_another_key_or_value(story):
    chain, child, other, gone, pending, done = story
    r = root(chain)
    good = prove(chain, k_request(other.identity, done.id))
    assert _rejected(dataclasses.replace(good, key=k_request(other.identity, pending.id)), r)
    assert _rejected(dataclasses.replace(good, key=k_request(child.identity, done.id)), r)
    permitted = REQUEST.decode(good.value)
    lie = REQUEST.encode(dataclasses.replace(permitted, status="expired"))
    assert _rejected(dataclasses.replace(good, value=lie), r)
    assert _rejected(dataclasses.replace(good, value=None), r)


def test_rejects_a_proof_checked_at_another_height(story):
    chain, child, *_ = story
    good = prove(chain, k_request(child.identity, story[4].id))
    earlier = root(chain, chain.store.height - 1)
    assert _rejected(good, earlier)
    chain.advance(1000)
    assert not _rejected(good, earlier := root(chain, chain.store.height - 1))  # same state, empty block
    chain.commit(chain.approve(child.guardians[0], story[4], child))
    assert _rejected(good, root(chain))


def test_rejects_a_truncated_or_extended_path(story):
    chain, child, *_ = story
    r = root(chain)
    good = prove(chain, k_request(child.identity, story[4].id))
    g, c = good.global_proof, good.child_proof
    assert c is not None
    assert g.siblings, "a chain with several children has a global path"
    assert _rejected(dataclasses.replace(good, global_proof=smt.Proof(g.siblings[:-1], g.leaf)), r)
    assert _rejected(dataclasses.replace(good, global_proof=smt.Proof((*g.siblings, smt.EMPTY), g.leaf)), r)
    if c.siblings:
        assert _rejected(dataclasses.replace(good, child_proof=smt.Proof(c.siblings[:-1], c.leaf)), r)
    assert _rejected(dataclasses.replace(good, child_proof=None), r)


def test_rejects_absence_claims_for_a_present_record(story):
    chain, child, other, gone, pending, done = story
    r = root(chain)
    key = k_request(other.identity, done.id)
    good = prove(chain, key)
    # the node pretends the child has no slot, or the slot holds nothing for the key, or the
    # child was erased (with another child's genuine tombstone)
    absent_other = prove(chain, k_request(other.identity, b"\x02" * 32))
    tomb = prove(chain, k_identity(gone.identity))
    forgeries = [
        dataclasses.replace(good, value=None),
        dataclasses.replace(good, value=None, child_proof=smt.Proof(good.child_proof.siblings, None)),
        dataclasses.replace(absent_other, key=key),
        dataclasses.replace(good, value=None, slot=None, child_proof=None),
        dataclasses.replace(good, value=None, child_proof=None, tombstone=tomb.tombstone),
        dataclasses.replace(tomb, key=key),
    ]
    for forged in forgeries:
        assert _rejected(forged, r), forged


@settings(max_examples=60, deadline=None)
@given(st.sets(st.binary(min_size=32, max_size=32), min_size=1, max_size=40), st.data())
def test_rejects_non_membership_for_a_present_key_in_any_tree(keys, data):
    """Whatever siblings and end a forger picks from real proofs of the same tree, a present key
    never verifies as absent."""
    store: dict[bytes, bytes] = {}
    tree = smt.Tree(b"t", store.get)
    root_, writes = tree.update({k: value_hash(k) for k in keys})
    store.update({p: v for p, v in writes.items() if v is not None})
    present = data.draw(st.sampled_from(sorted(keys)))
    other = data.draw(st.binary(min_size=32, max_size=32))
    genuine = tree.prove(present)
    for siblings_from in (genuine, tree.prove(other)):
        for depth in range(len(siblings_from.siblings) + 1):
            cut = siblings_from.siblings[:depth]
            assert not smt.verify(root_, present, None, smt.Proof(cut, None))
            if other not in keys:
                assert not smt.verify(root_, present, None, smt.Proof(cut, (other, value_hash(other))))
    for k in keys:
        if k != present:
            assert not smt.verify(root_, present, None, smt.Proof(genuine.siblings, (k, value_hash(k))))
