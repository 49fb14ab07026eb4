"""Tests for ledger.merkle: RFC 9162 trees, proofs, and the store-backed append-only log.

Known answers are the Certificate Transparency reference vectors over eight leaves, as kept in
google/certificate-transparency (merkle_tree_test.cc) and transparency-dev/merkle
(testonly/constants.go, proof/verify_test.go). Their inclusion vectors number leaves from 1.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.errors import CustosError, StorageError
from ledger.merkle import (
    EMPTY_ROOT,
    MemoryNodeStore,
    MerkleError,
    MerkleLog,
    MissingNodeError,
    _mth,
    consistency_proof_of,
    inclusion_proof_of,
    leaf_hash,
    node_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)

h = bytes.fromhex

# --------------------------------------------------------------------------- known answers

KAT_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]
KAT_LEAF_HASHES = [leaf_hash(data) for data in KAT_LEAVES]

# KAT_ROOTS[n] = MTH of the first n leaves.
KAT_ROOTS = [
    h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    h("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    h("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
    h("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
    h("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
    h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
]

# KAT_NODES[level][index]: every complete subtree of the eight-leaf tree.
KAT_NODES = [
    [
        h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
        h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
        h("0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7"),
        h("07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7"),
        h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        h("4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658"),
        h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
        h("46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1"),
    ],
    [
        h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
        h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
        h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
        h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
    ],
    [
        h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
    ],
    [
        h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
    ],
]

# (leaf number counted from 1, tree size, PATH)
KAT_INCLUSION = [
    (1, 1, []),
    (
        1,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        6,
        8,
        [
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (
        3,
        3,
        [
            h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
        ],
    ),
    (
        2,
        5,
        [
            h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
]

# (old size, new size, PROOF)
KAT_CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        6,
        8,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (
        2,
        5,
        [
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
    (
        6,
        7,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
]

# "abacaba..." and the empty-tree hash, as the reference tests use for wrong roots.
SOME_HASH = h("abacaba000000000000000000000000000000000000000000060061e00123456")

# --------------------------------------------------------------------------- helpers

MAX_LEAVES = 300
LEAVES = [leaf_hash(b"tx-%d" % i) for i in range(MAX_LEAVES)]


@functools.cache
def ref_root(size: int) -> bytes:
    """Reference MTH of the first ``size`` shared test leaves (the definition's recursion)."""
    return _mth(LEAVES, 0, size)


class CountingStore(MemoryNodeStore):
    """A MemoryNodeStore that counts get calls."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def get(self, level: int, index: int) -> bytes | None:
        self.reads += 1
        return super().get(level, index)


def build_log(leaves: Sequence[bytes], store: MemoryNodeStore | None = None) -> MerkleLog:
    """A log holding ``leaves``, its nodes flushed into ``store``."""
    store = MemoryNodeStore() if store is None else store
    log = MerkleLog(store.get, 0)
    for leaf in leaves:
        log.append(leaf)
    store.put_many(log.take_pending())
    return log


def flipped(value: bytes, position: int, mask: int = 0x01) -> bytes:
    return value[:position] + bytes([value[position] ^ mask]) + value[position + 1 :]


def each_byte_flipped(proof: list[bytes]) -> list[list[bytes]]:
    """Every proof obtained by flipping one byte of one element."""
    variants = []
    for i, element in enumerate(proof):
        for position in range(len(element)):
            variants.append([*proof[:i], flipped(element, position), *proof[i + 1:]])
    return variants


def truncated_and_extended(proof: list[bytes], extras: Sequence[bytes]) -> list[list[bytes]]:
    """The proof minus its last or first element, or with extra hashes before, after or inside."""
    variants: list[list[bytes]] = []
    if proof:
        variants += [proof[:-1], proof[1:]]
    for extra in extras:
        variants += [[*proof, extra], [extra, *proof]]
        if len(proof) > 1:
            variants.append([*proof[:1], extra, *proof[1:]])
    return variants


@st.composite
def tree_and_index(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(st.integers(1, MAX_LEAVES))
    return size, draw(st.integers(0, size - 1))


@st.composite
def two_sizes(draw: st.DrawFn) -> tuple[int, int]:
    new_size = draw(st.integers(2, MAX_LEAVES))
    return draw(st.integers(1, new_size - 1)), new_size


FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------- hashing


def test_empty_root_is_sha256_of_nothing() -> None:
    assert KAT_ROOTS[0] == EMPTY_ROOT
    assert root_of([]) == EMPTY_ROOT


def test_leaf_hashes_match_vectors() -> None:
    assert KAT_NODES[0] == KAT_LEAF_HASHES


def test_node_hash_is_prefixed_with_one() -> None:
    assert node_hash(KAT_NODES[0][0], KAT_NODES[0][1]) == KAT_NODES[1][0]


def test_leaf_and_node_hashes_are_domain_separated() -> None:
    left, right = KAT_NODES[0][0], KAT_NODES[0][1]
    assert leaf_hash(left + right) != node_hash(left, right)


# --------------------------------------------------------------------------- known answers


def test_root_of_levels_agree_with_the_recursive_definition_at_every_size() -> None:
    """``root_of`` pairs neighbours level by level; the RFC splits at the largest power of two."""
    for size in range(MAX_LEAVES + 1):
        assert root_of(LEAVES[:size]) == ref_root(size), size


@pytest.mark.parametrize("size", range(9))
def test_roots_match_vectors(size: int) -> None:
    assert root_of(KAT_LEAF_HASHES[:size]) == KAT_ROOTS[size]
    log = build_log(KAT_LEAF_HASHES)
    assert log.root(size) == KAT_ROOTS[size]


def test_log_stores_exactly_the_complete_subtrees() -> None:
    store = MemoryNodeStore()
    build_log(KAT_LEAF_HASHES, store)
    expected = {
        (level, index): value
        for level, row in enumerate(KAT_NODES)
        for index, value in enumerate(row)
    }
    assert {key: store.get(*key) for key in expected} == expected
    assert len(store) == len(expected)


@pytest.mark.parametrize(("leaf", "size", "proof"), KAT_INCLUSION)
def test_inclusion_vectors(leaf: int, size: int, proof: list[bytes]) -> None:
    index = leaf - 1
    log = build_log(KAT_LEAF_HASHES)
    assert inclusion_proof_of(KAT_LEAF_HASHES[:size], index) == proof
    assert log.inclusion_proof(index, size) == proof
    assert verify_inclusion(KAT_LEAF_HASHES[index], index, size, proof, KAT_ROOTS[size])


@pytest.mark.parametrize(("old", "new", "proof"), KAT_CONSISTENCY)
def test_consistency_vectors(old: int, new: int, proof: list[bytes]) -> None:
    log = build_log(KAT_LEAF_HASHES)
    assert consistency_proof_of(KAT_LEAF_HASHES[:new], old) == proof
    assert log.consistency_proof(old, new) == proof
    assert verify_consistency(old, new, KAT_ROOTS[old], KAT_ROOTS[new], proof)


def test_every_proof_over_the_vector_leaves_agrees_and_verifies() -> None:
    log = build_log(KAT_LEAF_HASHES)
    for size in range(1, 9):
        for index in range(size):
            proof = log.inclusion_proof(index, size)
            assert proof == inclusion_proof_of(KAT_LEAF_HASHES[:size], index)
            assert verify_inclusion(KAT_LEAF_HASHES[index], index, size, proof, KAT_ROOTS[size])
    for new in range(9):
        for old in range(new + 1):
            proof = log.consistency_proof(old, new)
            assert proof == consistency_proof_of(KAT_LEAF_HASHES[:new], old)
            assert verify_consistency(old, new, KAT_ROOTS[old], KAT_ROOTS[new], proof)


def test_trivial_consistency_cases() -> None:
    root = KAT_ROOTS[3]
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert verify_consistency(0, 3, EMPTY_ROOT, root, [])
    assert verify_consistency(3, 3, root, root, [])


# --------------------------------------------------------------------------- log vs reference


@FAST
@given(
    size=st.integers(0, MAX_LEAVES),
    cuts=st.lists(st.integers(0, MAX_LEAVES), max_size=6),
    reopen=st.booleans(),
)
def test_log_roots_match_reference_at_every_size(size: int, cuts: list[int], reopen: bool) -> None:
    """Appending in blocks (flushed, maybe reopened between) gives the reference roots."""
    store = MemoryNodeStore()
    log = MerkleLog(store.get, 0)
    bounds = sorted({c for c in cuts if c < size} | {size})
    start = 0
    for end in bounds:
        for leaf in LEAVES[start:end]:
            log.append(leaf)
        assert log.root() == ref_root(end)  # pending nodes are visible before the flush
        store.put_many(log.take_pending())
        if reopen:
            log = MerkleLog(store.get, end)
        start = end
    assert log.size == size
    for historical in range(size + 1):
        assert log.root(historical) == ref_root(historical)


@FAST
@given(st.data())
def test_log_inclusion_proofs_match_reference_and_verify(data: st.DataObject) -> None:
    log_size = data.draw(st.integers(1, MAX_LEAVES))
    log = build_log(LEAVES[:log_size])
    for _ in range(5):
        size = data.draw(st.integers(1, log_size))
        index = data.draw(st.integers(0, size - 1))
        proof = log.inclusion_proof(index, size)
        assert proof == inclusion_proof_of(LEAVES[:size], index)
        assert len(proof) <= math.ceil(math.log2(size))
        assert verify_inclusion(LEAVES[index], index, size, proof, ref_root(size))


@FAST
@given(st.data())
def test_log_consistency_proofs_match_reference_and_verify(data: st.DataObject) -> None:
    log_size = data.draw(st.integers(1, MAX_LEAVES))
    log = build_log(LEAVES[:log_size])
    for _ in range(5):
        new = data.draw(st.integers(0, log_size))
        old = data.draw(st.integers(0, new))
        proof = log.consistency_proof(old, new)
        assert proof == consistency_proof_of(LEAVES[:new], old)
        assert verify_consistency(old, new, ref_root(old), ref_root(new), proof)


def test_default_size_is_current_size() -> None:
    log = build_log(LEAVES[:13])
    assert log.root() == ref_root(13)
    assert log.inclusion_proof(4) == inclusion_proof_of(LEAVES[:13], 4)
    assert log.consistency_proof(5) == consistency_proof_of(LEAVES[:13], 5)


def test_pending_is_visible_before_flush_and_handed_over_once() -> None:
    store = MemoryNodeStore()
    log = MerkleLog(store.get, 0)
    for leaf in LEAVES[:6]:
        log.append(leaf)
    assert len(store) == 0
    assert log.root(5) == ref_root(5)
    assert log.inclusion_proof(2, 6) == inclusion_proof_of(LEAVES[:6], 2)
    snapshot = log.pending()
    snapshot.clear()  # a copy: clearing it does not touch the log
    taken = log.take_pending()
    assert len(taken) == 2 * 6 - 2  # 6 leaves, 3 pairs, 1 subtree of four
    assert log.pending() == {}
    assert log.take_pending() == {}


# --------------------------------------------------------------------------- storage cost


def test_appending_writes_at_most_two_nodes_per_leaf() -> None:
    store = MemoryNodeStore()
    log = MerkleLog(store.get, 0)
    written: set[tuple[int, int]] = set()
    total = 0
    for n, leaf in enumerate(LEAVES[:257], start=1):
        log.append(leaf)
        batch = log.take_pending()
        assert len(batch) <= 1 + math.log2(n)  # one leaf plus the subtrees it completes
        assert not written & batch.keys()  # a node is written once, never rewritten
        written |= batch.keys()
        total += len(batch)
        store.put_many(batch)
        assert total == 2 * n - bin(n).count("1")
    assert total <= 2 * 257


@pytest.fixture(scope="module")
def big_log() -> tuple[MerkleLog, CountingStore, list[bytes]]:
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(100_000)]
    store = CountingStore()
    log = MerkleLog(store.get, 0)
    for leaf in leaves:
        log.append(leaf)
    store.put_many(log.take_pending())
    return MerkleLog(store.get, len(leaves)), store, leaves


BIG_SIZES = [100_000, 99_999, 65_536, 65_537, 54_321, 1_023, 3, 1]


def read_bound(size: int) -> int:
    """At most two reads per tree level: one per proof element, plus the one right-edge
    element of a proof that is not a complete subtree and takes one read per set bit."""
    bound = 2 * math.ceil(math.log2(size))
    assert bound <= 4 * max(1.0, math.log2(size))  # the budget the design asks for
    return bound


@pytest.mark.parametrize("size", BIG_SIZES)
def test_proofs_read_logarithmically_many_nodes(
    big_log: tuple[MerkleLog, CountingStore, list[bytes]], size: int
) -> None:
    log, store, leaves = big_log
    bound = read_bound(size)

    store.reads = 0
    root = log.root(size)
    assert store.reads <= math.ceil(math.log2(size)) + 1

    for index in sorted({0, size // 3, size // 2, size - 2, size - 1} - {-1}):
        store.reads = 0
        proof = log.inclusion_proof(index, size)
        assert store.reads <= bound
        assert verify_inclusion(leaves[index], index, size, proof, root)

    for old in sorted({1, size // 7, size // 2, size - 1, 65_536} & set(range(1, size))):
        store.reads = 0
        proof = log.consistency_proof(old, size)
        assert store.reads <= bound
        assert verify_consistency(old, size, log.root(old), root, proof)


def test_random_proofs_read_at_most_two_nodes_per_level(
    big_log: tuple[MerkleLog, CountingStore, list[bytes]],
) -> None:
    log, store, leaves = big_log
    rng = random.Random(6962)
    for _ in range(300):
        size = rng.randint(2, len(leaves))
        index, old = rng.randrange(size), rng.randrange(1, size)
        store.reads = 0
        log.inclusion_proof(index, size)
        assert store.reads <= read_bound(size)
        store.reads = 0
        log.consistency_proof(old, size)
        assert store.reads <= read_bound(size)


def test_reopened_log_appends_with_logarithmic_reads(
    big_log: tuple[MerkleLog, CountingStore, list[bytes]],
) -> None:
    _, store, leaves = big_log
    store.reads = 0
    log = MerkleLog(store.get, 99_999)
    log.append(leaves[99_999])
    assert store.reads <= math.ceil(math.log2(100_000))
    assert log.pending() == {
        key: store.get(*key) for key in log.pending()
    }  # same nodes as the first time round


# --------------------------------------------------------------------------- rejects: inclusion


def inclusion_cases() -> list[tuple[int, int, list[bytes], list[bytes], list[bytes]]]:
    """(index, size, proof, leaf hashes, roots by size) for every KAT vector with a proof."""
    return [
        (leaf - 1, size, proof, KAT_LEAF_HASHES, KAT_ROOTS)
        for leaf, size, proof in KAT_INCLUSION
        if proof
    ]


def assert_inclusion_rejections(
    index: int, size: int, proof: list[bytes], leaves: Sequence[bytes], roots: Sequence[bytes]
) -> None:
    leaf, root = leaves[index], roots[size]
    assert verify_inclusion(leaf, index, size, proof, root)
    # any byte of any element flipped
    for bad in each_byte_flipped(proof):
        assert not verify_inclusion(leaf, index, size, bad, root)
    # the leaf or the root flipped
    for position in range(32):
        assert not verify_inclusion(flipped(leaf, position), index, size, proof, root)
        assert not verify_inclusion(leaf, index, size, proof, flipped(root, position))
    # another index in the same tree
    for wrong in range(size + 2):
        if wrong != index:
            assert not verify_inclusion(leaf, wrong, size, proof, root)
    # another size, checked against that size's root
    for wrong in range(index + 1, len(roots)):
        if wrong != size:
            assert not verify_inclusion(leaf, index, wrong, proof, roots[wrong])
    # truncated, extended, or with an element inserted
    for bad in truncated_and_extended(proof, [root, leaf, SOME_HASH, EMPTY_ROOT, proof[0]]):
        assert not verify_inclusion(leaf, index, size, bad, root)


@pytest.mark.parametrize(("index", "size", "proof", "leaves", "roots"), inclusion_cases())
def test_rejects_inclusion_vector_tampering(
    index: int, size: int, proof: list[bytes], leaves: list[bytes], roots: list[bytes]
) -> None:
    assert_inclusion_rejections(index, size, proof, leaves, roots)
    # the reference tests' probes that keep the original root
    leaf, root = leaves[index], roots[size]
    for wrong_size in (size * 2, size // 2):
        assert not verify_inclusion(leaf, index, wrong_size, proof, root)
    assert not verify_inclusion(b"WrongLeaf".ljust(32, b"\0"), index, size, proof, root)
    assert not verify_inclusion(leaf, index, size, proof, EMPTY_ROOT)
    assert not verify_inclusion(leaf, index, size, proof, SOME_HASH)


@FAST
@given(tree_and_index())
def test_rejects_tampered_inclusion_proofs(case: tuple[int, int]) -> None:
    size, index = case
    proof = inclusion_proof_of(LEAVES[:size], index)
    if not proof:
        return  # size 1: nothing to tamper with
    roots = [ref_root(n) for n in range(min(MAX_LEAVES, size + 8) + 1)]
    assert_inclusion_rejections(index, size, proof, LEAVES, roots)


def test_rejects_inclusion_with_malformed_input() -> None:
    leaf, root, proof = KAT_LEAF_HASHES[1], KAT_ROOTS[8], KAT_INCLUSION[1][2]
    malformed_proofs: list[object] = [
        [p[:31] for p in proof],
        [proof[0] + b"\0", *proof[1:]],
        [b"", *proof],
        [bytearray(proof[0]), *proof[1:]],
        [None, *proof[1:]],
        b"".join(proof),
        None,
        "proof",
    ]
    for bad in malformed_proofs:
        assert not verify_inclusion(leaf, 0, 8, bad, root)  # type: ignore[arg-type]
    assert not verify_inclusion(leaf[:31], 0, 8, proof, root)
    assert not verify_inclusion(leaf, 0, 8, proof, root + b"\0")
    assert not verify_inclusion(leaf, 0, 8, proof, b"")
    for index, size in [(-1, 8), (0, -8), (8, 8), (9, 8), (0, 0), (True, 8), (0.0, 8)]:
        assert not verify_inclusion(leaf, index, size, proof, root)  # type: ignore[arg-type]


def test_rejects_inclusion_in_trivial_trees() -> None:
    leaf = KAT_LEAF_HASHES[0]
    assert verify_inclusion(leaf, 0, 1, [], leaf)
    assert not verify_inclusion(leaf, 0, 1, [], SOME_HASH)
    assert not verify_inclusion(leaf, 0, 1, [leaf], leaf)
    for index, size in [(0, 0), (1, 0), (2, 1), (1, 1)]:
        assert not verify_inclusion(SOME_HASH, index, size, [], EMPTY_ROOT)


# --------------------------------------------------------------------------- rejects: consistency


def assert_consistency_rejections(
    old: int, new: int, proof: list[bytes], roots: Sequence[bytes]
) -> None:
    old_root, new_root = roots[old], roots[new]
    assert verify_consistency(old, new, old_root, new_root, proof)
    for bad in each_byte_flipped(proof):
        assert not verify_consistency(old, new, old_root, new_root, bad)
    for position in range(32):
        assert not verify_consistency(old, new, flipped(old_root, position), new_root, proof)
        assert not verify_consistency(old, new, old_root, flipped(new_root, position), proof)
    assert not verify_consistency(old, new, new_root, old_root, proof)
    assert not verify_consistency(old, new, old_root, new_root, [])
    # other sizes, each checked against its own root
    for wrong in range(len(roots)):
        if wrong != old and wrong <= new:
            assert not verify_consistency(wrong, new, roots[wrong], new_root, proof)
        if wrong != new and wrong >= old:
            assert not verify_consistency(old, wrong, old_root, roots[wrong], proof)
    extras = [old_root, new_root, SOME_HASH, EMPTY_ROOT, proof[0]]
    for bad in truncated_and_extended(proof, extras):
        assert not verify_consistency(old, new, old_root, new_root, bad)


def consistency_cases() -> list[tuple[int, int, list[bytes]]]:
    return [(old, new, proof) for old, new, proof in KAT_CONSISTENCY if proof]


@pytest.mark.parametrize(("old", "new", "proof"), consistency_cases())
def test_rejects_consistency_vector_tampering(old: int, new: int, proof: list[bytes]) -> None:
    assert_consistency_rejections(old, new, proof, KAT_ROOTS)
    old_root, new_root = KAT_ROOTS[old], KAT_ROOTS[new]
    # the reference tests' probes that keep the original roots
    for wrong_old, wrong_new in [(old - 1, new), (old + 1, new), (old ^ 2, new), (old, new * 2),
                                 (old, new // 2)]:
        assert not verify_consistency(wrong_old, wrong_new, old_root, new_root, proof)


@FAST
@given(two_sizes())
def test_rejects_tampered_consistency_proofs(sizes: tuple[int, int]) -> None:
    old, new = sizes
    proof = consistency_proof_of(LEAVES[:new], old)
    roots = [ref_root(n) for n in range(min(MAX_LEAVES, new + 8) + 1)]
    assert_consistency_rejections(old, new, proof, roots)


def test_rejects_consistency_with_malformed_input() -> None:
    old, new, proof = KAT_CONSISTENCY[2]
    old_root, new_root = KAT_ROOTS[old], KAT_ROOTS[new]
    malformed_proofs: list[object] = [
        [p[:31] for p in proof],
        [proof[0] + b"\0", *proof[1:]],
        [b"", *proof],
        [None, *proof[1:]],
        b"".join(proof),
        None,
    ]
    for bad in malformed_proofs:
        assert not verify_consistency(old, new, old_root, new_root, bad)  # type: ignore[arg-type]
    assert not verify_consistency(old, new, old_root[:31], new_root, proof)
    assert not verify_consistency(old, new, old_root, b"", proof)
    for bad_old, bad_new in [(-1, 8), (6, -1), (8, 6), (9, 8), (True, 8), (6, 8.0)]:
        assert not verify_consistency(
            bad_old, bad_new, old_root, new_root, proof  # type: ignore[arg-type]
        )


def test_rejects_trivial_consistency_with_wrong_roots_or_proof() -> None:
    a, b = KAT_ROOTS[3], KAT_ROOTS[4]
    assert not verify_consistency(3, 3, a, b, [])
    assert not verify_consistency(3, 3, a, a, [a])
    assert not verify_consistency(0, 0, EMPTY_ROOT, a, [])
    assert not verify_consistency(0, 3, a, a, [])  # the empty tree's root is fixed
    assert not verify_consistency(0, 3, EMPTY_ROOT, a, [EMPTY_ROOT])
    assert not verify_consistency(1, 0, a, b, [])
    assert not verify_consistency(4, 3, b, a, [])


# --------------------------------------------------------------------------- rejects: requests


def test_merkle_error_is_a_value_error_in_the_custos_family() -> None:
    assert issubclass(MerkleError, ValueError)
    assert issubclass(MerkleError, CustosError)


@pytest.mark.parametrize(
    "call",
    [
        lambda: inclusion_proof_of(LEAVES[:5], 5),
        lambda: inclusion_proof_of(LEAVES[:5], -1),
        lambda: inclusion_proof_of([], 0),
        lambda: consistency_proof_of(LEAVES[:5], 6),
        lambda: consistency_proof_of(LEAVES[:5], -1),
        lambda: root_of([LEAVES[0], b"short"]),
        lambda: inclusion_proof_of([LEAVES[0], "text"], 0),  # type: ignore[list-item]
    ],
)
def test_rejects_out_of_range_in_memory_requests(call: object) -> None:
    with pytest.raises(MerkleError):
        call()  # type: ignore[operator]


@pytest.mark.parametrize(
    "call",
    [
        lambda log: log.root(11),
        lambda log: log.root(-1),
        lambda log: log.inclusion_proof(10),
        lambda log: log.inclusion_proof(3, 3),
        lambda log: log.inclusion_proof(0, 0),
        lambda log: log.inclusion_proof(0, 11),
        lambda log: log.inclusion_proof(-1),
        lambda log: log.consistency_proof(11),
        lambda log: log.consistency_proof(5, 4),
        lambda log: log.consistency_proof(2, 11),
        lambda log: log.consistency_proof(-1),
        lambda log: log.append(b"\0" * 31),
        lambda log: log.append("not bytes"),
    ],
)
def test_rejects_out_of_range_log_requests(call: object) -> None:
    log = build_log(LEAVES[:10])
    with pytest.raises(MerkleError):
        call(log)  # type: ignore[operator]
    assert log.size == 10


def test_rejects_negative_log_size() -> None:
    with pytest.raises(MerkleError):
        MerkleLog(MemoryNodeStore().get, -1)


def test_rejects_a_store_with_missing_nodes() -> None:
    log = MerkleLog(MemoryNodeStore().get, 5)
    with pytest.raises(MissingNodeError) as raised:
        log.root()
    assert isinstance(raised.value, StorageError)
    assert (raised.value.level, raised.value.index) == (2, 0)
    with pytest.raises(MissingNodeError):
        log.append(LEAVES[5])


def test_rejects_a_store_with_malformed_nodes() -> None:
    store = MemoryNodeStore()
    build_log(LEAVES[:4], store)
    store.put_many({(2, 0): b"\0" * 31})
    with pytest.raises(MissingNodeError, match="malformed"):
        MerkleLog(store.get, 4).root()
