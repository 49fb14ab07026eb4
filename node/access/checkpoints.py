"""Committing the access log to the chain: a node signs its log's tree head at intervals.

Every ``access_log.checkpoint_ms`` the node looks at the chain's record of its last checkpoint
(``acl/<node key>``); if its log has grown since, it makes the log durable, then submits a
``node.access-checkpoint`` with the new size, root and the consistency proof from the last one
(ledger/rules/access.py), signed by its node key, through its own mempool. One checkpoint is in
flight at a time; its nonce is the log size, so resubmitting the same head is the same
transaction.

Only validators' keys may commit checkpoints: an observer's log stays unanchored (its answers
say so, and clients report it).
"""

from __future__ import annotations

import asyncio
import logging

from ledger.crypto.keys import SigningKey
from ledger.errors import RejectedTransaction
from ledger.state.records import ACCESS_CHECKPOINT_RECORD, k_access_checkpoint, k_validator, load
from ledger.tx.bodies import ACCESS_CHECKPOINT, AccessCheckpoint
from ledger.tx.envelope import Transaction, make_tx
from node.access.log import AccessLog
from node.app import NodeApp

log = logging.getLogger("custos.access-log")


class Checkpointer:
    def __init__(self, app: NodeApp, access_log: AccessLog, key: SigningKey, *, interval_ms: int) -> None:
        self.app = app
        self.log = access_log
        self.key = key
        self.interval_s = interval_ms / 1000
        self._in_flight: bytes | None = None

    def anchor(self) -> tuple[int, bytes] | None:
        """The (size, root) the chain holds for this node's log."""
        record = load(self.app.store.state, k_access_checkpoint(self.key.public), ACCESS_CHECKPOINT_RECORD)
        return None if record is None else (record.size, record.root)

    def due(self) -> AccessCheckpoint | None:
        """The checkpoint to commit now, or None (nothing new, a damaged log, not a validator)."""
        state = self.app.store.state
        if self.log.damage is not None or state.get(k_validator(self.key.public)) is None:
            return None
        anchor = self.anchor()
        old = anchor[0] if anchor is not None else 0
        size = self.log.size
        if size <= old:
            return None
        proof = self.log.consistency_proof(old, size) if old else []
        return AccessCheckpoint(self.key.public, size, self.log.root(size), tuple(proof))

    def _busy(self) -> bool:
        """A checkpoint of ours waits in the mempool (not committed, not dropped)."""
        if self._in_flight is not None and self._in_flight not in self.app.mempool:
            self._in_flight = None
        return self._in_flight is not None

    async def tick(self) -> Transaction | None:
        if self._busy():
            return None
        body = self.due()
        if body is None:
            return None
        # durable before signed: the chain must never hold a head the disk can lose
        await asyncio.get_running_loop().run_in_executor(None, self.log.sync)
        tx = make_tx(ACCESS_CHECKPOINT, body, body.size, [self.key], self.app.chain_id)
        try:
            submitted = self.app.submit(tx.raw)
        except RejectedTransaction as exc:
            log.warning("access-log checkpoint of %d entries refused: %s", body.size, exc.diagnostics())
            return None
        if submitted.status != "committed":
            self._in_flight = tx.id
        return tx

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.tick()
            except Exception:
                log.exception("access-log checkpoint failed")
