"""RFC 9162 (RFC 6962) Merkle trees: block transaction roots and the append-only log.

Hashing is RFC 9162 section 2.1.1 with SHA-256:

* ``MTH({}) = SHA-256()``                      (the empty tree, :data:`EMPTY_ROOT`)
* ``MTH({d0}) = SHA-256(0x00 || d0)``          (a leaf, :func:`leaf_hash`)
* ``MTH(D[n]) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))`` where ``k`` is the largest power
  of two smaller than ``n`` (an interior node, :func:`node_hash`).

Two users:

* a block's transaction root, with inclusion proofs: the in-memory functions
  :func:`root_of`, :func:`inclusion_proof_of`, :func:`consistency_proof_of`;
* one log over every transaction since genesis, whose size and root go in each block header:
  :class:`MerkleLog`, backed by a store of complete-subtree hashes, answering roots, inclusion and
  consistency proofs for any historical size with O(log n) node reads.

Proof generation follows the recursive definitions PATH (2.1.3.1) and SUBPROOF (2.1.4.1);
verification follows the iterative algorithms of 2.1.3.2 and 2.1.4.2 step by step, so the two
sides are independent implementations of the same specification. Proofs list hashes from the
leaf upwards, exactly as RFC 9162 and Certificate Transparency order them.

No I/O: the log reads nodes through a callback and hands newly completed nodes back to the
caller, who writes them in the same batch as the block that caused them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence

from ledger.errors import CustosError, StorageError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MemoryNodeStore",
    "MerkleError",
    "MerkleLog",
    "MissingNodeError",
    "consistency_proof_of",
    "inclusion_proof_of",
    "leaf_hash",
    "node_hash",
    "root_of",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"

#: MTH({}) = SHA-256 of the empty string (RFC 9162 section 2.1.1).
EMPTY_ROOT: bytes = hashlib.sha256(b"").digest()

NodeKey = tuple[int, int]
GetNode = Callable[[int, int], bytes | None]
SubtreeHash = Callable[[int, int], bytes]


class MerkleError(CustosError, ValueError):
    """An index, size or hash handed to this module is out of range or malformed."""

    code = "merkle"


class MissingNodeError(StorageError):
    """The node store lacks (or holds a malformed) complete-subtree hash that must exist."""

    code = "merkle-missing-node"

    def __init__(self, level: int, index: int, reason: str = "missing") -> None:
        self.level = level
        self.index = index
        first = index << level
        super().__init__(
            f"merkle node (level {level}, index {index}) covering leaves "
            f"[{first}, {first + (1 << level)}) is {reason} in the node store"
        )


# --------------------------------------------------------------------------- hashing


def leaf_hash(data: bytes) -> bytes:
    """MTH({d0}) = SHA-256(0x00 || d0) (RFC 9162 section 2.1.1)."""
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right), the interior node of RFC 9162 section 2.1.1."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def _split_point(n: int) -> int:
    """The largest power of two smaller than ``n`` (``k`` in RFC 9162 section 2.1.1), n >= 2."""
    return 1 << ((n - 1).bit_length() - 1)


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


def _is_count(value: object) -> bool:
    """A non-negative int (bools excluded) usable as an index or a tree size."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def _require_hash(value: object, what: str) -> None:
    if not _is_hash(value):
        raise MerkleError(f"{what} must be {HASH_SIZE} bytes, got {_describe(value)}")


def _require_count(value: object, what: str) -> None:
    if not _is_count(value):
        raise MerkleError(f"{what} must be a non-negative int, got {value!r}")


def _describe(value: object) -> str:
    if isinstance(value, (bytes, bytearray)):
        return f"{len(value)} bytes"
    return type(value).__name__


# --------------------------------------------------------------------------- proof shapes
#
# PATH and SUBPROOF are written once, over a function giving MTH of the sub-range
# D[start:end]. The in-memory tree answers it by recursion over the leaves; the log answers it
# from stored complete subtrees. Both only ever ask for ranges that the RFC recursion produces.


def _path(m: int, start: int, end: int, subtree: SubtreeHash) -> list[bytes]:
    """PATH(m, D[start:end]) of RFC 9162 section 2.1.3.1, leaf-to-root order."""
    proof: list[bytes] = []
    while end - start > 1:
        k = _split_point(end - start)
        if m < k:
            # m < k: PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n])
            proof.append(subtree(start + k, end))
            end = start + k
        else:
            # m >= k: PATH(m, D[n]) = PATH(m - k, D[k:n]) : MTH(D[0:k])
            proof.append(subtree(start, start + k))
            start, m = start + k, m - k
    proof.reverse()
    return proof


def _subproof(m: int, start: int, end: int, subtree: SubtreeHash) -> list[bytes]:
    """SUBPROOF(m, D[start:end], true) of RFC 9162 section 2.1.4.1, leaf-to-root order."""
    proof: list[bytes] = []
    known = True  # the flag b: MTH(D[0:m]) is known to the verifier
    while end - start != m:
        k = _split_point(end - start)
        if m <= k:
            # m <= k: SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
            proof.append(subtree(start + k, end))
            end = start + k
        else:
            # m > k: SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
            proof.append(subtree(start, start + k))
            start, m, known = start + k, m - k, False
    if not known:
        # m == n and b is false: SUBPROOF(m, D[m], false) = {MTH(D[m])}
        proof.append(subtree(start, end))
    proof.reverse()
    return proof


# --------------------------------------------------------------------------- in-memory tree


def _check_leaves(leaf_hashes: Sequence[bytes]) -> None:
    for position, value in enumerate(leaf_hashes):
        if not _is_hash(value):
            raise MerkleError(
                f"leaf hash {position} must be {HASH_SIZE} bytes, got {_describe(value)}"
            )


def _mth(leaf_hashes: Sequence[bytes], start: int, end: int) -> bytes:
    """MTH(D[start:end]) by the recursive definition of RFC 9162 section 2.1.1."""
    if end == start:
        return EMPTY_ROOT
    if end - start == 1:
        return leaf_hashes[start]
    k = _split_point(end - start)
    return node_hash(_mth(leaf_hashes, start, start + k), _mth(leaf_hashes, start + k, end))


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over already hashed leaves (RFC 9162 section 2.1.1); EMPTY_ROOT when n = 0.

    Computed level by level, pairing neighbours and carrying an odd last node up unchanged:
    the same tree as the definition's split at the largest power of two below n (its left
    subtrees are complete, so every pair below a level's last node is one of its nodes), in
    one pass per level instead of a call per node."""
    _check_leaves(leaf_hashes)
    if not leaf_hashes:
        return EMPTY_ROOT
    level = list(leaf_hashes)
    sha256, prefix = hashlib.sha256, NODE_PREFIX
    while len(level) > 1:
        paired = [sha256(prefix + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) & 1:
            paired.append(level[-1])
        level = paired
    return level[0]


def inclusion_proof_of(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(index, D[n]) (RFC 9162 section 2.1.3.1) for the leaf at ``index`` < n."""
    _check_leaves(leaf_hashes)
    _require_count(index, "index")
    if index >= len(leaf_hashes):
        raise MerkleError(f"index {index} is outside a tree of size {len(leaf_hashes)}")
    return _path(index, 0, len(leaf_hashes), lambda a, b: _mth(leaf_hashes, a, b))


def consistency_proof_of(leaf_hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """PROOF(old_size, D[n]) (RFC 9162 section 2.1.4.1): the first ``old_size`` leaves are a prefix.

    Empty when ``old_size`` is 0 or n: nothing needs proving then.
    """
    _check_leaves(leaf_hashes)
    _require_count(old_size, "old_size")
    if old_size > len(leaf_hashes):
        raise MerkleError(f"old_size {old_size} exceeds the tree size {len(leaf_hashes)}")
    if old_size == 0:
        return []
    return _subproof(old_size, 0, len(leaf_hashes), lambda a, b: _mth(leaf_hashes, a, b))


# --------------------------------------------------------------------------- verification


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 section 2.1.3.2: is ``leaf_hash`` at ``index`` in the tree (``size``, ``root``)?

    Never raises: malformed input (wrong hash sizes, negative or non-int numbers) is False.
    The pair (size, root) must come from one authenticated tree head.
    """
    if not (_is_hash(leaf_hash) and _is_hash(root) and _is_proof(proof)):
        return False
    if not (_is_count(index) and _is_count(size)):
        return False
    # 1. If leaf_index >= tree_size, fail.
    if index >= size:
        return False
    # 2. Set fn to leaf_index and sn to tree_size - 1.  3. Set r to hash.
    fn, sn = index, size - 1
    r = leaf_hash
    # 4. For each value p in the inclusion_path array:
    for p in proof:
        # a. If sn is 0, stop the iteration and fail.
        if sn == 0:
            return False
        # b. If LSB(fn) is set, or if fn is equal to sn, then:
        if fn & 1 or fn == sn:
            # i. Set r to HASH(0x01 || p || r).
            r = node_hash(p, r)
            # ii. If LSB(fn) is not set, right-shift fn and sn until LSB(fn) is set or fn is 0.
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            # Otherwise: i. Set r to HASH(0x01 || r || p).
            r = node_hash(r, p)
        # c. Right-shift both fn and sn one time.
        fn, sn = fn >> 1, sn >> 1
    # 5. Accept iff sn is 0 and r equals root_hash.
    return sn == 0 and r == root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 section 2.1.4.2: is the tree (old_size, old_root) a prefix of (new_size, new_root)?

    The RFC algorithm covers 0 < old_size < new_size. The two trivial cases its proof
    generation defines as empty proofs are accepted only with an empty proof: equal sizes need
    equal roots, and old_size 0 needs old_root to be the empty-tree hash. Never raises.
    """
    if not (_is_hash(old_root) and _is_hash(new_root) and _is_proof(proof)):
        return False
    if not (_is_count(old_size) and _is_count(new_size)) or old_size > new_size:
        return False
    if old_size == new_size:
        return len(proof) == 0 and old_root == new_root
    if old_size == 0:
        return len(proof) == 0 and old_root == EMPTY_ROOT
    return _verify_consistency_steps(old_size, new_size, old_root, new_root, proof)


def _verify_consistency_steps(
    first: int, second: int, first_hash: bytes, second_hash: bytes, proof: Sequence[bytes]
) -> bool:
    """Steps 1-7 of RFC 9162 section 2.1.4.2, for 0 < first < second."""
    # 1. If consistency_path is an empty array, fail.
    if len(proof) == 0:
        return False
    # 2. If first is an exact power of 2, prepend first_hash to the consistency_path array.
    path = [first_hash, *proof] if _is_power_of_two(first) else list(proof)
    # 3. Set fn to first - 1 and sn to second - 1.
    fn, sn = first - 1, second - 1
    # 4. If LSB(fn) is set, right-shift both fn and sn equally until LSB(fn) is not set.
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    # 5. Set both fr and sr to the first value in the consistency_path array.
    fr = sr = path[0]
    # 6. For each subsequent value c in the consistency_path array:
    for c in path[1:]:
        # a. If sn is 0, stop the iteration and fail.
        if sn == 0:
            return False
        # b. If LSB(fn) is set, or if fn is equal to sn, then:
        if fn & 1 or fn == sn:
            # i. Set fr to HASH(0x01 || c || fr). Set sr to HASH(0x01 || c || sr).
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            # ii. If LSB(fn) is not set, right-shift fn and sn until LSB(fn) is set or fn is 0.
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            # Otherwise: i. Set sr to HASH(0x01 || sr || c).
            sr = node_hash(sr, c)
        # c. Right-shift both fn and sn one time.
        fn, sn = fn >> 1, sn >> 1
    # 7. Accept iff fr == first_hash, sr == second_hash and sn == 0.
    return fr == first_hash and sr == second_hash and sn == 0


def _is_proof(proof: object) -> bool:
    """A sequence (not bytes/str) whose every element is a 32-byte hash."""
    if isinstance(proof, (bytes, bytearray, str)) or not isinstance(proof, Sequence):
        return False
    return all(_is_hash(element) for element in proof)


# --------------------------------------------------------------------------- the log


class MemoryNodeStore:
    """A dict-backed node store for tests and in-memory logs: pass ``store.get`` as get_node."""

    def __init__(self) -> None:
        self._nodes: dict[NodeKey, bytes] = {}

    def get(self, level: int, index: int) -> bytes | None:
        """The complete subtree hash at (level, index), or None."""
        return self._nodes.get((level, index))

    def put_many(self, nodes: Mapping[NodeKey, bytes]) -> None:
        """Store a batch of nodes, typically ``MerkleLog.take_pending()``."""
        self._nodes.update(nodes)

    def __len__(self) -> int:
        return len(self._nodes)


class MerkleLog:
    """Append-only log backed by a store of complete-subtree hashes.

    ``get_node(level, index)`` returns the hash of the complete subtree covering leaves
    ``[index * 2**level, (index + 1) * 2**level)`` or None; level 0 holds the leaf hashes.
    Every complete subtree of the log is stored exactly once, when it completes, so the
    right edge of any historical tree decomposes into at most log2(n) stored nodes.

    New nodes collect in a pending map that reads see too; the caller flushes them with
    :meth:`take_pending` into the write batch that stores the block. Call ``take_pending``
    only when that batch is (or is about to be) visible to ``get_node``; if the batch is
    dropped, drop this object too and build a new one at the stored size.
    """

    def __init__(self, get_node: GetNode, size: int) -> None:
        _require_count(size, "size")
        self._get_node = get_node
        self._size = size
        self._pending: dict[NodeKey, bytes] = {}
        # hashes of the complete subtrees that make up the current tree, largest first;
        # loaded on the first append (O(log n) reads) and kept up to date after that
        self._frontier: list[bytes] | None = None

    @property
    def size(self) -> int:
        """The current number of leaves."""
        return self._size

    # ----------------------------------------------------------------- writing

    def append(self, leaf_hash: bytes) -> None:
        """Add one leaf; record it and every subtree it completes (1 + trailing ones of n)."""
        _require_hash(leaf_hash, "leaf_hash")
        frontier = self._load_frontier()
        index, level, value = self._size, 0, leaf_hash
        self._pending[(0, index)] = value
        while index & 1:
            # (level, index) is a right child: merge with its left sibling, the last frontier entry
            value = node_hash(frontier.pop(), value)
            index, level = index >> 1, level + 1
            self._pending[(level, index)] = value
        frontier.append(value)
        self._size += 1

    def pending(self) -> dict[NodeKey, bytes]:
        """A copy of the nodes written since the last :meth:`take_pending`."""
        return dict(self._pending)

    def take_pending(self) -> dict[NodeKey, bytes]:
        """The nodes written since the last call, handed over for the caller's write batch."""
        taken, self._pending = self._pending, {}
        return taken

    # ----------------------------------------------------------------- reading

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (default: the current size), any size <= current."""
        size = self._checked_size(size, "size")
        if size == self._size and self._frontier is not None:
            return _fold_right(self._frontier)
        return self._subtree(0, size)

    def right_edge(self) -> list[bytes]:
        """The hashes of the complete subtrees the whole log is made of, largest first (one per
        set bit of the size): all a node needs to append to it and to compute its root."""
        return list(self._pieces(0, self._size))

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[size]) (RFC 9162 section 2.1.3.1) from O(log n) node reads."""
        size = self._checked_size(size, "size")
        _require_count(index, "index")
        if index >= size:
            raise MerkleError(f"index {index} is outside a tree of size {size}")
        return _path(index, 0, size, self._subtree)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """PROOF(old_size, D[new_size]) (RFC 9162 section 2.1.4.1) from O(log n) node reads.

        Empty when old_size is 0 or equal to new_size.
        """
        new_size = self._checked_size(new_size, "new_size")
        _require_count(old_size, "old_size")
        if old_size > new_size:
            raise MerkleError(f"old_size {old_size} exceeds new_size {new_size}")
        if old_size == 0:
            return []
        return _subproof(old_size, 0, new_size, self._subtree)

    # ----------------------------------------------------------------- internals

    def _checked_size(self, size: int | None, what: str) -> int:
        if size is None:
            return self._size
        _require_count(size, what)
        if size > self._size:
            raise MerkleError(f"{what} {size} exceeds the log size {self._size}")
        return size

    def _node(self, level: int, index: int) -> bytes:
        """A stored (or pending) complete subtree hash; a gap in the store is an error."""
        value = self._pending.get((level, index))
        if value is None:
            value = self._get_node(level, index)
        if value is None:
            raise MissingNodeError(level, index)
        if not _is_hash(value):
            raise MissingNodeError(level, index, reason=f"malformed ({_describe(value)})")
        return value

    def _pieces(self, start: int, end: int) -> list[bytes]:
        """The complete subtrees covering D[start:end], largest first (one per set bit of its size).

        RFC 9162 only splits trees at powers of two, so every range PATH or SUBPROOF asks for
        starts at a multiple of its largest piece and each piece is one stored node.
        """
        pieces: list[bytes] = []
        remaining = end - start
        for level in range(remaining.bit_length() - 1, -1, -1):
            if remaining >> level & 1:
                if start & ((1 << level) - 1):
                    raise MerkleError(f"range [{start}, {end}) is not a subtree of the log")
                pieces.append(self._node(level, start >> level))
                start += 1 << level
        return pieces

    def _subtree(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for a range of the RFC recursion: right-fold of its pieces."""
        if start == end:
            return EMPTY_ROOT
        return _fold_right(self._pieces(start, end))

    def _load_frontier(self) -> list[bytes]:
        if self._frontier is None:
            self._frontier = self._pieces(0, self._size)
        return self._frontier


def _fold_right(pieces: Sequence[bytes]) -> bytes:
    """MTH of a tree from its complete subtrees, largest first: H(p0, H(p1, ... H(pn-1, pn))).

    This is the recursion of RFC 9162 section 2.1.1 on a right edge: the left child is the
    largest complete subtree, the right child the rest.
    """
    if not pieces:
        return EMPTY_ROOT
    value = pieces[-1]
    for piece in reversed(pieces[:-1]):
        value = node_hash(piece, value)
    return value
