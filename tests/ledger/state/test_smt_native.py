"""The tree's update walk in C (``ledger/state/_smt_native.c``) against the Python reference.

Both must give the same root and the same node writes for any tree and any changes: nodes with
and without the extension compute one state root. The property tests drive both from the same
stores (the current layout, and the older one with lone entries at their own positions) through
random batches of sets and deletions, with keys that share long path prefixes so that the deep
cases (nodes of one child, entries moving up and down) come up; and a damaged record read from
the store is refused with a clear error rather than read past its end.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_smt import Store, built, legacy_layout, reference_root

from ledger.state import smt
from ledger.state.smt import Tree

pytestmark = pytest.mark.skipif(smt.NATIVE is None, reason="the C extension ledger.state._smt_native is not built")


def h(n: int) -> bytes:
    return hashlib.sha256(n.to_bytes(8, "big")).digest()


def near(n: int) -> bytes:
    """Keys that share their first five nibbles (and some the sixth): deep paths."""
    return bytes.fromhex("abcd") + bytes([0xE0 | (n % 3)]) + h(n)[3:]


keys = st.one_of(st.integers(0, 40).map(h), st.integers(0, 40).map(near))
values = st.integers(0, 4).map(lambda n: hashlib.sha256(b"v" + bytes([n])).digest())
batch = st.dictionaries(keys, st.one_of(st.none(), values), min_size=1, max_size=24)


def both(kv: dict[bytes, bytes], changes: dict[bytes, bytes | None], ns: bytes = b"t"):
    native = smt.NATIVE.update(ns, kv.get, changes)  # type: ignore[union-attr]
    python = Tree(ns, kv.get).update_in_python(changes)
    return native, python


def apply(kv: dict[bytes, bytes], writes: dict[bytes, bytes | None]) -> None:
    for k, v in writes.items():
        if v is None:
            kv.pop(k, None)
        else:
            kv[k] = v


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(keys, values, max_size=40), st.lists(batch, min_size=1, max_size=6), st.booleans())
def test_the_c_walk_writes_what_the_python_walk_writes(initial, batches, older_layout):
    kv = dict(legacy_layout(b"t", initial)) if older_layout else dict(built(initial).kv)
    model = dict(initial)
    for changes in batches:
        native, python = both(kv, changes)
        assert native == python  # the root and every write, deletions included
        apply(kv, native[1])
        for k, v in changes.items():
            if v is None:
                model.pop(k, None)
            else:
                model[k] = v
        assert native[0] == reference_root(model)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(keys, values, min_size=1, max_size=60))
def test_a_tree_built_in_one_update_is_the_same_from_either_walk(model):
    native, python = both({}, dict(model))
    assert native == python and native[0] == reference_root(model)


def test_a_single_key_set_below_a_node_takes_the_same_path_in_both():
    store = built({h(i): h(100 + i) for i in range(300)})  # a root with nodes below it
    for changes in ({h(5): h(999)}, {h(5): h(105)}, {h(1000): h(1)}, {near(1): h(2)}, {h(7): None}):
        native, python = both(store.kv, changes)
        assert native == python
    unchanged = both(store.kv, {h(5): h(105)})[0]
    assert unchanged[1] == {} and unchanged[0] == store.tree().root()  # the value it had: nothing written


@pytest.mark.parametrize("damage", [
    lambda r: r[:200],                      # a node record cut short
    lambda r: b"\x02" + r[1:],              # an unknown kind
    lambda r: r[:545] + b"\x00\x00" + r[547:],  # entries after a mask that names none
    lambda r: b"\x00" + r[1:98],            # a lone entry of the wrong length
])
def test_a_damaged_record_is_refused_not_read_past_its_end(damage):
    store = built({h(i): h(i) for i in range(40)})
    store.kv[b"t"] = damage(store.kv[b"t"])
    with pytest.raises(ValueError, match="damaged"):
        smt.NATIVE.update(b"t", store.kv.get, {h(1): h(2)})  # type: ignore[union-attr]


def test_keys_and_values_that_are_not_32_byte_hashes_are_refused_by_both_walks():
    for changes in ({b"short": h(1)}, {h(1): b"short"}, {h(1): 5}):
        with pytest.raises(ValueError, match="32-byte"):
            smt.NATIVE.update(b"t", {}.get, changes)  # type: ignore[union-attr]
        if not isinstance(changes.get(h(1)), int):
            with pytest.raises(ValueError, match="32-byte"):
                Tree(b"t", {}.get).update_in_python(changes)  # type: ignore[arg-type]


def test_a_store_that_answers_with_something_else_than_bytes_is_a_type_error():
    with pytest.raises(TypeError):
        smt.NATIVE.update(b"t", lambda pos: "a string", {h(1): h(2)})  # type: ignore[union-attr]


def test_the_tree_uses_the_c_walk_when_it_is_built(monkeypatch):
    calls = []

    class Spy:
        @staticmethod
        def update(ns, get, changes):
            calls.append(ns)
            return native.update(ns, get, changes)

    native = smt.NATIVE
    monkeypatch.setattr(smt, "NATIVE", Spy)
    root, writes = Store().tree().update({h(1): h(2), h(3): h(4)})
    assert calls == [b"t"]
    assert (root, writes) == Tree(b"t", {}.get).update_in_python({h(1): h(2), h(3): h(4)})


def test_a_node_with_the_python_walk_follows_a_chain_made_with_the_c_walk_to_the_same_nodes(tmp_path, monkeypatch):
    from test_tree_in_memory import busy_chain, follow, records

    from ledger.storage.chainstore import ChainStore

    chain, _ = busy_chain()  # enrolments, crossings, approvals, an erasure, expiries: made with the C walk
    with_c = ChainStore.open(tmp_path / "c", chain.genesis, tree_blocks=0)
    follow(with_c, chain)
    monkeypatch.setattr(smt, "NATIVE", None)
    in_python = ChainStore.open(tmp_path / "python", chain.genesis, tree_blocks=0)
    follow(in_python, chain)  # every block's state root checked against its header
    assert records(in_python, b"M", b"N") == records(with_c, b"M", b"N")
    assert len(records(with_c, b"M", b"N")) > 10


def test_a_store_read_that_empties_the_changes_midway_changes_nothing_in_the_result():
    store = built({h(i): h(i) for i in range(200)})
    changes = {h(i): h(i + 1) for i in range(150, 260)}
    expected = Tree(b"t", store.kv.get).update_in_python(dict(changes))

    junk = []

    def get(pos):  # the C walk holds on to the keys and values it was given
        if changes:
            changes.clear()  # their last references gone: freed, then their memory taken by others
            junk.extend(bytes([n % 251]) * 32 for n in range(5000))
        return store.kv.get(pos)

    assert smt.NATIVE.update(b"t", get, changes) == expected  # type: ignore[union-attr]


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys, values, min_size=2, max_size=40), batch, st.data())
def test_a_store_damaged_anywhere_gives_a_result_or_an_error_never_a_crash(model, changes, data):
    """Whatever bytes a record holds (flipped, cut, grown, of the other kind), the C walk reads
    only within them: it returns, or raises ValueError, as the Python walk would not always."""
    kv = dict(built(model).kv)
    position = data.draw(st.sampled_from(sorted(kv)))
    record = bytearray(kv[position])
    how = data.draw(st.sampled_from(["flip", "cut", "grow", "kind", "mask"]))
    if how == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            i = data.draw(st.integers(0, len(record) - 1))
            record[i] ^= data.draw(st.integers(1, 255))
    elif how == "cut":
        del record[data.draw(st.integers(0, len(record) - 1)):]
    elif how == "grow":
        record += bytes(data.draw(st.integers(1, 200)))
    elif how == "kind":
        record[0] ^= 1
    elif len(record) > 546:  # a mask naming other children than the entries kept
        record[545:547] = data.draw(st.integers(1, 0xFFFF)).to_bytes(2, "big")
    kv[position] = bytes(record)
    try:
        root, writes = smt.NATIVE.update(b"t", kv.get, changes)  # type: ignore[union-attr]
    except ValueError:
        return
    assert len(root) == 32 and all(type(v) in (bytes, type(None)) for v in writes.values())
