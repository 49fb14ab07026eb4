"""The mempool: transactions admitted but not yet committed, in arrival order.

Admission checks what can be checked before a block: the bytes decode canonically, every
signature verifies for this chain, and the transaction is not committed already. A client's
submission must also apply cleanly on top of the committed state plus every client submission
admitted before it (the "check state"), so the client hears of a broken rule at once. After
each commit the check state is rebuilt and the remaining client submissions are re-checked in
order; those that no longer apply are dropped and reported.

Transactions gossiped by peers were checked by the node their client reached; here they get the
signature check only. A proposal executes every transaction anyway and leaves out those that
fail, so an unchecked one can cost a wasted execution, never a wrong block.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ledger.chain import ChainView
from ledger.errors import BadSignature, DuplicateTransaction, RejectedTransaction
from ledger.state.machine import BlockExecution
from ledger.tx.envelope import Transaction


class MempoolFull(RejectedTransaction):
    """The node holds as many pending transactions as it may; try again shortly."""

    rule = "mempool-full"


@dataclass(slots=True)
class _Entry:
    tx: Transaction
    received_ms: int
    checked: bool  # applied to the check state (a client's submission)


class Mempool:
    def __init__(self, view: ChainView, clock_ms: Callable[[], int], *, max_txs: int = 100_000,
                 max_bytes: int = 256 * 1024 * 1024) -> None:
        self._view = view
        self._clock = clock_ms
        self.max_txs = max_txs
        self.max_bytes = max_bytes
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self._bytes = 0
        self._check = self._fresh_check_state()

    def _fresh_check_state(self) -> BlockExecution:
        tip = self._view.tip
        time = max(self._clock(), tip.time + 1)
        return BlockExecution(self._view.state, self._view.chain, tip.height + 1, time)

    # ---- queries
    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, tx_id: bytes) -> bool:
        return tx_id in self._entries

    def get(self, tx_id: bytes) -> Transaction | None:
        entry = self._entries.get(tx_id)
        return None if entry is None else entry.tx

    def is_verified(self, raw: bytes, tx_id: bytes) -> bool:
        """True if these exact bytes were admitted here (their signatures were checked)."""
        entry = self._entries.get(tx_id)
        return entry is not None and entry.tx.raw == raw

    def reap(self, max_txs: int | None = None) -> list[Transaction]:
        """Transactions in arrival order, for a proposal."""
        out: list[Transaction] = []
        for entry in self._entries.values():
            if max_txs is not None and len(out) >= max_txs:
                break
            out.append(entry.tx)
        return out

    # ---- admission
    def add(self, tx: Transaction, *, check_rules: bool = True) -> bool:
        """Admit ``tx``; False if it is already here. Raises RejectedTransaction otherwise.

        ``check_rules=False`` (a peer's gossip) skips the check against the state."""
        if tx.id in self._entries:
            return False
        if len(self._entries) >= self.max_txs or self._bytes + len(tx.raw) > self.max_bytes:
            raise MempoolFull(f"the mempool holds {len(self._entries)} transactions; try again shortly")
        if self._view.has_tx(tx.id):
            raise DuplicateTransaction("the transaction is committed already")
        bad = tx.bad_signatures(self._view.chain.chain_id)
        if bad:
            raise BadSignature(f"signature of {bad[0].hex()[:16]} does not verify for chain "
                               f"{self._view.chain.chain_id!r}")
        if check_rules:
            self._check.apply(tx)
        self._entries[tx.id] = _Entry(tx, self._clock(), check_rules)
        self._bytes += len(tx.raw)
        return True

    # ---- after a commit
    def update(self, committed: Iterable[bytes]) -> list[tuple[Transaction, RejectedTransaction]]:
        """Drop committed transactions, rebuild the check state, re-check the rest of the
        clients' submissions in order."""
        for tx_id in committed:
            entry = self._entries.pop(tx_id, None)
            if entry is not None:
                self._bytes -= len(entry.tx.raw)
        self._check = self._fresh_check_state()
        dropped = []
        for tx_id in list(self._entries):
            entry = self._entries[tx_id]
            if not entry.checked:
                continue  # left to the proposal, which drops it if it no longer applies
            try:
                if self._view.has_tx(tx_id):
                    raise DuplicateTransaction("the transaction is committed already")
                self._check.apply(entry.tx)
            except RejectedTransaction as exc:
                del self._entries[tx_id]
                self._bytes -= len(entry.tx.raw)
                dropped.append((entry.tx, exc))
        return dropped

    def remove(self, tx_id: bytes) -> None:
        entry = self._entries.pop(tx_id, None)
        if entry is not None:
            self._bytes -= len(entry.tx.raw)
