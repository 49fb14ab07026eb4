"""A node-local index of crossing requests by child and by terminal, for signed reads.

The state keeps each request under its id (``req/<id>``) but no list per child or per terminal;
scanning every request to answer "this child's crossings" would cost O(all crossings). This
index is derived from committed blocks only, so it can always be rebuilt, and lives in its own
LevelDB beside the chain (``DATA_DIR/reads-index``)::

    b"c"                                  the last block height indexed (8 bytes, big-endian)
    b"i" + identity + height + position   -> request id   (a child's requests, in chain order)
    b"t" + terminal + height + position   -> request id   (a terminal's requests)

Each block's entries and the new cursor are written in one batch, so after a crash the index
holds block h completely or not at all; at start it catches up from the chain store.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from ledger.chain import ExecutedBlock
from ledger.errors import DecodeError
from ledger.storage.chainstore import ChainStore
from ledger.storage.kv import KV, LevelKV, MemoryKV
from ledger.tx.bodies import CROSSING
from ledger.tx.envelope import Transaction, decode_tx

log = logging.getLogger("custos.index")

_CURSOR = b"c"
_BY_IDENTITY = b"i"
_BY_TERMINAL = b"t"


def _be(n: int, size: int = 8) -> bytes:
    return n.to_bytes(size, "big")


class RequestIndex:
    def __init__(self, kv: KV, store: ChainStore) -> None:
        self.kv = kv
        self.store = store

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
        start, tip = self.height + 1, self.store.height
        if start > tip:
            return 0
        log.info("indexing crossing requests of blocks %d..%d", start, tip)
        for height in range(start, tip + 1):
            block = self.store.block(height)
            if block is None:
                break
            txs = []
            for raw in block.txs:
                try:
                    txs.append(decode_tx(raw))
                except DecodeError:  # a committed block decodes; never on a sound store
                    log.error("block %d holds a transaction that does not decode", height)
            self._write(height, txs)
        return tip - start + 1

    def on_commit(self, executed: ExecutedBlock) -> None:
        if executed.height != self.height + 1:
            self.catch_up()  # a gap (missed listener call): fill it from the store
            return
        self._write(executed.height, executed.txs)

    def _write(self, height: int, txs: list[Transaction]) -> None:
        batch: dict[bytes, bytes | None] = {_CURSOR: _be(height)}
        for position, tx in enumerate(txs):
            if tx.kind != CROSSING:
                continue
            where = _be(height) + _be(position, 4)
            batch[_BY_IDENTITY + tx.body.identity + where] = tx.id
            batch[_BY_TERMINAL + tx.body.terminal + where] = tx.id
        # not synchronous: a lost write is rewritten from the chain at the next start
        self.kv.write(batch, sync=False)

    def by_identity(self, identity: bytes, *, before_height: int | None = None, limit: int = 100) -> Iterator[bytes]:
        """The child's request ids, newest first."""
        return self._newest_first(_BY_IDENTITY + identity, before_height, limit)

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
