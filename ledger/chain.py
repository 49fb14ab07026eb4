"""Building a block (the proposer) and checking one (everybody else, and the auditor).

Both run the same code: :func:`execute_block` recomputes every header field from the parent
tip, the state and the block's contents, and raises :class:`InvalidBlock` naming the first check
that fails. The commit certificate *of* a block arrives later and is checked by the caller;
the certificate of the *previous* block, carried inside, is checked here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from ledger.block import (
    Block,
    Commit,
    DuplicateVoteEvidence,
    Header,
    commit_hash,
    erased_positions,
    evidence_hash,
    is_stub,
    stub_parts,
    tx_leaf,
)
from ledger.errors import (
    ChainError,
    DecodeError,
    DuplicateTransaction,
    ErasedTransactions,
    InvalidBlock,
    RejectedTransaction,
)
from ledger.merkle import MerkleLog, leaf_hash, root_of
from ledger.rules.validators import validator_set_at
from ledger.state.machine import BlockExecution, StateChanges
from ledger.state.records import ChainInfo
from ledger.state.view import ReadCache, StateReader, StoredState
from ledger.tx.envelope import Transaction, decode_tx


@dataclass(frozen=True, slots=True)
class Tip:
    """The last committed block, as far as building the next one needs."""

    height: int
    hash: bytes
    time: int
    state_root: bytes
    log_size: int
    log_root: bytes


class ChainView(Protocol):
    """What building and checking a block read: a store, or an auditor's replay."""

    @property
    def tip(self) -> Tip: ...

    @property
    def chain(self) -> ChainInfo: ...

    @property
    def state(self) -> StoredState: ...

    def get_log_node(self, level: int, index: int) -> bytes | None: ...

    def has_tx(self, tx_id: bytes) -> bool: ...


@dataclass
class ExecutedBlock:
    """A block together with everything committing it will write."""

    block: Block
    txs: list[Transaction]  # the executed transactions (an erased one's stub is not among them)
    changes: StateChanges
    log_nodes: dict[tuple[int, int], bytes]
    first_log_index: int
    positions: tuple[int, ...] | None = None  # each executed transaction's place; None: 0, 1, ...
    erased: tuple[tuple[int, bytes, bytes], ...] = ()  # (place, transaction id, result row) of each stub

    @property
    def hash(self) -> bytes:
        return self.block.hash

    def position_of(self, i: int) -> int:
        """The place in the block of the ``i``-th executed transaction."""
        return i if self.positions is None else self.positions[i]

    def entries(self) -> list[Transaction | None]:
        """Every place of the block: its transaction, or None for an erased one's stub."""
        out: list[Transaction | None] = [None] * len(self.block.txs)
        for i, tx in enumerate(self.txs):
            out[self.position_of(i)] = tx
        return out

    @property
    def height(self) -> int:
        return self.block.header.height


def _fail(check: str, message: str, height: int, expected: object = None, found: object = None,
          obj: str = "header") -> InvalidBlock:
    return InvalidBlock(check, message, height=height, obj=obj, expected=expected, found=found)


def build_block(
    view: ChainView,
    candidates: Iterable[Transaction],
    *,
    time: int,
    proposer: bytes,
    last_commit: Commit | None,
    evidence: Iterable[DuplicateVoteEvidence] = (),
) -> tuple[ExecutedBlock, list[tuple[Transaction, RejectedTransaction]]]:
    """Propose the next block from verified candidates; returns it and the rejected ones."""
    tip, chain = view.tip, view.chain
    height = tip.height + 1
    if time <= tip.time:
        time = tip.time + 1
    execution = BlockExecution(ReadCache(view.state), chain, height, time)
    params = execution.chain.params  # as in force at this height
    good_evidence: list[DuplicateVoteEvidence] = []
    for ev in evidence:
        if len(good_evidence) >= 16:
            break
        try:
            execution.punish(ev)
        except RejectedTransaction:
            continue  # already punished, too old, or never valid: leave it out
        good_evidence.append(ev)
    execution.expire()
    included: list[Transaction] = []
    rejected: list[tuple[Transaction, RejectedTransaction]] = []
    size = 0
    for tx in candidates:
        if len(included) >= params.max_block_txs:
            break
        if size + len(tx.raw) > params.max_block_bytes - 64 * 1024:
            break
        if view.has_tx(tx.id):
            rejected.append((tx, DuplicateTransaction("already committed")))
            continue
        try:
            execution.apply(tx)
        except RejectedTransaction as exc:
            rejected.append((tx, exc))
            continue
        included.append(tx)
        size += len(tx.raw)
    changes = execution.finish()
    log = MerkleLog(view.get_log_node, tip.log_size)
    leaves = [leaf_hash(tx.raw) for tx in included]  # the block's transaction root and the log's
    for leaf in leaves:
        log.append(leaf)
    raws = tuple(tx.raw for tx in included)
    header = Header(
        version=changes.version,
        chain_id=chain.chain_id,
        height=height,
        time=time,
        prev_hash=tip.hash,
        tx_root=root_of(leaves),
        tx_count=len(raws),
        state_root=changes.state_root,
        results_hash=changes.results_hash,
        log_size=log.size,
        log_root=log.root(),
        validators_hash=changes.validators.hash,
        next_validators_hash=changes.next_validators.hash,
        proposer=proposer,
        last_commit_hash=commit_hash(last_commit),
        evidence_hash=evidence_hash(good_evidence),
    )
    block = Block(header=header, txs=raws, last_commit=last_commit, evidence=tuple(good_evidence))
    return ExecutedBlock(block, included, changes, log.take_pending(), tip.log_size), rejected


def execute_block(
    view: ChainView,
    block: Block,
    *,
    verified: Callable[[Transaction], bool] | None = None,
    verify_signatures: bool = True,
    slots: Mapping[bytes, bytes | None] | None = None,
    known: Callable[[bytes], Transaction | None] | None = None,
) -> ExecutedBlock:
    """Check every field of ``block`` against the parent tip and re-execute it.

    ``slots`` are the block's recorded slot changes (child tag -> value; ``ChainStore.slots``),
    for re-executing committed history that may hold erased transactions: the stubs are skipped
    and the slots of children this executor has no records of are taken from ``slots``; the
    certified state root checks them. Validating a new proposal passes none.

    ``verified(tx)`` may say a transaction's signatures were already checked (the mempool did);
    ``known(raw)`` may hand over the transaction with exactly these bytes, decoded and with its
    signatures checked (the mempool admitted it), so it is neither decoded nor verified again;
    ``verify_signatures=False`` skips signature checks entirely (an auditor that verified them
    in parallel beforehand).
    """
    tip, chain = view.tip, view.chain
    h = block.header
    height = tip.height + 1
    # Rule: the block extends the tip of this chain.
    if h.chain_id != chain.chain_id:
        raise _fail("chain-id", "block of another chain", height, chain.chain_id, h.chain_id)
    if h.height != height:
        raise _fail("height", "block does not follow the tip", height, height, h.height)
    if h.prev_hash != tip.hash:
        raise _fail("prev-hash", "block does not link to the previous block", height, tip.hash, h.prev_hash)
    if h.time <= tip.time:
        raise _fail("time", "block time does not increase", height, f"> {tip.time}", h.time)
    # Rule: the proposer and the signers belong to the validator set in force.
    validators = validator_set_at(view.state, height)
    if h.validators_hash != validators.hash:
        raise _fail("validators-hash", "wrong validator set", height, validators.hash, h.validators_hash)
    if h.proposer not in validators:
        raise _fail("proposer", "proposer is not a validator at this height", height, None, h.proposer)
    # Rule: the previous block's commit certificate is carried and sufficient.
    check_last_commit(view.state, chain.chain_id, block, tip, verify_signatures=verify_signatures)
    if h.last_commit_hash != commit_hash(block.last_commit):
        raise _fail("last-commit-hash", "header does not match the carried commit", height,
                    commit_hash(block.last_commit), h.last_commit_hash)
    if h.evidence_hash != evidence_hash(block.evidence):
        raise _fail("evidence-hash", "header does not match the carried evidence", height,
                    evidence_hash(block.evidence), h.evidence_hash)
    execution = BlockExecution(ReadCache(view.state), chain, height, h.time, recorded_slots=slots)
    # Rule: the block follows the protocol version in force at its height.
    if h.version != execution.version:
        raise _fail("version", "block follows another protocol version", height, execution.version, h.version)
    # Rule: the transaction list is bounded and matches its root.
    params = execution.chain.params
    if h.tx_count != len(block.txs):
        raise _fail("tx-count", "header counts a different number of transactions", height, len(block.txs), h.tx_count)
    if len(block.txs) > params.max_block_txs or sum(map(len, block.txs)) > params.max_block_bytes:
        raise _fail("block-size", "block exceeds the size limits", height, obj="block")
    leaves = [tx_leaf(raw) for raw in block.txs]  # the block's transaction root and the log's
    root = root_of(leaves)
    if h.tx_root != root:
        raise _fail("tx-root", "transaction root does not match the transactions", height, root, h.tx_root)
    # Rule: only whole transactions execute; a stored block's stubs of erased ones stand for
    # theirs only where the block's recorded slot changes stand for the erased children's records.
    erased = erased_positions(block.txs)
    if erased and slots is None:
        raise ErasedTransactions(height, erased)
    # Re-execute: evidence, expiries, then every transaction.
    try:
        execution.begin(block.evidence)
    except RejectedTransaction as exc:
        raise _fail("evidence", exc.diagnostics(), height, obj="evidence") from None
    txs, positions, stubs = [], [], []
    for i, raw in enumerate(block.txs):
        where = f"transaction {i}"
        if is_stub(raw):
            _, stub_id, row = stub_parts(raw)
            execution.skip_erased(row, stub_id)
            stubs.append((i, stub_id, row))
            continue
        tx = known(raw) if known is not None else None
        if tx is None:
            try:
                tx = decode_tx(raw)
            except DecodeError as exc:
                raise _fail("tx-encoding", str(exc), height, obj=where) from None
            if verify_signatures and not (verified is not None and verified(tx)):
                bad = tx.bad_signatures(chain.chain_id)
                if bad:
                    raise _fail("tx-signature", f"signature of {bad[0].hex()[:16]} does not verify", height,
                                obj=f"{where} ({tx.id.hex()[:16]})")
        if view.has_tx(tx.id):
            raise _fail("tx-duplicate", "transaction was committed before", height, obj=where, found=tx.id)
        try:
            execution.apply(tx)
        except RejectedTransaction as exc:
            raise _fail("tx-rule", exc.diagnostics(), height, obj=f"{where} ({tx.kind} {tx.id.hex()[:16]})") from None
        txs.append(tx)
        positions.append(i)
    changes = execution.finish()
    # Rule: every root in the header is what re-execution gives.
    log = MerkleLog(view.get_log_node, tip.log_size)
    for leaf in leaves:
        log.append(leaf)
    checks = (
        ("log-size", tip.log_size + len(block.txs), h.log_size),
        ("log-root", log.root(), h.log_root),
        ("state-root", changes.state_root, h.state_root),
        ("results-hash", changes.results_hash, h.results_hash),
        ("next-validators-hash", changes.next_validators.hash, h.next_validators_hash),
    )
    for check, expected, found in checks:
        if expected != found:
            raise _fail(check, "header disagrees with re-execution", height, expected, found)
    return ExecutedBlock(block, txs, changes, log.take_pending(), tip.log_size,
                         tuple(positions) if stubs else None, tuple(stubs))


def check_last_commit(state: StateReader, chain_id: str, block: Block, tip: Tip, *,
                      verify_signatures: bool = True) -> None:
    height = block.header.height
    if height == 1:
        if block.last_commit is not None:
            raise _fail("last-commit", "the first block carries no commit", height, obj="last_commit")
        return
    if block.last_commit is None:
        raise _fail("last-commit", "missing the previous block's commit", height, obj="last_commit")
    try:
        block.last_commit.check(chain_id, validator_set_at(state, height - 1), height=height - 1,
                                block=tip.hash, verify_signatures=verify_signatures)
    except ChainError as exc:
        raise InvalidBlock(exc.check, str(exc), height=height, obj="last_commit",
                           expected=exc.expected, found=exc.found) from None

