"""The compact sparse Merkle tree against a plain dictionary, its proofs, and its vectors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from chainkit import HOUR, Chain
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.chain import execute_block
from ledger.state.authenticated import CHILD_NAMESPACE, GLOBAL_NAMESPACE
from ledger.state.proof import check_record, prove_record
from ledger.state.records import k_identity, k_request
from ledger.state.smt import EMPTY, RADIX, Proof, Tree, build_part, fold_parts, leaf_hash, nibble, node_hash, verify
from ledger.storage.chainstore import ChainStore
from ledger.storage.kv import MemoryKV

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "state_smt.json"


def h(n: int) -> bytes:
    return hashlib.sha256(n.to_bytes(8, "big")).digest()


def reference_root(entries: dict[bytes, bytes], depth: int = 0) -> bytes:
    """The root straight from the definition: EMPTY, a lone leaf, or a node over the 16 parts."""
    if not entries:
        return EMPTY
    if len(entries) == 1:
        (k, v), = entries.items()
        return leaf_hash(k, v)
    parts = [{k: v for k, v in entries.items() if nibble(k, depth) == n} for n in range(RADIX)]
    return node_hash(b"".join(reference_root(part, depth + 1) for part in parts))


class Store:
    def __init__(self) -> None:
        self.kv: dict[bytes, bytes] = {}

    def tree(self, ns: bytes = b"t") -> Tree:
        return Tree(ns, self.kv.get)

    def apply(self, writes: dict[bytes, bytes | None]) -> None:
        for k, v in writes.items():
            if v is None:
                self.kv.pop(k, None)
            else:
                self.kv[k] = v


keys = st.integers(min_value=0, max_value=60).map(h)
values = st.integers(min_value=0, max_value=5).map(lambda n: hashlib.sha256(b"v" + bytes([n])).digest())
batches = st.lists(st.dictionaries(keys, st.one_of(st.none(), values), max_size=12), min_size=1, max_size=8)


def reachable(store: Store, ns: bytes = b"t") -> int:
    """Stored records reachable from the root; raises if a node's child is missing or a lone
    entry is kept both in its parent and at its own position."""
    count, stack = 0, [ns] if ns in store.kv else []
    while stack:
        pos = stack.pop()
        record = store.kv[pos]
        count += 1
        if record[:1] == b"\x01":
            mask = int.from_bytes(record[545:547], "big")
            for n in range(RADIX):
                child = pos + bytes((n,))
                if mask >> n & 1:
                    assert child not in store.kv
                elif record[33 + 32 * n:65 + 32 * n] != EMPTY:
                    stack.append(child)
    return count


def built(model: dict[bytes, bytes]) -> Store:
    """A store holding ``model``, written by one update."""
    store = Store()
    store.apply(store.tree().update(model)[1])
    return store


def legacy_layout(ns: bytes, model: dict[bytes, bytes]) -> dict[bytes, bytes]:
    """The records a store written before lone entries moved into their parents holds: each
    lone entry at its own position, under nodes of the 16 hashes alone."""
    parts: dict[bytes, list[tuple[bytes, bytes]]] = {}

    def cut(depth: int, path: bytes, group: list[tuple[bytes, bytes]]) -> None:
        if len(group) == 1:
            parts[path] = group
            return
        for n in range(RADIX):
            sub = [e for e in group if nibble(e[0], depth) == n]
            if sub:
                cut(depth + 1, path + bytes((n,)), sub)

    if not model:
        return {}
    cut(0, b"", sorted(model.items()))
    records: dict[bytes, bytes] = {}
    hashes = {}
    for path, group in parts.items():
        hashes[path], writes = build_part(ns, path, group)
        records.update(writes)  # type: ignore[arg-type]
    records.update(fold_parts(ns, hashes)[1])
    return records


def step(store: Store, model: dict[bytes, bytes], batch: dict[bytes, bytes | None]) -> bytes:
    """Apply ``batch`` to the tree and to ``model``; check the root, the entries and that every
    stored record is reachable from the root (no orphans). Returns the root."""
    root, writes = store.tree().update(batch)
    store.apply(writes)
    for k, v in batch.items():
        if v is None:
            model.pop(k, None)
        else:
            model[k] = v
    assert root == store.tree().root() == reference_root(model)
    assert sorted(store.tree().entries()) == sorted(model.items())
    assert reachable(store) == len(store.kv)
    return root


def check_reads(store: Store, root: bytes, model: dict[bytes, bytes], probes: set[bytes]) -> None:
    """Each probe's lookup is the model's, and its proof verifies against ``root``."""
    for k in probes:
        assert store.tree().lookup(k) == model.get(k)
        assert verify(root, k, model.get(k), store.tree().prove(k))


@settings(max_examples=300, deadline=None)
@given(batches)
def test_tree_matches_a_dictionary_through_any_sequence_of_batches(batches):
    store, model = Store(), {}
    for batch in batches:
        root = step(store, model, batch)
        # what is stored depends on the entries alone, not on the updates that led there
        assert store.kv == built(model).kv
    check_reads(store, root, model, {k for b in batches for k in b})


# keys that share their first nibbles in a few ways (a nibble in 0-2, then four zero nibbles or
# not), so that updates meet lone entries, nodes of one child and deep splits at every level
close_keys = st.tuples(st.integers(0, 2), st.booleans(), st.integers(0, 30)).map(
    lambda t: bytes([t[0] << 4]) + (bytes(2) if t[1] else b"") + h(t[2])[:32 - 1 - 2 * t[1]])
inserts = st.lists(st.dictionaries(close_keys, values, max_size=6), min_size=1, max_size=10)


@settings(max_examples=200, deadline=None)
@given(inserts, st.dictionaries(close_keys, st.one_of(st.none(), values), max_size=8))
def test_keys_set_a_few_at_a_time_give_the_tree_of_their_entries_and_deletions_undo_them(batches, last):
    # setting keys (no deletion) goes through the in-place paths; a last batch with deletions
    # through the general one, which must meet what the in-place paths stored
    store, model = Store(), {}
    for batch in [*batches, last]:
        step(store, model, batch)
        assert store.kv == built(model).kv
    check_reads(store, store.tree().root(), model, set(model) | set(last))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(keys, values, max_size=40), batches)
def test_a_store_with_lone_entries_at_their_own_positions_reads_and_updates_like_one_without(initial, batches):
    old, model = Store(), dict(initial)
    old.kv.update(legacy_layout(b"t", initial))
    assert old.tree().root() == reference_root(model)
    if len(model) > 1:
        assert len(old.kv) > len(built(model).kv)  # the layout differs: an entry costs a record there
    for batch in batches:
        root = step(old, model, batch)
    check_reads(old, root, model, set(model) | {k for b in batches for k in b})
    # an entry once updated moves into its parent: update them all and the layouts are one
    old.apply(old.tree().update({k: h(7) for k in model})[1])
    assert old.kv == built(dict.fromkeys(model, h(7))).kv


def test_entries_that_share_a_long_path_prefix_split_into_single_child_nodes_down_to_where_they_part():
    first = bytes.fromhex("12345a") + h(1)[3:]
    near = bytes.fromhex("12345b") + h(2)[3:]  # parts from the first at the sixth nibble
    far = bytes.fromhex("f0") + h(3)[1:]
    for order in ([first, near, far], [far, first, near], [near, far, first]):
        store, model = Store(), {}
        for key in order:  # one at a time: each joins a lone entry or an empty subtree
            root, writes = store.tree().update({key: h(9)})
            store.apply(writes)
            model[key] = h(9)
            assert root == reference_root(model)
            assert store.kv == built(model).kv
        assert len(store.kv) == 6  # the root, and five nodes down the shared prefix
        for key in order:
            assert verify(root, key, h(9), store.tree().prove(key))
        root, writes = store.tree().update({near: None})  # and back up when one goes
        store.apply(writes)
        assert root == reference_root({first: h(9), far: h(9)}) and len(store.kv) == 1


def test_parts_of_a_cut_fold_with_their_lone_entries_kept_above_and_refuse_a_wrong_one():
    model = {h(i): h(100 + i) for i in range(40)}
    store = built(model)
    parts, lone = {}, {}
    for n in range(RADIX):  # a cut one nibble down
        group = [(k, v) for k, v in model.items() if nibble(k, 0) == n]
        if group:
            parts[bytes((n,))], _ = build_part(b"t", bytes((n,)), group)
            if len(group) == 1:
                lone[bytes((n,))] = group[0][0] + group[0][1]
    assert lone, "the model should leave some part of one entry"
    root, top = fold_parts(b"t", parts, lone)
    assert root == store.tree().root() and top[b"t"] == store.kv[b"t"]
    path = next(iter(lone))
    bad = {**lone, path: lone[path][:32] + h(999)}
    with pytest.raises(ValueError, match="lone entry"):
        fold_parts(b"t", parts, bad)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(keys, values, min_size=1, max_size=30), keys)
def test_absence_cannot_be_proven_for_a_present_key(model, probe):
    store = Store()
    root, writes = store.tree().update(model)
    store.apply(writes)
    proof = store.tree().prove(probe)
    if probe in model:
        assert verify(root, probe, model[probe], proof)
        assert not verify(root, probe, None, proof)
        # nor by any shortened or emptied variant of the honest proof
        for cut in range(len(proof.siblings) + 1):
            assert not verify(root, probe, None, Proof(proof.siblings[:cut], None))
    else:
        assert verify(root, probe, None, proof)
        assert not verify(root, probe, h(999), proof)


def test_rejects_mutated_proofs():
    store = Store()
    model = {h(i): h(1000 + i) for i in range(200)}
    root, writes = store.tree().update(model)
    store.apply(writes)
    key = h(7)
    proof = store.tree().prove(key)
    assert verify(root, key, model[key], proof)
    for i in range(len(proof.siblings)):  # a flipped byte in any sibling
        for j in (0, RADIX - 2):
            sib = bytearray(proof.siblings[i][j])
            sib[5] ^= 1
            level = (*proof.siblings[i][:j], bytes(sib), *proof.siblings[i][j + 1:])
            bad = Proof((*proof.siblings[:i], level, *proof.siblings[i + 1:]), proof.leaf)
            assert not verify(root, key, model[key], bad)
    assert not verify(root, h(8), model[key], proof)  # a wrong key
    assert not verify(root, key, h(5), proof)  # a wrong value
    assert not verify(root, key, model[key], Proof(proof.siblings[:-1], proof.leaf))  # a truncated path
    assert not verify(root, key, model[key], Proof((*proof.siblings, (EMPTY,) * (RADIX - 1)), proof.leaf))  # longer
    assert Proof.from_wire(proof.to_wire()) == proof
    other_root, _ = Store().tree().update({**model, h(3): h(4)})
    assert not verify(other_root, key, model[key], proof)  # another height's root


def test_empty_tree():
    tree = Store().tree()
    assert tree.root() == EMPTY
    assert verify(EMPTY, h(1), None, tree.prove(h(1)))
    assert not verify(EMPTY, h(1), h(2), tree.prove(h(1)))


def test_vectors():
    """Shared vectors: pre-state, operations, root after each batch (tests/vectors/state_smt.json)."""
    doc = json.loads(VECTORS.read_text())
    for case in doc["cases"]:
        store, model = Store(), {}
        for step in case["steps"]:
            batch = {bytes.fromhex(k): None if v is None else bytes.fromhex(v) for k, v in step["set"].items()}
            root, writes = store.tree().update(batch)
            store.apply(writes)
            model = {k: v for k, v in {**model, **batch}.items() if v is not None}
            assert root.hex() == step["root"] == reference_root(model).hex(), case["name"]


def make_vectors() -> dict:  # pragma: no cover - regenerates the vector file
    cases = []
    for name, steps in [
        ("one entry", [{h(1): h(2)}]),
        ("two entries, then one deleted (the other moves up)", [{h(1): h(2), h(2): h(3)}, {h(1): None}]),
        ("twenty entries, some overwritten, some deleted", [{h(i): h(i + 50) for i in range(20)},
                                                            {h(i): (None if i % 3 else h(7)) for i in range(10)}]),
        ("everything deleted", [{h(i): h(i) for i in range(5)}, {h(i): None for i in range(5)}]),
    ]:
        store, out = Store(), []
        for batch in steps:
            root, writes = store.tree().update(batch)
            store.apply(writes)
            out.append({"set": {k.hex(): None if v is None else v.hex() for k, v in sorted(batch.items())},
                        "root": root.hex()})
        cases.append({"name": name, "steps": out})
    return {"description": "Compact sparse Merkle tree of radix 16 (ledger/state/smt.py): a key's path is its "
                           "nibbles, high nibble first; leaf = SHA-256(00||key||value), node = SHA-256(01||c0||"
                           "...||c15), empty = 32 zero bytes, a lone entry stays where its path parts from the "
                           "others. Apply each step's set (null deletes) in order; the root after each step must "
                           "match.",
            "cases": cases}


def test_a_leveldb_store_written_before_lone_entries_moved_up_goes_on_with_the_same_roots(tmp_path):
    """A node upgraded over a store that keeps every lone entry at its own position: it reads,
    proves and extends its trees with the roots a node of the new layout computes."""
    chain = Chain(path=tmp_path / "store")  # a real LevelDB store
    authority, terminal = chain.open_border()
    children = [chain.enrol_child(authority) for _ in range(6)]
    requests = [(chain.pending_crossing(terminal, child), child) for child in children[:4]]
    chain.store.flush_tree()  # every node on disk, none held in memory (nor in the tree journal)
    twin = ChainStore(MemoryKV())  # a node that wrote the same blocks in the new layout
    twin.kv.write(dict(chain.store.kv.iterate(b"\x00", b"\xff")))
    twin = ChainStore(twin.kv)

    nodes = dict(chain.store.kv.iterate(b"M", b"N"))
    legacy: dict[bytes, bytes | None] = dict.fromkeys(nodes)
    for ns in [GLOBAL_NAMESPACE] + [CHILD_NAMESPACE + child.identity for child in children]:
        model = dict(Tree(ns, lambda pos: nodes.get(b"M" + pos)).entries())
        legacy.update((b"M" + k, v) for k, v in legacy_layout(ns, model).items())
    chain.store.kv.write(legacy)
    chain.reopen()
    assert len(dict(chain.store.kv.iterate(b"M", b"N"))) > len(nodes)

    def follow(executed) -> None:
        mine = execute_block(twin, executed.block)
        assert mine.changes.state_root == executed.block.header.state_root
        twin.commit_block(mine, chain.store.commit(executed.height))

    for request, child in requests[:2]:  # approvals close two requests
        follow(chain.commit(*(chain.approve(g, request, child) for g in child.guardians)))
    follow(chain.commit(chain.crossing(terminal, children[5])))
    follow(chain.commit(chain.erase(children[4])))
    follow(chain.advance(3 * HOUR))  # the other requests expire
    assert chain.status(requests[3][0]) == "expired"
    # what the old layout still holds untouched is proven as well as what moved
    header = chain.store.header(chain.height)
    for _, child in requests:
        for key in (k_identity(child.identity), k_request(child.identity, requests[0][0].id)):
            check_record(header.state_root, prove_record(chain.store.state.get, chain.store.state.tree_node, key))


if __name__ == "__main__":  # pragma: no cover
    VECTORS.parent.mkdir(exist_ok=True)
    VECTORS.write_text(json.dumps(make_vectors(), indent=1) + "\n")
