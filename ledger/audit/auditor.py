"""The audit: verify a chain from its genesis (or from a checkpoint) without trusting its source.

For every height, in order::

    decode the block (canonical encoding)                         block-encoding
    execute_block: every header field, the carried certificate of
      the previous block against the set in force there, every
      transaction's encoding, signatures and rules, the log, state
      and results roots, the next validator set                     (ledger.chain)
    the block's own certificate against the set in force at it     commit-*
    (data directories) the index records the block wrote           hash-index, tx-index, log-node,
                                                                   subject-index
    (data directories) at the height the store's tree nodes
      stand at, every tree node                                    tree-node

then, at the end, what the source claims about its tip, and for a data directory every state,
index, log and slot record against the auditor's own replay, and the tree journal's entries
against the blocks' tree changes (see :mod:`ledger.audit.records`). An incremental audit first checks that
the chain still holds the audited header at the checkpoint height, and at the end proves with an
RFC 6962 consistency proof that the log it audited is a prefix of today's.

The first failure stops the audit: the report names its height, object, check, and the
expected and found values. A check that cannot be done is listed as such, never skipped quietly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from ledger.audit.findings import AuditFailure, AuditReport, AuditStop, Erasure
from ledger.audit.records import (
    LogHeights,
    check_block_records,
    check_subject_entries,
    check_subject_extras,
    check_tree_journal,
    compare_records,
    compare_tree_nodes,
    holds_legacy_tree_changes,
    tree_base,
    tree_changes_digest,
)
from ledger.audit.replay import ReplayKV, ReplayStore, encoded_locations
from ledger.audit.signatures import Prepared, Verdict, prepare, serial_blocks, verified_blocks
from ledger.audit.source import BlockSource, SourceError, StoreSource
from ledger.chain import ExecutedBlock, execute_block
from ledger.errors import ChainError, CustosError, StorageError
from ledger.genesis import GENESIS, Genesis
from ledger.merkle import MerkleError, verify_consistency
from ledger.privacy.tags import child_tag
from ledger.rules.erasure import EVENT_ERASED, NO_ORDER, RETENTION_BASIS
from ledger.storage.kv import KV
from ledger.tx.bodies import ERASE_BASES, GOV_ERASE

#: the checks of ``execute_block`` and ``Commit.check``, in the order they run
BLOCK_CHECKS = (
    "block-encoding", "chain-id", "height", "prev-hash", "time", "validators-hash", "proposer",
    "last-commit", "last-commit-hash", "evidence-hash", "tx-count", "block-size", "tx-root", "evidence",
    "tx-erased", "tx-encoding", "tx-signature", "tx-duplicate", "tx-rule", "log-size", "log-root", "state-root",
    "results-hash", "next-validators-hash",
)
COMMIT_CHECKS = ("commit-encoding", "commit-height", "commit-block", "commit-order", "commit-signer",
                 "commit-signature", "commit-quorum")

#: a progress callback: (height done, target height, log size done, target log size or None)
Progress = Callable[[int, int, int, int | None], None]


@dataclass(frozen=True)
class CheckpointAnchor:
    """What an incremental audit starts from (see :mod:`ledger.audit.checkpoint`)."""

    height: int
    header_hash: bytes
    log_size: int
    log_root: bytes
    genesis_hash: bytes

    def to_json(self) -> dict:
        return {"height": self.height, "header_hash": self.header_hash.hex(), "log_size": self.log_size,
                "log_root": self.log_root.hex(), "genesis_hash": self.genesis_hash.hex()}


def _stop(height: int | None, obj: str, check: str, message: str, expected=None, found=None) -> AuditStop:
    return AuditStop(AuditFailure(height, obj, check, message, expected, found))


class Auditor:
    """One audit of one source. ``run()`` returns the report; ``replay`` is left open for a
    checkpoint to be written from (the caller closes it)."""

    def __init__(self, source: BlockSource, *, genesis: Genesis | None = None, jobs: int = 1,
                 pool: ProcessPoolExecutor | None = None, progress: Progress | None = None,
                 replay: ReplayStore | None = None, anchor: CheckpointAnchor | None = None,
                 replay_kv: KV | None = None, clock: Callable[[], float] | None = None) -> None:
        """``replay`` and ``anchor`` together make an incremental audit (the replay state the
        checkpoint pinned); otherwise the replay starts from genesis in ``replay_kv``.

        ``jobs`` > 1 verifies signatures ahead of the replay in ``pool`` (``jobs - 1`` worker
        processes, see :func:`node.audit.pool.start_pool`). ``clock`` (seconds), if given,
        times the run for the report."""
        if (replay is None) != (anchor is None):
            raise ValueError("an incremental audit needs both the checkpoint and its replay state")
        if jobs > 1 and pool is None:
            raise ValueError("a parallel audit needs its worker pool")
        self.source = source
        self.pinned = genesis
        self.jobs = max(1, jobs)
        self.pool = pool
        self.progress = progress
        self.replay = replay
        self.anchor = anchor
        self.replay_kv = replay_kv
        self.clock = clock
        self.store = source.kv if isinstance(source, StoreSource) else None
        self.blocks_executed = 0
        # a data directory's tree nodes: the height they stand at (None: the tip), whether they
        # were compared, and the digests of the tree changes its journal must hold
        self._tree_base: int | None = None
        self._tree_nodes_checked = False
        self._journal_digests: dict[int, bytes] = {}
        self._subject_entries = 0

    # ------------------------------------------------------------------ the run
    def run(self) -> AuditReport:
        report = AuditReport(mode="full" if self.anchor is None else "incremental",
                             source=self.source.description, jobs=self.jobs)
        started = self.clock() if self.clock is not None else 0.0
        try:
            self._run(report)
        except AuditStop as stop:
            report.failure = stop.failure
        except StorageError as exc:  # the store could not be read (a damaged table): a finding too
            report.failure = AuditFailure(None, "store", "store-readable", f"the store cannot be read: {exc}")
        finally:
            if self.clock is not None:
                report.seconds = self.clock() - started
            self._erasure_limits(report)
        return report

    @staticmethod
    def _erasure_limits(report: AuditReport) -> None:
        """Say what erasures made impossible to check (their orders are listed in the report)."""
        c = report.counts
        if c.erased_txs:
            blocks = report.erased_blocks
            shown = ", ".join(map(str, blocks[:10])) + (" ..." if len(blocks) > 10 else "")
            report.skipped("erased-transactions",
                           f"{c.erased_txs} transaction(s) of children erased by order (blocks {shown}) were not "
                           "re-executed and their signatures not checked: only stubs remain (leaf hash, id, result "
                           "row), which the transaction roots, the log and the results hashes still cover")
        if c.followed_slots:
            report.skipped("erased-children-state",
                           f"{c.followed_slots} change(s) of erased children's state were taken from the recorded "
                           "slot changes: the certified state roots check them, re-execution cannot")

    @property
    def _replaying(self) -> ReplayStore:
        """The replay under way: :meth:`_run` sets it before any block is read."""
        if self.replay is None:
            raise RuntimeError("no replay under way")
        return self.replay

    def _run(self, report: AuditReport) -> None:
        genesis = self._genesis(report)
        if self.anchor is not None:
            assert self.replay is not None
            report.checkpoint_in = self.anchor.to_json()
            self._check_anchor_genesis(genesis)
        else:
            self.replay = ReplayStore.from_genesis(self.replay_kv if self.replay_kv is not None else ReplayKV(),
                                                   genesis)
        replay = self.replay
        target = self.source.tip_height()
        report.target_height = target
        report.start_height = replay.tip.height + 1
        self._record_tip(report)
        if self.anchor is not None:
            self._check_anchor_header(report, target)
        log_heights = LogHeights(replay.tip.log_size, replay.tip.height)
        if self.store is not None:
            self._tree_base = tree_base(self.store)
            self._tree_nodes_at(report)
        self._blocks(report, replay.tip.height + 1, target, log_heights)
        self._claimed_tip(report, target)
        if self.store is not None:
            self._store(report, log_heights)
        else:
            for check in ("hash-index", "tx-index", "log-node", "state", "tip-record", "tx-order", "slot-record",
                          "subject-index", "tree-node"):
                report.skipped(check, "only a node's data directory holds these records; the API does not serve "
                                      "them (audit the data directory to check them)")
        if self.anchor is not None:
            self._consistency(report)

    # ------------------------------------------------------------------ genesis
    def _genesis(self, report: AuditReport) -> Genesis:
        raw = self.source.genesis_bytes()
        report.did("genesis-encoding")
        try:
            genesis = GENESIS.decode(raw)
        except CustosError as exc:
            raise _stop(0, "genesis", "genesis-encoding", f"the source's genesis does not decode: {exc}") from None
        report.chain_id, report.genesis_hash = genesis.chain_id, genesis.hash
        if self.pinned is None:
            report.skipped("genesis-hash", "no genesis was pinned (--genesis): compare the genesis hash of this "
                                           "report with the published one")
            return genesis
        report.genesis_pinned = True
        # the trust anchor is the pinned genesis, whatever the source runs (a report naming the
        # source's hash beside "pinned" would vouch for the very genesis that failed the check)
        report.chain_id, report.genesis_hash = self.pinned.chain_id, self.pinned.hash
        report.did("genesis-hash")
        if genesis.hash != self.pinned.hash:
            raise _stop(0, "genesis", "genesis-hash", "the source runs another genesis than the pinned one",
                        self.pinned.hash, genesis.hash)
        return self.pinned

    def _check_anchor_genesis(self, genesis: Genesis) -> None:
        assert self.anchor is not None and self.replay is not None
        if genesis.hash != self.anchor.genesis_hash or self.replay.genesis.hash != self.anchor.genesis_hash:
            raise _stop(0, "genesis", "checkpoint-genesis", "the source runs another chain than the one audited",
                        self.anchor.genesis_hash, genesis.hash)

    def _check_anchor_header(self, report: AuditReport, target: int) -> None:
        """The chain still holds, at the checkpoint height, the header the last audit checked."""
        anchor = self.anchor
        assert anchor is not None
        report.did("checkpoint-height")
        if target < anchor.height:
            raise _stop(anchor.height, "chain", "checkpoint-height",
                        "the source's chain is shorter than the one audited: history was cut",
                        f">= {anchor.height}", target)
        report.did("checkpoint-header")
        if anchor.height == 0:
            return
        blocks = self.source.blocks(anchor.height, anchor.height)
        try:
            _, raw, _ = next(iter(blocks))
        finally:
            close = getattr(blocks, "close", None)
            if close is not None:
                close()
        if raw is None:
            raise _stop(anchor.height, "block", "checkpoint-header", "the source no longer has the audited block",
                        anchor.header_hash, "absent")
        prepared = prepare(anchor.height, raw, None)
        if prepared.block is None:
            raise _stop(anchor.height, "block", "checkpoint-header",
                        f"the block at the checkpoint height does not decode: {prepared.block_error}",
                        anchor.header_hash, None)
        if prepared.block.hash != anchor.header_hash or prepared.block.height != anchor.height:
            raise _stop(anchor.height, "header", "checkpoint-header",
                        "the chain no longer holds the audited header: history was rewritten behind the checkpoint",
                        anchor.header_hash, prepared.block.hash)

    # ------------------------------------------------------------------ blocks
    def _blocks(self, report: AuditReport, start: int, target: int, log_heights: LogHeights) -> None:
        for check in BLOCK_CHECKS + COMMIT_CHECKS:
            report.did(check)
        if self.store is not None:
            for check in ("hash-index", "tx-index", "log-node"):
                report.did(check)
        if start > target:
            return
        items = self.source.blocks(start, target)
        stream: Iterator[tuple[Prepared, Verdict | None]]
        if self.pool is not None and self.jobs > 1:
            # jobs processes in all: this one replays while jobs - 1 workers verify signatures ahead
            stream = verified_blocks(items, self._replaying.chain.chain_id, self.pool, self.jobs - 1)
        else:
            stream = serial_blocks(items)
        target_log = self.source.claimed_tip().get("log_size")
        try:
            for prepared, verdict in stream:
                executed = self._block(report, prepared, verdict)
                log_heights.add(executed.height, executed.block.header.log_size)
                if self.progress is not None:
                    self.progress(executed.height, target, executed.block.header.log_size,
                                  target_log if isinstance(target_log, int) else None)
            if report.checked_height < target:
                raise _stop(report.checked_height + 1, "block", "block-missing",
                            "the source ended before its claimed tip", None, None)
        finally:
            for it in (stream, items):
                close = getattr(it, "close", None)
                if close is not None:
                    close()

    def _block(self, report: AuditReport, p: Prepared, verdict: Verdict | None) -> ExecutedBlock:
        replay = self.replay
        assert replay is not None
        h = p.height
        if p.block_raw is None:
            raise _stop(h, "block", "block-missing", "the source does not have this block")
        if p.block is None:
            raise _stop(h, "block", "block-encoding", f"the block does not decode: {p.block_error}")
        block = p.block
        # Signatures: the workers' word is taken only where every signature verified.
        if verdict is None:
            verify, verified = True, None
        elif verdict.bad_txs or not verdict.last_commit_ok:
            bad = {block.txs[i] for i in verdict.bad_txs}
            verify, verified = True, (lambda tx: tx.raw not in bad)
        else:
            verify, verified = False, None
        try:
            slots = self.source.slots(h)
            executed = execute_block(replay, block, verified=verified, verify_signatures=verify, slots=slots)
        except ChainError as exc:
            raise AuditStop(AuditFailure.from_error(exc, height=h)) from None
        except CustosError as exc:
            raise _stop(h, "block", "execution", f"re-execution failed: {exc.diagnostics()}") from None
        # The block's own certificate, against the set in force at its height.
        if p.commit_raw is None:
            raise _stop(h, "commit", "commit-missing", "the source has no commit certificate for this block")
        if p.commit is None:
            raise _stop(h, "commit", "commit-encoding", f"the commit certificate does not decode: {p.commit_error}")
        try:
            p.commit.check(replay.chain.chain_id, executed.changes.validators, height=h, block=block.hash,
                           verify_signatures=verdict is None or not verdict.commit_ok)
        except ChainError as exc:
            raise AuditStop(AuditFailure.from_error(exc, height=h, obj="commit")) from None
        locations = encoded_locations(executed)
        if self.store is not None:
            report.counts.store_entries += check_block_records(self.store, executed, locations)
            subjects = check_subject_entries(self.store, executed)
            self._subject_entries += subjects
            report.counts.store_entries += subjects
            if self._tree_base is not None and h > self._tree_base:
                self._journal_digests[h] = tree_changes_digest(executed)
        replay.record(executed, locations)
        if self.store is not None:
            self._tree_nodes_at(report)
        self.blocks_executed += 1
        self._count(report, executed, p)
        self._erasures(report, executed, slots)
        report.checked_height = h
        self._record_tip(report)
        return executed

    @staticmethod
    def _count(report: AuditReport, executed: ExecutedBlock, p: Prepared) -> None:
        c = report.counts
        c.blocks += 1
        c.txs += len(executed.txs)
        c.tx_signatures += sum(len(tx.sigs) for tx in executed.txs)
        c.commits += 1
        assert p.commit is not None
        c.commit_signatures += len(p.commit.signatures)
        last = executed.block.last_commit
        if last is not None:
            c.carried_commits += 1
            c.commit_signatures += len(last.signatures)
        c.evidence += len(executed.block.evidence)

    def _erasures(self, report: AuditReport, executed: ExecutedBlock, slots: dict[bytes, bytes | None]) -> None:
        """What erasure left unchecked in this block, and the erasures it ordered."""
        if executed.erased:
            report.counts.erased_txs += len(executed.erased)
            report.erased_blocks.append(executed.height)
        for tx in executed.txs:
            if tx.kind == GOV_ERASE:
                body = tx.body
                report.erasures.append(Erasure(executed.height, body.child, body.order, ERASE_BASES[body.basis]))
        for event in executed.changes.events:
            if event.kind == EVENT_ERASED:  # retention ended (this audit still held the records)
                report.erasures.append(Erasure(executed.height, child_tag(event.identity), NO_ORDER,
                                               ERASE_BASES[RETENTION_BASIS]))
        report.counts.followed_slots += len(executed.changes.followed_slots)

    def _record_tip(self, report: AuditReport) -> None:
        tip = self._replaying.tip
        report.checked_height = tip.height
        report.tip_hash, report.tip_state_root = tip.hash, tip.state_root
        report.tip_log_size, report.tip_log_root = tip.log_size, tip.log_root

    # ------------------------------------------------------------------ the end
    def _claimed_tip(self, report: AuditReport, target: int) -> None:
        """What the source says about its tip must be what re-execution reached."""
        check = self.source.tip_check
        report.did(check)
        if isinstance(self.source, StoreSource) and self.source.tip_error is not None:
            raise _stop(target, "tip record", check, self.source.tip_error, None, self.source.tip_record)
        tip = self._replaying.tip
        mine = {"height": tip.height, "hash": tip.hash, "time": tip.time, "state_root": tip.state_root,
                "log_size": tip.log_size, "log_root": tip.log_root}
        claimed = self.source.claimed_tip()
        for name, value in mine.items():
            if name in claimed and claimed[name] != value:
                raise _stop(target, f"{'tip record' if check == 'tip-record' else 'node status'} ({name})", check,
                            f"the source's claimed tip {name} is not what re-execution reached", value, claimed[name])
        if isinstance(self.source, StoreSource):
            report.did("extra-block")
            beyond = self.source.blocks_beyond(target)
            if beyond:
                raise _stop(beyond[0] if beyond[0] > 0 else target + 1, "block", "extra-block",
                            "the store holds blocks or commits beyond its tip", None, f"heights {beyond[:5]}")

    def _tree_nodes_at(self, report: AuditReport) -> None:
        """Compare the store's tree nodes with the replay's once the replay stands where they do:
        at the height ``J`` names, or at the tip when the store holds its nodes whole."""
        assert self.store is not None
        replay = self._replaying
        stands_at = self._tree_base if self._tree_base is not None else self.source.tip_height()
        if self._tree_nodes_checked or replay.tip.height != stands_at:
            return
        if self._tree_base is None and holds_legacy_tree_changes(self.store):
            return  # said at the end
        report.counts.store_entries += compare_tree_nodes(self.store, replay)
        self._tree_nodes_checked = True

    def _store(self, report: AuditReport, log_heights: LogHeights) -> None:
        assert self.store is not None and self.replay is not None
        report.did("state")
        report.counts.store_entries += compare_records(self.store, self.replay, log_heights)
        if next(iter(self.store.iterate(b"P", b"Q")), None) is not None:
            report.skipped("accepted-transactions", "the store's P records are the node's durable mempool: "
                                                    "accepted, not committed, and vouched for by no block")
        for check in ("tx-order", "slot-record", "subject-index"):
            report.did(check)
        check_subject_extras(self.store, report.start_height, self._subject_entries)
        self._tree_nodes_at(report)
        if self._tree_base is not None:
            self._tree_journal(report)
        if self._tree_nodes_checked:
            report.did("tree-node")
        elif self._tree_base is None:
            report.skipped("tree-node", "the store keeps blocks' tree changes in the layout before the tree "
                                        "journal (W records): start the node once, which writes its tree nodes, "
                                        "and audit again")
        else:
            report.skipped("tree-node", f"the store's tree nodes stand at height {self._tree_base}, before this "
                                        f"audit's first block {report.start_height}: audit from genesis or from an "
                                        "earlier checkpoint to compare them")

    def _tree_journal(self, report: AuditReport) -> None:
        """The journal a restart would rebuild the tree nodes from, against the blocks' changes."""
        assert isinstance(self.source, StoreSource) and self._tree_base is not None  # the only source with a store
        if self._tree_base + 1 < report.start_height:
            report.skipped("tree-journal", "the journal holds tree changes of blocks before this audit's first")
            return
        try:
            entries = self.source.tree_journal()
        except StorageError as exc:
            raise _stop(self._tree_base + 1, "tree journal", "tree-journal",
                        f"the tree journal cannot be read: {exc}") from None
        if entries is None:
            report.skipped("tree-journal", "this source reads the store's records, not the files beside them")
            return
        report.did("tree-journal")
        report.counts.store_entries += check_tree_journal(entries, self._tree_base, self._replaying.tip.height,
                                                          self._journal_digests)

    def _consistency(self, report: AuditReport) -> None:
        """RFC 6962: the log the checkpoint audited is a prefix of the log at the tip."""
        anchor, tip = self.anchor, self._replaying.tip
        assert anchor is not None
        report.did("log-consistency")
        try:
            proof = self.source.consistency_proof(anchor.log_size, tip.log_size)
        except (MerkleError, StorageError, SourceError) as exc:  # a node that cannot be reached is no finding
            raise _stop(tip.height, "log", "log-consistency", f"the source gave no consistency proof: {exc}") from None
        if not verify_consistency(anchor.log_size, tip.log_size, anchor.log_root, tip.log_root, proof):
            raise _stop(tip.height, "log", "log-consistency",
                        f"the consistency proof from log size {anchor.log_size} to {tip.log_size} does not verify",
                        anchor.log_root, tip.log_root)
