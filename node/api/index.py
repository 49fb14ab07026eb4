"""A node-local index of crossing requests by child and by terminal, for signed reads.

The state keeps each request under its child but no list per child in chain order, nor per
terminal; scanning every request to answer "this child's crossings" would cost O(all
crossings). This index is derived from committed blocks only, so it can always be rebuilt, and
lives in its own LevelDB beside the chain (``DATA_DIR/reads-index``)::

    b"v"                                  the layout version (2)
    b"c"                                  the last block height indexed (8 bytes, big-endian)
    b"i" + child tag + height + position  -> request id   (a child's requests, in chain order)
    b"t" + terminal + height + position   -> request id   (a terminal's requests)
    b"s" + request or consent id          -> child tag    (whom it concerned: after an erasure
                                                           a read of it answers 410, not 404)

Children appear only by their tag (ledger.privacy.tags), never by identity id, so nothing here
names a child once its records are erased; an erasure also drops the child's list.

Each block's entries and the new cursor are written in one batch, so after a crash the index
holds block h completely or not at all; at start it catches up from the chain store (and
rebuilds itself from genesis if it was written in an older layout). The stubs that replace an
erased child's transactions in the stored blocks (ledger/block.py) are never indexed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

from ledger.block import is_stub
from ledger.chain import ExecutedBlock
from ledger.errors import DecodeError
from ledger.privacy.tags import child_tag
from ledger.rules.erasure import EVENT_ERASED
from ledger.storage.chainstore import ChainStore
from ledger.storage.kv import KV, LevelKV, MemoryKV
from ledger.tx.bodies import CROSSING, GOV_ERASE, GRANT_CONSENT
from ledger.tx.envelope import Transaction, decode_tx

log = logging.getLogger("custos.index")

_VERSION = b"v"
_LAYOUT = b"\x02"
_CURSOR = b"c"
_BY_CHILD = b"i"
_BY_TERMINAL = b"t"
_SUBJECT = b"s"


def _be(n: int, size: int = 8) -> bytes:
    return n.to_bytes(size, "big")


class RequestIndex:
    def __init__(self, kv: KV, store: ChainStore) -> None:
        self.kv = kv
        self.store = store
        if kv.get(_VERSION) != _LAYOUT:
            self._reset()

    def _reset(self) -> None:
        """Drop everything (an older layout): catch_up rebuilds from genesis."""
        stale: dict[bytes, bytes | None] = {k: None for k, _ in self.kv.iterate(b"", b"\xff")}
        stale[_VERSION] = _LAYOUT
        self.kv.write(stale)

    @classmethod
    def open(cls, path: Path, store: ChainStore) -> RequestIndex:
        return cls(LevelKV(path), store)

    @classmethod
    def memory(cls, store: ChainStore) -> RequestIndex:
        return cls(MemoryKV(), store)

    @property
    def height(self) -> int:
        raw = self.kv.get(_CURSOR)
        return 0 if raw is None else int.from_bytes(raw, "big")

    def catch_up(self) -> int:
        """Index every stored block after the cursor; returns how many blocks were indexed."""
        # a store that began from a state-sync snapshot holds no blocks up to its base
        start, tip = max(self.height, self.store.base) + 1, self.store.height
        if start > tip:
            return 0
        log.info("indexing crossing requests of blocks %d..%d", start, tip)
        for height in range(start, tip + 1):
            block = self.store.block(height)
            if block is None:
                break
            txs: list[Transaction | None] = []
            for raw in block.txs:
                if is_stub(raw):
                    txs.append(None)  # erased by order: nothing of it is indexed
                    continue
                try:
                    txs.append(decode_tx(raw))
                except DecodeError:  # a committed block decodes; never on a sound store
                    log.error("block %d holds a transaction that does not decode", height)
                    txs.append(None)
            self._write(height, txs)
        return tip - start + 1

    def on_commit(self, executed: ExecutedBlock) -> None:
        if executed.height != max(self.height, self.store.base) + 1:
            self.catch_up()  # a gap (missed listener call): fill it from the store
            return
        erased = [child_tag(ev.identity) for ev in executed.changes.events if ev.kind == EVENT_ERASED]
        self._write(executed.height, executed.entries(), erased)

    def _write(self, height: int, txs: Sequence[Transaction | None], erased: Sequence[bytes] = ()) -> None:
        """Index one block (None for an erased transaction's stub); ``erased`` are the tags of
        children erased by it (by order or by retention: a block's begin rules erase too, which
        its transactions do not show)."""
        batch: dict[bytes, bytes | None] = {_CURSOR: _be(height)}
        gone = list(erased)
        for position, tx in enumerate(txs):
            if tx is None:
                continue
            if tx.kind == CROSSING:
                tag = child_tag(tx.body.identity)
                where = _be(height) + _be(position, 4)
                batch[_BY_CHILD + tag + where] = tx.id
                batch[_BY_TERMINAL + tx.body.terminal + where] = tx.id
                batch[_SUBJECT + tx.id] = tag
            elif tx.kind == GRANT_CONSENT:
                batch[_SUBJECT + tx.id] = child_tag(tx.body.identity)
            elif tx.kind == GOV_ERASE:
                gone.append(tx.body.child)
        for tag in gone:
            prefix = _BY_CHILD + tag
            for key, _ in self.kv.iterate(prefix, prefix + b"\xff" * 12):
                batch[key] = None
            for key in [k for k in batch if k.startswith(prefix)]:
                batch[key] = None
        # not synchronous: a lost write is rewritten from the chain at the next start
        self.kv.write(batch, sync=False)

    def by_identity(self, identity: bytes, *, before_height: int | None = None, limit: int = 100) -> Iterator[bytes]:
        """The child's request ids, newest first."""
        return self._newest_first(_BY_CHILD + child_tag(identity), before_height, limit)

    def subject(self, record_id: bytes) -> bytes | None:
        """The tag of the child a crossing request or consent concerned (erased or not)."""
        return self.kv.get(_SUBJECT + record_id)

    def by_terminal(self, terminal: bytes, *, before_height: int | None = None, limit: int = 100) -> Iterator[bytes]:
        return self._newest_first(_BY_TERMINAL + terminal, before_height, limit)

    def _newest_first(self, prefix: bytes, before_height: int | None, limit: int) -> Iterator[bytes]:
        stop = prefix + (_be(before_height) if before_height is not None else b"\xff" * 12)
        for n, (_, request_id) in enumerate(self.kv.iterate(prefix, stop, reverse=True)):
            if n >= limit:
                return
            yield request_id

    def close(self) -> None:
        self.kv.close()
