"""The mempool: transactions admitted but not yet committed, in arrival order.

Admission checks what can be checked before a block: the bytes decode canonically, every
signature verifies for this chain, and the transaction is not committed already. A client's
submission must also apply cleanly on top of the committed state plus every client submission
admitted before it (the "check state"), so the client hears of a broken rule at once.

After each commit the check state is rebuilt on the new tip. Running every remaining client
submission's rules again would make each block dearer the longer the backlog (a block of 2,000
re-executes every pending transaction behind it), so the check state records what each
transaction read (keys and scanned ranges) and wrote. A transaction is re-checked only if the
block, or a pending transaction removed or re-checked before it, wrote a key it read; the
others' recorded writes are replayed as they were. Those that no longer apply are dropped and
reported. Rules that depend on the block time alone (an event growing too old) are left to the
next proposal, which leaves out whatever fails and reports it the same way.

Transactions gossiped by peers were checked by the node their client reached; here they get the
signature check only. A proposal executes every transaction anyway and leaves out those that
fail, so an unchecked one can cost a wasted execution, never a wrong block.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from ledger.chain import ChainView
from ledger.errors import BadSignature, DuplicateTransaction, RejectedTransaction
from ledger.state.machine import BlockExecution
from ledger.state.view import Overlay
from ledger.tx.envelope import Transaction


class MempoolFull(RejectedTransaction):
    """The node holds as many pending transactions as it may; try again shortly."""

    rule = "mempool-full"


@dataclass(slots=True)
class Footprint:
    """What one transaction read from, and wrote to, the check state."""

    reads: set[bytes] = field(default_factory=set)
    ranges: list[tuple[bytes, bytes]] = field(default_factory=list)  # scans, [start, stop)
    writes: dict[bytes, bytes | None] = field(default_factory=dict)

    def touched_by(self, changed: set[bytes], ordered: list[bytes]) -> bool:
        """True if a key in ``changed`` (``ordered``: the same keys, sorted) is one this
        transaction read, or lies in a range it scanned."""
        if not self.reads.isdisjoint(changed):
            return True
        for start, stop in self.ranges:
            i = bisect.bisect_left(ordered, start)
            if i < len(ordered) and ordered[i] < stop:
                return True
        return False


class _Recorder(Overlay):
    """The check state's top layer: notes the reads and writes of the transaction applied now."""

    __slots__ = ("current",)

    def __init__(self, base: Overlay) -> None:
        super().__init__(base)
        self.current: Footprint | None = None

    def get(self, key: bytes) -> bytes | None:
        if self.current is not None:
            self.current.reads.add(key)
        return super().get(key)

    def scan(self, start: bytes, stop: bytes) -> Iterator[tuple[bytes, bytes]]:
        if self.current is not None:
            self.current.ranges.append((start, stop))
        return super().scan(start, stop)

    def last(self, start: bytes, stop: bytes) -> tuple[bytes, bytes] | None:
        if self.current is not None:  # what it returns depends on the whole range
            self.current.ranges.append((start, stop))
        return super().last(start, stop)

    def put(self, key: bytes, value: bytes | None) -> None:
        if self.current is not None:
            self.current.writes[key] = value
        super().put(key, value)


@dataclass(slots=True)
class _Entry:
    tx: Transaction
    received_ms: int
    footprint: Footprint | None  # applied to the check state (a client's submission): what it touched

    @property
    def checked(self) -> bool:
        return self.footprint is not None


def check_signatures(tx: Transaction, chain_id: str) -> None:
    """Raise :class:`BadSignature` unless every signature of ``tx`` verifies for ``chain_id``."""
    bad = tx.bad_signatures(chain_id)
    if bad:
        raise BadSignature(f"signature of {bad[0].hex()[:16]} does not verify for chain {chain_id!r}")


class Mempool:
    def __init__(self, view: ChainView, clock_ms: Callable[[], int], *, max_txs: int = 100_000,
                 max_bytes: int = 256 * 1024 * 1024) -> None:
        self._view = view
        self._clock = clock_ms
        self.max_txs = max_txs
        self.max_bytes = max_bytes
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self._by_raw: dict[bytes, Transaction] = {}
        self._bytes = 0
        self._stale: set[bytes] = set()  # keys written by pending transactions removed since the last update
        #: rules run by the last update (re-checks), and transactions it carried over by replay
        self.last_update = (0, 0)
        self._check, self._recorder = self._fresh_check_state()

    def _fresh_check_state(self) -> tuple[BlockExecution, _Recorder]:
        tip = self._view.tip
        time = max(self._clock(), tip.time + 1)
        execution = BlockExecution(self._view.state, self._view.chain, tip.height + 1, time)
        recorder = _Recorder(execution.overlay)
        execution.overlay = recorder
        return execution, recorder

    def _apply_checked(self, tx: Transaction) -> Footprint:
        """Apply ``tx`` to the check state, noting what it touched (raises if a rule refuses it)."""
        footprint = Footprint()
        self._recorder.current = footprint
        try:
            self._check.apply(tx)
        finally:
            self._recorder.current = None
        return footprint

    # ---- queries
    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, tx_id: bytes) -> bool:
        return tx_id in self._entries

    def get(self, tx_id: bytes) -> Transaction | None:
        entry = self._entries.get(tx_id)
        return None if entry is None else entry.tx

    def admitted(self, raw: bytes) -> Transaction | None:
        """The transaction admitted here with exactly these bytes (decoded, signatures checked)."""
        return self._by_raw.get(raw)

    def reap(self, max_txs: int | None = None) -> list[Transaction]:
        """Transactions in arrival order, for a proposal."""
        out: list[Transaction] = []
        for entry in self._entries.values():
            if max_txs is not None and len(out) >= max_txs:
                break
            out.append(entry.tx)
        return out

    # ---- admission
    def add(self, tx: Transaction, *, check_rules: bool = True, signatures_checked: bool = False) -> bool:
        """Admit ``tx``; False if it is already here. Raises RejectedTransaction otherwise.

        ``check_rules=False`` (a peer's gossip) skips the check against the state;
        ``signatures_checked`` says the caller ran :func:`check_signatures` on these bytes."""
        if tx.id in self._entries:
            return False
        if len(self._entries) >= self.max_txs or self._bytes + len(tx.raw) > self.max_bytes:
            raise MempoolFull(f"the mempool holds {len(self._entries)} transactions; try again shortly")
        if self._view.has_tx(tx.id):
            raise DuplicateTransaction("the transaction is committed already")
        if not signatures_checked:
            check_signatures(tx, self._view.chain.chain_id)
        footprint = self._apply_checked(tx) if check_rules else None
        self._entries[tx.id] = _Entry(tx, self._clock(), footprint)
        self._by_raw[tx.raw] = tx
        self._bytes += len(tx.raw)
        return True

    # ---- after a commit
    def update(self, committed: Iterable[bytes],
               written: Iterable[bytes] | None = None) -> list[tuple[Transaction, RejectedTransaction]]:
        """Drop committed transactions, rebuild the check state, and carry the rest of the
        clients' submissions over: re-checked if the block (whose written state keys are
        ``written``; None: unknown, re-check everything) or an earlier change touched what they
        read, else replayed from their recorded writes."""
        for tx_id in committed:
            self.remove(tx_id)
        changed = None if written is None else self._stale.union(written)
        self._stale = set()
        self._check, self._recorder = self._fresh_check_state()
        ordered = sorted(changed) if changed is not None else []
        dropped = []
        rechecked = replayed = 0
        for tx_id in list(self._entries):
            entry = self._entries[tx_id]
            old = entry.footprint
            if old is None:
                continue  # left to the proposal, which drops it if it no longer applies
            if changed is not None and not old.touched_by(changed, ordered):
                for key, value in old.writes.items():
                    self._recorder.put(key, value)
                replayed += 1
                continue
            rechecked += 1
            try:
                if self._view.has_tx(tx_id):
                    raise DuplicateTransaction("the transaction is committed already")
                entry.footprint = self._apply_checked(entry.tx)
            except RejectedTransaction as exc:
                self._forget(tx_id)
                dropped.append((entry.tx, exc))
                entry.footprint = None
            if changed is not None:
                # what it wrote before, and now, may differ: those who read it after must look again
                new_keys = entry.footprint.writes.keys() if entry.footprint is not None else ()
                for key in (*old.writes, *new_keys):
                    if key not in changed:
                        changed.add(key)
                        bisect.insort(ordered, key)
        self.last_update = (rechecked, replayed)
        return dropped

    def remove(self, tx_id: bytes) -> None:
        entry = self._forget(tx_id)
        if entry is not None and entry.footprint is not None:
            self._stale.update(entry.footprint.writes)  # pending transactions may have read them

    def _forget(self, tx_id: bytes) -> _Entry | None:
        entry = self._entries.pop(tx_id, None)
        if entry is not None:
            self._bytes -= len(entry.tx.raw)
            self._by_raw.pop(entry.tx.raw, None)
        return entry
