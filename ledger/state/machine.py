"""Executing one block against the state: begin-block rules, transactions, the new roots.

The order is fixed: evidence is punished first, then pending requests whose deadline is before
the block time expire, then the transactions apply in block order. Each transaction runs in its
own overlay; a rejected one leaves no trace (the proposer drops it, a validator refuses a block
that contains it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from ledger.block import DuplicateVoteEvidence
from ledger.encoding import pack
from ledger.errors import DuplicateTransaction, KindNotInProtocol, RejectedTransaction
from ledger.hashing import tagged_hash
from ledger.params import PARAMS
from ledger.protocol import KINDS, TX_INDEX_VERSION, protocol_at, require_supported
from ledger.rules import RULES
from ledger.rules.context import BlockEnv, Ctx, Event, Outcome
from ledger.rules.crossing import expire_requests
from ledger.rules.erasure import erase_due
from ledger.rules.validators import punish_equivocation, validator_set_at
from ledger.state import txindex
from ledger.state.authenticated import TreeUpdate, commit
from ledger.state.records import (
    CHAIN_INFO,
    K_CHAIN,
    K_TX_LOG,
    TX_LOG,
    ChainInfo,
    k_child_tag,
    k_erased,
    k_params_at,
    load,
    store,
)
from ledger.state.view import Overlay, StateReader, StoredState
from ledger.tx.envelope import Transaction
from ledger.validators import ValidatorSet

TAG_RESULTS = b"custos/results"
TAG_RESULT_ROW = b"custos/result"


def chain_info_of(state: StateReader) -> ChainInfo:
    info = load(state, K_CHAIN, CHAIN_INFO)
    if info is None:
        raise RejectedTransaction("the state has no chain information (not initialised from genesis)")
    return info


@dataclass(frozen=True, slots=True)
class TxResult:
    tx_id: bytes
    outcome: Outcome


def result_row(tx_id: bytes, status: str, ref: bytes | None) -> bytes:
    """The hash of one transaction's result; an erased transaction's stub keeps it."""
    # ids and refs are bytes, statuses short text: canonical as packed
    return tagged_hash(TAG_RESULT_ROW, pack([tx_id, status, ref]))


def results_hash(rows: list[bytes]) -> bytes:
    """The header's results hash: over the result rows of every position of the block."""
    return tagged_hash(TAG_RESULTS, b"".join(rows))


@dataclass
class StateChanges:
    """What a block did to the state, ready to be checked against a header and stored."""

    writes: list[tuple[bytes, bytes | None]]
    state_root: bytes
    tree_writes: dict[bytes, bytes | None]  # the authenticated state's tree nodes
    tree_updates: tuple[TreeUpdate, ...]  # the trees' changes those nodes come from, in order
    slots: tuple[tuple[bytes, bytes | None], ...]  # children's slots this block changed
    followed_slots: tuple[bytes, ...]  # of those, the ones taken from the recorded changes
    results: list[TxResult]
    results_hash: bytes
    events: list[Event]
    punished: list[bytes]
    version: int  # the protocol version the block was executed under
    validators: ValidatorSet  # the set that signs this block
    next_validators: ValidatorSet  # the set that signs the next block


@dataclass
class BlockExecution:
    """Apply one block's contents in order; ``finish`` yields the :class:`StateChanges`."""

    base: StoredState
    chain: ChainInfo
    height: int
    time: int
    # the block's recorded slot changes, when re-executing committed history (ledger.chain.execute_block)
    recorded_slots: Mapping[bytes, bytes | None] | None = None
    overlay: Overlay = field(init=False)
    env: BlockEnv = field(init=False)
    version: int = field(init=False)
    _kinds: frozenset[str] = field(init=False)
    results: list[TxResult] = field(default_factory=list)
    rows: list[bytes] = field(default_factory=list)  # result rows of every position, stubs included
    ids: list[bytes] = field(default_factory=list)  # transaction ids of every position, stubs included
    events: list[Event] = field(default_factory=list)
    punished: list[bytes] = field(default_factory=list)
    _seen: set[bytes] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.overlay = Overlay(self.base)
        # Begin-block rule: parameters scheduled for this height take effect before anything runs.
        scheduled = self.overlay.get(k_params_at(self.height))
        if scheduled is not None:
            self.chain = replace(self.chain, params=PARAMS.decode(scheduled))
            store(self.overlay, K_CHAIN, CHAIN_INFO, self.chain)
        self.version = protocol_at(self.overlay, self.height)
        require_supported(self.version, self.height)
        self._kinds = KINDS[self.version]
        self.env = BlockEnv(self.chain.chain_id, self.height, self.time, self.chain.params,
                            certified=self.recorded_slots is not None, version=self.version)

    def begin(self, evidence: tuple[DuplicateVoteEvidence, ...] | list[DuplicateVoteEvidence]) -> None:
        """Begin-block rules: punish equivocation, expire overdue requests, then erase the
        records of children whose retention period is over.

        Raises :class:`ledger.errors.InvalidEvidence` for evidence that proves nothing.
        """
        for ev in evidence:
            self.punish(ev)
        self.expire()

    def punish(self, ev: DuplicateVoteEvidence) -> None:
        """Slash and jail an equivocating validator; on invalid evidence nothing changes."""
        p = self.chain.params
        child = Overlay(self.overlay)
        who = punish_equivocation(child, self.chain.chain_id, self.height, p.validator_delay,
                                  p.slash_bps, p.evidence_max_age, ev)
        child.merge_into(self.overlay)
        self.punished.append(who)

    def expire(self) -> None:
        self.events.extend(expire_requests(self.overlay, self.height, self.time))
        self.events.extend(erase_due(self.overlay, self.height, self.time))

    def apply(self, tx: Transaction) -> Outcome:
        """Apply one transaction whose signatures were verified; on rejection nothing changes."""
        if tx.id in self._seen:
            raise DuplicateTransaction("the same transaction twice in one block")
        if tx.kind not in self._kinds:
            raise KindNotInProtocol(f"{tx.kind} is not part of protocol version {self.version}, in force at "
                                    f"height {self.height}")
        child = Overlay(self.overlay)
        ctx = Ctx(self.env, child, tx)
        outcome = RULES[tx.kind](ctx, tx.body)
        child.merge_into(self.overlay)
        self._seen.add(tx.id)
        self.results.append(TxResult(tx.id, outcome))
        self.rows.append(result_row(tx.id, outcome.status, outcome.ref))
        self.ids.append(tx.id)
        self.events.extend(ctx.events)
        return outcome

    def skip_erased(self, row: bytes, tx_id: bytes) -> None:
        """An erased transaction's place in the block: its result row and its id count (the
        results hash, the transaction-id log), nothing executes."""
        self.rows.append(row)
        self.ids.append(tx_id)

    def _index_transactions(self) -> None:
        """End-block rule (protocol 4 on): the block's entries join the transaction-id log."""
        log = load(self.overlay, K_TX_LOG, TX_LOG) or txindex.EMPTY
        leaves = (txindex.entry_leaf(tx_id, self.height, position, row)
                  for position, (tx_id, row) in enumerate(zip(self.ids, self.rows, strict=True)))
        store(self.overlay, K_TX_LOG, TX_LOG, txindex.appended(log, leaves))

    def _followed_slots(self) -> dict[bytes, bytes | None]:
        """The recorded slot changes of children this executor holds no records of, even after
        the block: children erased before it got them. Every other slot it computes itself."""
        state = self.overlay
        return {tag: value for tag, value in (self.recorded_slots or {}).items()
                if state.get(k_child_tag(tag)) is None and state.get(k_erased(tag)) is None}

    def finish(self) -> StateChanges:
        if self.version >= TX_INDEX_VERSION and self.ids:
            self._index_transactions()
        writes = self.overlay.sorted_writes()
        followed = self._followed_slots()
        committed = commit(self.base.tree_node, writes, followed)
        return StateChanges(
            writes=writes,
            state_root=committed.root,
            tree_writes=committed.node_writes,
            tree_updates=committed.updates,
            slots=committed.slots,
            followed_slots=tuple(sorted(followed)),
            results=self.results,
            results_hash=results_hash(self.rows),
            events=self.events,
            punished=self.punished,
            version=self.version,
            validators=validator_set_at(self.overlay, self.height),
            next_validators=validator_set_at(self.overlay, self.height + 1),
        )
