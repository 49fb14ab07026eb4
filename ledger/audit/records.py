"""Checks of what only a node's store holds, against the auditor's replay.

A node answers clients from its indexes, not from its blocks: ``X`` says where a transaction is
and what it did (a terminal or guardian is told "permitted" from there), ``N`` maps header
hashes to heights, ``L`` holds the log nodes inclusion proofs are cut from, ``S`` is the state
the rules read, ``T`` the tip. A store whose blocks are perfect can still lie through any of
them, so a data-directory audit checks each one:

* per block, the records that block wrote (exact height in any failure);
* at the end, every record of those prefixes, in key order, against the replay: a record the
  replay lacks (a forged "committed" transaction), a missing one, or a different value.
"""

from __future__ import annotations

import bisect
import string
from collections.abc import Iterator

from ledger.audit.findings import AuditFailure, AuditStop
from ledger.audit.replay import PREFIXES, ReplayStore, expected_location, log_key
from ledger.chain import ExecutedBlock
from ledger.errors import CustosError
from ledger.state.machine import result_row
from ledger.storage.chainstore import ERASED_STATUS, TX_LOCATION, TxLocation
from ledger.storage.kv import KV

_PRINTABLE = set((string.ascii_letters + string.digits + "-_./:").encode())
_ABSENT = "absent"


def render_key(key: bytes) -> str:
    """A state key for people: its ASCII prefix as text, the binary rest as hex."""
    i = 0
    while i < len(key) and key[i] in _PRINTABLE:
        i += 1
        if key[i - 1:i] == b"/":
            break
    return key[:i].decode() + key[i:].hex()


def describe_location(loc: TxLocation) -> str:
    ref = f", ref {loc.ref.hex()}" if loc.ref is not None else ""
    return f"height {loc.height}, position {loc.index}, log index {loc.log_index}, result {loc.status}{ref}"


def _describe_stored_location(raw: bytes | None) -> str:
    if raw is None:
        return _ABSENT
    try:
        return describe_location(TX_LOCATION.decode(raw))
    except CustosError:
        return f"undecodable record {raw.hex()}"


class LogHeights:
    """Which block appended each log index (for the blocks this audit replayed)."""

    def __init__(self, base_size: int, base_height: int) -> None:
        self._ends = [base_size]  # log size after each replayed block
        self._heights = [base_height]

    def add(self, height: int, log_size: int) -> None:
        self._ends.append(log_size)
        self._heights.append(height)

    def height_of(self, leaf: int) -> int | None:
        """The height that appended log entry ``leaf``; None if it predates this audit."""
        i = bisect.bisect_right(self._ends, leaf)
        if i == 0:
            return None
        if i >= len(self._ends):
            return self._heights[-1]
        return self._heights[i]


def check_block_records(store: KV, executed: ExecutedBlock, locations: list[bytes]) -> int:
    """The records a block wrote to the node's store (``locations``: the transaction-index
    records re-execution gives); returns how many were compared."""
    h = executed.height
    block_hash = executed.block.hash
    raw = store.get(b"N" + block_hash)
    if raw != h.to_bytes(8, "big"):
        found = _ABSENT if raw is None else (int.from_bytes(raw, "big") if len(raw) == 8 else raw)
        raise AuditStop(AuditFailure(h, f"hash index entry of block {block_hash.hex()[:16]}", "hash-index",
                                     "the store maps this header hash elsewhere", h, found))
    for i, (tx, location) in enumerate(zip(executed.txs, locations, strict=True)):
        stored = store.get(b"X" + tx.id)
        if stored != location:
            raise AuditStop(AuditFailure(
                h, f"tx index entry of transaction {executed.position_of(i)} ({tx.kind} {tx.id.hex()[:16]})",
                "tx-index",
                "the store's record of where this transaction is and what it did disagrees with re-execution",
                describe_location(expected_location(executed, i)), _describe_stored_location(stored)))
    for (level, index), node in sorted(executed.log_nodes.items()):
        stored = store.get(log_key(level, index))
        if stored != node:
            raise AuditStop(AuditFailure(h, f"log node (level {level}, index {index})", "log-node",
                                         "the store's log node disagrees with the re-executed log", node,
                                         _ABSENT if stored is None else stored))
    return 1 + len(executed.txs) + len(executed.log_nodes)


def _merged(a: Iterator[tuple[bytes, bytes]], b: Iterator[tuple[bytes, bytes]]
            ) -> Iterator[tuple[bytes, bytes | None, bytes | None]]:
    """(key, value in a, value in b) over the union of two key-ordered iterators."""
    x, y = next(a, None), next(b, None)
    while x is not None or y is not None:
        if x is not None and (y is None or x[0] < y[0]):
            yield x[0], x[1], None
            x = next(a, None)
        elif y is not None and (x is None or y[0] < x[0]):
            yield y[0], None, y[1]
            y = next(b, None)
        elif x is not None and y is not None:  # the same key on both sides
            yield x[0], x[1], y[1]
            x, y = next(a, None), next(b, None)


def compare_records(store: KV, replay: ReplayStore, log_heights: LogHeights) -> int:
    """Every L, N, S and X record of the store against the replay; returns how many matched."""
    height = replay.tip.height
    compared = 0
    for prefix in PREFIXES:
        stop = bytes([prefix[0] + 1])
        for key, mine, theirs in _merged(replay.kv.iterate(prefix, stop), store.iterate(prefix, stop)):
            if mine == theirs or (prefix == b"X" and _same_erased(key[1:], mine, theirs)):
                compared += 1
                continue
            raise AuditStop(_difference(prefix, key[1:], mine, theirs, height, log_heights))
    return compared


def _same_erased(tx_id: bytes, mine: bytes | None, theirs: bytes | None) -> bool:
    """A transaction erased before the audit: the replay knows where it was and its result row's
    hash (the stub's); the node's own record must agree with both."""
    if mine is None or theirs is None:
        return False
    try:
        replayed, stored = TX_LOCATION.decode(mine), TX_LOCATION.decode(theirs)
    except CustosError:
        return False
    return (replayed.status == ERASED_STATUS and replayed.ref is not None
            and (stored.height, stored.index, stored.log_index) == (replayed.height, replayed.index, replayed.log_index)
            and result_row(tx_id, stored.status, stored.ref) == replayed.ref)


def _difference(prefix: bytes, key: bytes, mine: bytes | None, theirs: bytes | None, height: int,
                log_heights: LogHeights) -> AuditFailure:
    expected = _ABSENT if mine is None else mine
    found = _ABSENT if theirs is None else theirs
    what = ("the store lacks a record re-execution wrote" if theirs is None else
            "the store holds a record re-execution never wrote" if mine is None else
            "the store's record differs from re-execution")
    if prefix == b"S":
        return AuditFailure(height, f"state entry {render_key(key)}", "state", what, expected, found)
    if prefix == b"X":
        at = height  # the height the record names, when it names one
        for raw in (mine, theirs):
            if raw is None:
                continue
            try:
                at = TX_LOCATION.decode(raw).height
                break
            except CustosError:
                continue
        return AuditFailure(at, f"tx index entry {key.hex()[:16]}", "tx-index", what,
                            _describe_stored_location(mine) if mine is not None else _ABSENT,
                            _describe_stored_location(theirs))
    if prefix == b"L" and len(key) == 9:
        level, index = key[0], int.from_bytes(key[1:], "big")
        at = log_heights.height_of(((index + 1) << level) - 1) or height
        return AuditFailure(at, f"log node (level {level}, index {index})", "log-node", what, expected, found)
    if prefix == b"N":
        at = int.from_bytes(mine, "big") if mine is not None and len(mine) == 8 else height
        return AuditFailure(at, f"hash index entry of block {key.hex()[:16]}", "hash-index", what, expected, found)
    return AuditFailure(height, f"record {prefix.decode()}{key.hex()}", "store", what, expected, found)
