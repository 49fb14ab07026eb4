"""The compact sparse Merkle tree against a plain dictionary, its proofs, and its vectors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.state.smt import EMPTY, RADIX, Proof, Tree, leaf_hash, nibble, node_hash, verify

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
    count, stack = 0, [ns]
    while stack:
        pos = stack.pop()
        record = store.kv.get(pos)
        if record is None:
            continue
        count += 1
        if record[:1] == b"\x01":
            stack += [pos + bytes((n,)) for n in range(RADIX)]
    return count


@settings(max_examples=300, deadline=None)
@given(batches)
def test_tree_matches_a_dictionary_through_any_sequence_of_batches(batches):
    store, model = Store(), {}
    for batch in batches:
        root, writes = store.tree().update(batch)
        store.apply(writes)
        for k, v in batch.items():
            if v is None:
                model.pop(k, None)
            else:
                model[k] = v
        assert root == store.tree().root() == reference_root(model)
        assert sorted(store.tree().entries()) == sorted(model.items())
        # no orphans: every stored node is reachable from the root
        assert reachable(store) == len(store.kv)
    for k in {k for b in batches for k in b}:
        proof = store.tree().prove(k)
        assert verify(root, k, model.get(k), proof)
        assert store.tree().lookup(k) == model.get(k)


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


if __name__ == "__main__":  # pragma: no cover
    VECTORS.parent.mkdir(exist_ok=True)
    VECTORS.write_text(json.dumps(make_vectors(), indent=1) + "\n")
