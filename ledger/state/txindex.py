"""The transaction-id log: what puts the transaction index under the state root (protocol 4 on).

Every node refuses a transaction committed before (``has_tx``, the store's ``X`` index). That
index was outside the state root, so a node starting from a snapshot of the state could not be
given it in a form it can check, and without it would accept an old transaction replayed that
every other node refuses. From protocol 4 on (:data:`ledger.protocol.TX_INDEX_VERSION`) the state
root covers it through this log (docs/adr/0007-state-sync.md).

Leaf ``i`` of the log stands for entry ``i`` of the global transaction log: every place of every
block in order, the stub of an erased transaction included, so its size is the header's
``log_size`` and a leaf's index is the transaction's log index. A leaf is the RFC 6962 leaf hash
(:func:`ledger.merkle.leaf_hash`) of::

    tx id (32) || height (8, big-endian) || position in the block (4, big-endian) || result row (32)

where the result row is :func:`ledger.state.machine.result_row` (the hash a stub keeps, so the
leaf is the same on a node that saw the transaction and on one that only holds its stub).

The state holds the log's size and right edge only (the global record ``txlog``,
:class:`ledger.state.records.TxLog`): the hashes of its complete subtrees, largest first, at
most 64 of them. That is enough to append and to compute the root, and it is authenticated by
the state root like any record. Appending costs two hashes per transaction on average; nothing
is stored per transaction beyond the index the node keeps anyway.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ledger.merkle import EMPTY_ROOT, leaf_hash, node_hash, root_of
from ledger.state.records import TxLog

EMPTY = TxLog(0, ())


def entry_leaf(tx_id: bytes, height: int, position: int, row: bytes) -> bytes:
    """The leaf of one block entry (see the module doc)."""
    return leaf_hash(tx_id + height.to_bytes(8, "big") + position.to_bytes(4, "big") + row)


def appended(log: TxLog, leaves: Iterable[bytes]) -> TxLog:
    """The log after appending ``leaves`` in order."""
    frontier = list(log.frontier)
    size = log.size
    for value in leaves:
        n = size
        while n & 1:  # the new leaf completes a subtree: merge with the last complete one
            value = node_hash(frontier.pop(), value)
            n >>= 1
        frontier.append(value)
        size += 1
    return TxLog(size, tuple(frontier))


def root(log: TxLog) -> bytes:
    """MTH of the whole log (RFC 9162 2.1.1), folded from its right edge."""
    if not log.frontier:
        return EMPTY_ROOT
    value = log.frontier[-1]
    for piece in reversed(log.frontier[:-1]):
        value = node_hash(piece, value)
    return value


def well_formed(log: TxLog) -> bool:
    """One hash per set bit of the size."""
    return len(log.frontier) == bin(log.size).count("1")


def pieces(size: int) -> list[tuple[int, int]]:
    """(level, first leaf) of each complete subtree of the right edge of a log of ``size``,
    largest first: the subtrees the frontier's hashes stand for."""
    out = []
    start = 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            out.append((level, start))
            start += 1 << level
    return out


def subtree_hash(leaves: Sequence[bytes]) -> bytes:
    """The hash of a complete subtree (a power-of-two count of leaves, in order)."""
    n = len(leaves)
    if n == 0 or n & (n - 1):
        raise ValueError(f"a complete subtree has a power-of-two number of leaves, not {n}")
    return root_of(leaves)
