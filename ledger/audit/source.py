"""What an audit reads the chain from: the interface, and a source over a key-value store.

A :class:`BlockSource` hands out raw bytes (block and commit, by height) and its claims (tip,
genesis). The auditor trusts none of it: bytes are decoded and checked, claims are compared
with what re-execution gives.

:class:`StoreSource` reads a chain store's key-value records directly, never through
:class:`ledger.storage.chainstore.ChainStore` (whose constructor trusts the tip record), and
never writes. It also exposes the store (``kv``) so the auditor can check what only a store
holds: the transaction index, log nodes, the state and the tip record.

The sources that do I/O live with the node: a node's data directory (LevelDB) in
:mod:`node.audit.datadir`, a node's API in :mod:`node.cli.audit`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from ledger.audit.findings import AuditFailure, AuditStop
from ledger.errors import CustosError, StorageError
from ledger.merkle import MerkleLog
from ledger.storage.chainstore import ANCHOR, ANCHOR_KEY, TIP, decode_slots
from ledger.storage.kv import KV

_GENESIS, _TIP = b"G", b"T"


class SourceError(CustosError):
    """The source cannot be read at all (not a data directory, locked, unreadable)."""

    code = "audit-source"


class BlockSource(Protocol):
    """Raw chain data by height. Nothing it returns is trusted."""

    #: what the report names as the audited source ("data directory /x", "node http://...")
    description: str
    #: the name of the check comparing :meth:`claimed_tip` with re-execution
    tip_check: str

    def genesis_bytes(self) -> bytes:
        """The genesis the source runs, canonically encoded."""
        ...

    def tip_height(self) -> int:
        """The height the source claims as its last committed block."""
        ...

    def claimed_tip(self) -> dict[str, object]:
        """What the source claims about its tip (``height``, ``hash``, ``time``, roots...)."""
        ...

    def blocks(self, start: int, stop: int) -> Iterator[tuple[int, bytes | None, bytes | None]]:
        """(height, block bytes, commit bytes) for start..stop inclusive, in order; None where
        the source lacks the block or its commit."""
        ...

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        """An RFC 6962 consistency proof between two sizes of the source's log."""
        ...

    def slots(self, height: int) -> dict[bytes, bytes | None]:
        """The children's slots block ``height`` changed, as the source recorded them (child tag
        -> value); what stands in for the records of children erased before the audit. Called
        after :meth:`blocks` yielded that height."""
        ...

    def close(self) -> None: ...


def _h(height: int) -> bytes:
    return height.to_bytes(8, "big")


class StoreSource:
    """A chain store's records, read directly from its key-value store (see the module doc)."""

    tip_check = "tip-record"

    def __init__(self, kv: KV, description: str = "chain store") -> None:
        self.kv = kv
        self.description = description
        self.tip_error: str | None = None
        try:
            self._tip_raw = kv.get(_TIP)
        except StorageError as exc:  # the audit goes on from the blocks; reading them reports the damage
            self._tip_raw, self.tip_error = None, f"the tip record cannot be read: {exc}"
        self._tip_height = 0
        self._claimed: dict[str, object] = {}
        if self.tip_error is not None:
            pass
        elif self._tip_raw is None:
            self.tip_error = "the store has no tip record"
        else:
            try:
                tip = TIP.decode(self._tip_raw)
            except CustosError as exc:
                self.tip_error = f"the tip record does not decode: {exc}"
            else:
                self._tip_height = tip.height
                self._claimed = {"height": tip.height, "hash": tip.hash, "time": tip.time,
                                 "state_root": tip.state_root, "log_size": tip.log_size, "log_root": tip.log_root}
        if self.tip_error is not None:
            # fall back on the blocks themselves: audit every block the store holds
            try:
                self._tip_height = self.highest_block()
            except StorageError:
                self._tip_height = 0  # the genesis read fails too, and the audit reports it

    def genesis_bytes(self) -> bytes:
        raw = self.kv.get(_GENESIS)
        if raw is None:
            raise SourceError(f"{self.description} holds no genesis record: not a Custos chain store")
        anchor = self.kv.get(ANCHOR_KEY)
        if anchor is not None:
            raise SourceError(f"{self.description} began from a state-sync snapshot at height "
                              f"{ANCHOR.decode(anchor).height} and holds no block up to it: audit a copy from a "
                              "node that replayed the chain from genesis (docs/adr/0007-state-sync.md)")
        return raw

    def tip_height(self) -> int:
        return self._tip_height

    def tree_journal(self) -> list[tuple[int, bytes]] | None:
        """(height, payload) of each whole entry of the store's tree journal, in file order (see
        :mod:`ledger.storage.treejournal`); None where the source reads records only."""
        return None

    def claimed_tip(self) -> dict[str, object]:
        return dict(self._claimed)

    @property
    def tip_record(self) -> bytes | None:
        return self._tip_raw

    def blocks(self, start: int, stop: int) -> Iterator[tuple[int, bytes | None, bytes | None]]:
        for height in range(start, stop + 1):
            try:
                block, commit = self.kv.get(b"B" + _h(height)), self.kv.get(b"C" + _h(height))
            except StorageError as exc:  # a damaged table: a finding about this height
                raise AuditStop(AuditFailure(height, "block", "store-readable",
                                             f"the store cannot read block {height} or its commit: {exc}")) from None
            yield height, block, commit

    def slots(self, height: int) -> dict[bytes, bytes | None]:
        return read_slots(self.kv.get(b"R" + _h(height)), height)

    def highest_block(self) -> int:
        for key, _ in self.kv.iterate(b"B", b"C", reverse=True):
            if len(key) == 9:
                return int.from_bytes(key[1:], "big")
        return 0

    def blocks_beyond(self, height: int) -> list[int]:
        """Heights of stored blocks or commits above ``height`` (there should be none)."""
        found = set()
        for prefix, stop in ((b"B", b"C"), (b"C", b"D")):
            for key, _ in self.kv.iterate(prefix + _h(height + 1), stop):
                found.add(int.from_bytes(key[1:], "big") if len(key) == 9 else -1)
        return sorted(found)

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        log = MerkleLog(lambda level, index: self.kv.get(b"L" + bytes([level]) + _h(index)), second)
        return log.consistency_proof(first, second)

    def close(self) -> None:
        self.kv.close()


def read_slots(raw: bytes | None, height: int) -> dict[bytes, bytes | None]:
    """A block's recorded slot changes, as a source gave them (absent: none changed)."""
    if raw is None:
        return {}
    try:
        return dict(decode_slots(raw))
    except CustosError as exc:
        raise SourceError(f"the recorded slot changes of block {height} do not decode: {exc}") from None
