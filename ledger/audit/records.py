"""Checks of what only a node's store holds, against the auditor's replay.

A node answers clients from its indexes, not from its blocks: ``X`` says where a transaction is
and what it did (a terminal or guardian is told "permitted" from there), ``N`` maps header
hashes to heights, ``L`` holds the log nodes inclusion proofs are cut from, ``S`` is the state
the rules read, ``T`` the tip, ``K`` the transactions in log order (what state-sync snapshots
serve), ``R`` each block's changes to children's slots (what stands in for an erased child's
records when blocks are executed again), ``I`` each child's transactions (what an erasure
stubs), ``M`` the state trees' nodes proofs are cut from, with ``J`` and the tree journal (the
blocks whose nodes the node held in memory when it stopped). A store whose blocks are perfect
can still lie through any of them, or be damaged there so that the node refuses to start, so a
data-directory audit checks each one:

* per block, the records that block wrote (exact height in any failure);
* the tree nodes where the store's nodes stand: at the height ``J`` names, or at the tip;
* at the end, every record of the other prefixes, in key order, against the replay: a record the
  replay lacks (a forged "committed" transaction), a missing one, or a different value; the
  journal's entries against the tree changes of the blocks after ``J``; and no subject index
  entry beyond those of the blocks checked.
"""

from __future__ import annotations

import bisect
import hashlib
import string
from collections.abc import Iterator

from ledger.audit.findings import AuditFailure, AuditStop
from ledger.audit.replay import PREFIXES, ReplayStore, expected_location, log_key
from ledger.block import Block, is_stub
from ledger.chain import ExecutedBlock
from ledger.errors import CustosError
from ledger.privacy.subjects import subject_of
from ledger.state.machine import result_row
from ledger.storage.chainstore import (
    ERASED_STATUS,
    LEGACY_TREE_CHANGES,
    TREE_BASE_KEY,
    TREE_NODES,
    TX_LOCATION,
    TxLocation,
    encode_tree_updates,
    split_subject_key,
    subject_key,
)
from ledger.storage.kv import KV
from ledger.tx.envelope import decode_tx

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


def subject_entries(executed: ExecutedBlock) -> list[bytes]:
    """The subject index keys a node's store holds for a block: one per whole transaction about a
    child (an erasure's purge deletes them with the transactions it stubs)."""
    keys = []
    for i, tx in enumerate(executed.txs):
        subject = subject_of(tx)
        if subject is not None:
            keys.append(subject_key(subject, executed.height, executed.position_of(i)))
    return keys


def check_subject_entries(store: KV, executed: ExecutedBlock) -> int:
    """Each of the block's transactions about a child is in the store's subject index: a missing
    entry is a transaction an erasure order would leave whole in this node's blocks. Returns how
    many entries the block has (what :func:`check_subject_extras` counts on)."""
    keys = subject_entries(executed)
    for key in keys:
        stored = store.get(key)
        if stored != b"":
            _, height, position = split_subject_key(key)
            raise AuditStop(AuditFailure(
                height, f"subject index entry of transaction {position}", "subject-index",
                "the store's index of each child's transactions (what an erasure stubs) lacks this one"
                if stored is None else "the store's subject index entry holds a value", b"", _ABSENT if stored is None
                else stored))
    return len(keys)


def check_subject_extras(store: KV, since: int, expected: int) -> None:
    """No subject index entry at heights ``since`` and later beyond the ``expected`` ones the
    blocks checked had (each of which :func:`check_subject_entries` found): an entry that names
    a transaction about nobody, or about another child, would make an erasure stub the wrong
    one or fail."""
    held = [key for key, _ in store.iterate(b"I", b"J") if split_subject_key(key)[1] >= since]
    if len(held) == expected:
        return
    blocks: dict[int, Block | None] = {}
    for key in held:
        identity, height, position = split_subject_key(key)
        if height not in blocks:
            raw = store.get(b"B" + height.to_bytes(8, "big"))
            blocks = {height: None if raw is None else Block.decode(raw)}
        block = blocks[height]
        entry = None if block is None or position >= len(block.txs) else block.txs[position]
        about = None if entry is None or is_stub(entry) else subject_of(decode_tx(entry))
        if about != identity:
            raise AuditStop(AuditFailure(
                height, f"subject index entry of transaction {position}", "subject-index",
                "the store's subject index names a transaction that is not about this child", identity.hex(),
                "no such transaction" if entry is None else "an erased transaction" if about is None and is_stub(entry)
                else "a transaction about no child" if about is None else f"a transaction about {about.hex()}"))
    raise AuditStop(AuditFailure(None, "subject index", "subject-index",
                                 "the store's subject index holds more entries than the checked blocks give",
                                 expected, len(held)))


# ---------------------------------------------------------------- the state trees' nodes


def tree_base(store: KV) -> int | None:
    """The height the store's tree nodes stand at when it holds later blocks' tree changes in
    its journal (``J``); None when its nodes are the tip's."""
    raw = store.get(TREE_BASE_KEY)
    if raw is None:
        return None
    if len(raw) != 8:
        raise AuditStop(AuditFailure(None, "tree base record", "tree-journal",
                                     "the record of the height the tree nodes stand at is not a height", None, raw))
    return int.from_bytes(raw, "big")


def holds_legacy_tree_changes(store: KV) -> bool:
    """The store keeps blocks' tree changes as records (the layout before the tree journal)."""
    return next(iter(store.iterate(LEGACY_TREE_CHANGES, LEGACY_TREE_CHANGES + b"\xff")), None) is not None


def compare_tree_nodes(store: KV, replay: ReplayStore) -> int:
    """Every tree node of the store against the replay's at the replay's height (where the
    caller knows the store's nodes stand); returns how many matched."""
    height = replay.tip.height
    stop = bytes([TREE_NODES[0] + 1])
    compared = 0
    for key, mine, theirs in _merged(replay.kv.iterate(TREE_NODES, stop), store.iterate(TREE_NODES, stop)):
        if mine != theirs:
            what = ("the store lacks a tree node re-execution made" if theirs is None else
                    "the store holds a tree node re-execution never made" if mine is None else
                    "the store's tree node differs from re-execution")
            raise AuditStop(AuditFailure(height, f"tree node {key[1:].hex()}", "tree-node",
                                         f"{what} (the store's nodes stand at height {height})",
                                         _ABSENT if mine is None else mine, _ABSENT if theirs is None else theirs))
        compared += 1
    return compared


def tree_changes_digest(executed: ExecutedBlock) -> bytes:
    """What the tree journal's entry for a block must hold, hashed (the journal holds at most
    some tens of blocks, but a damaged ``J`` may name a height far back)."""
    return hashlib.sha256(encode_tree_updates(executed.changes.tree_updates)).digest()


def check_tree_journal(entries: list[tuple[int, bytes]], base: int, tip: int, digests: dict[int, bytes]) -> int:
    """The journal holds, from its start, the tree changes of blocks ``base``+1 to ``tip`` as
    re-execution made them (``digests``); what a restart rebuilds the tree nodes from. An entry
    past the tip (of a block whose batch never landed) is what the store drops at its start."""
    if base >= tip:
        raise AuditStop(AuditFailure(tip, "tree base record", "tree-journal",
                                     "the store says its tree nodes stand at or past its tip", f"< {tip}", base))
    run = entries[:tip - base]
    heights = [height for height, _ in run]
    if heights != list(range(base + 1, tip + 1)):
        held = ", ".join(map(str, [height for height, _ in entries][:5])) or "none"
        raise AuditStop(AuditFailure(base + 1, "tree journal", "tree-journal",
                                     f"the journal does not hold, whole and in order, the tree changes of blocks "
                                     f"{base + 1} to {tip} (the node would refuse to start)",
                                     f"blocks {base + 1} to {tip}", f"whole entries for blocks: {held}"))
    for height, payload in run:
        if hashlib.sha256(payload).digest() != digests[height]:
            raise AuditStop(AuditFailure(height, "tree journal entry", "tree-journal",
                                         "the journal's tree changes of this block differ from re-execution",
                                         digests[height], hashlib.sha256(payload).digest()))
    return len(run)


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
    """Every record of the store under :data:`PREFIXES` against the replay; returns how many
    matched."""
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
    if prefix == b"K" and len(key) == 8:
        leaf = int.from_bytes(key, "big")
        return AuditFailure(log_heights.height_of(leaf) or height, f"log-order index entry {leaf}", "tx-order", what,
                            expected, found)
    if prefix == b"R" and len(key) == 8:
        return AuditFailure(int.from_bytes(key, "big"), "recorded slot changes", "slot-record", what, expected, found)
    return AuditFailure(height, f"record {prefix.decode()}{key.hex()}", "store", what, expected, found)
