"""Purging an erased child's transactions from a node's stored blocks, in one write batch.

When a committed block erases a child (``identity.erased``), the state has already dropped the
child's records; what remains are the child's transactions, whole, in the stored blocks and in
the durable mempool. The purge replaces each of them by its stub (:func:`ledger.block.make_stub`)
and deletes, in the same synchronous batch:

* the child's entries of the subject index (``I``), which is how they were found: reading the
  chain is never needed;
* accepted, not yet committed transactions about the child (``P``);
* the pending-purge record (``E`` + tag) that the erasing block wrote;

and sets the compaction marker (``E``): LevelDB keeps deleted values in its files until they
are compacted, and names keys in its MANIFEST until it is reopened, so the node does both next
and then clears the marker. A crash anywhere leaves either the pending record (the purge runs
again at start; stubbing is idempotent) or the marker (compaction runs again at start).

Headers are untouched: a stub keeps the leaf hash of what it replaces, so the block's hash,
transaction root and every log proof stay as they were; the plan checks the root before writing.
The transaction index (``X``: ids, heights, statuses) stays too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ledger.block import Block, is_stub, make_stub, tx_root
from ledger.errors import CustosError, StorageError
from ledger.privacy.subjects import subject_of
from ledger.state.machine import result_row
from ledger.state.view import prefix_end
from ledger.storage.chainstore import COMPACTION_DUE, ChainStore, erasure_key, split_subject_key, subject_key
from ledger.tx.envelope import Transaction, decode_tx


@dataclass
class Purge:
    """What purging one erased child will write, and what it replaced."""

    tag: bytes
    identity: bytes
    #: (height, position, the erased transaction) of every transaction replaced by a stub now
    stubbed: list[tuple[int, int, Transaction]] = field(default_factory=list)
    #: sequence numbers of accepted, not yet committed transactions about the child
    accepted: list[int] = field(default_factory=list)
    batch: dict[bytes, bytes | None] = field(default_factory=dict)

    @property
    def blocks(self) -> int:
        """How many stored blocks the purge rewrites."""
        return len({height for height, _, _ in self.stubbed})


def plan_purge(store: ChainStore, tag: bytes, identity: bytes) -> Purge:
    """Read what purging ``identity`` must change; nothing is written (see :func:`apply_purge`)."""
    purge = Purge(tag, identity)
    batch = purge.batch
    by_height: dict[int, list[int]] = {}
    prefix = subject_key(identity)
    for key, _ in store.kv.iterate(prefix, prefix_end(prefix)):
        _, height, position = split_subject_key(key)
        by_height.setdefault(height, []).append(position)
        batch[key] = None
    for height, positions in sorted(by_height.items()):
        raw = store.block_bytes(height)
        if raw is None:
            continue  # a store that keeps no blocks holds nothing to stub
        block = Block.decode(raw)
        txs = list(block.txs)
        for position in positions:
            if position >= len(txs):
                raise StorageError(f"the subject index names transaction {position} of block {height}, "
                                   f"which holds {len(txs)}")
            entry = txs[position]
            if is_stub(entry):
                continue  # stubbed by an earlier run of this purge
            tx = decode_tx(entry)
            if subject_of(tx) != identity:
                raise StorageError(f"the subject index names transaction {position} of block {height}, "
                                   "which is about someone else")
            location = store.tx_location(tx.id)
            if location is None:
                raise StorageError(f"transaction {position} of block {height} has no index record to keep its result")
            txs[position] = make_stub(entry, tx.id, result_row(tx.id, location.status, location.ref))
            purge.stubbed.append((height, position, tx))
        if txs == list(block.txs):
            continue
        if tx_root(txs) != block.header.tx_root:  # never: a stub keeps its leaf hash
            raise StorageError(f"stubbing block {height} would change its transaction root")
        batch[b"B" + height.to_bytes(8, "big")] = Block(block.header, tuple(txs), block.last_commit,
                                                        block.evidence).encode()
    for seq, raw in store.accepted():
        try:
            tx = decode_tx(raw)
        except CustosError:
            continue  # the node drops it at its next start
        if subject_of(tx) == identity:
            purge.accepted.append(seq)
            batch[b"P" + seq.to_bytes(8, "big")] = None
    batch[erasure_key(tag)] = None
    batch[COMPACTION_DUE] = b""
    return purge


def apply_purge(store: ChainStore, purge: Purge) -> None:
    """Write the purge's one synchronous batch, after the tree nodes the store holds in memory
    (the erasing block deleted the child's tree; the compaction that follows a purge is what
    takes deleted records out of the files)."""
    store.flush_tree()
    store.kv.write(purge.batch, sync=True)
