"""Block production for a chain with a single validator.

With one validator its own precommit is more than 2/3 of the power, so a block commits as soon
as it is built and signed. The loop waits for transactions (then ``block_interval_ms`` more, to
batch them) or for the heartbeat, whichever comes first.
"""

from __future__ import annotations

import asyncio
import logging

from ledger.block import PRECOMMIT, Commit, sign_vote
from ledger.crypto.keys import SigningKey
from ledger.rules.validators import validator_set_at
from node.app import NodeApp

log = logging.getLogger("custos.solo")


class SoloProducer:
    def __init__(self, app: NodeApp, key: SigningKey, *, block_interval_ms: int, heartbeat_ms: int) -> None:
        self.app = app
        self.key = key
        self.block_interval = block_interval_ms / 1000
        self.heartbeat = heartbeat_ms / 1000

    def can_produce(self) -> bool:
        store = self.app.store
        validators = validator_set_at(store.state, store.height + 1)
        return validators.has_quorum(validators.power_of(self.key.public))

    async def run(self) -> None:
        store = self.app.store
        while True:
            try:
                await asyncio.wait_for(self.app.new_txs.wait(), self.heartbeat)
                await asyncio.sleep(self.block_interval)
            except asyncio.TimeoutError:
                pass  # heartbeat: an empty block moves block time on (deadlines expire)
            if not self.can_produce():
                log.warning("this key alone holds no quorum at height %d; not producing", store.height + 1)
                await asyncio.sleep(self.heartbeat)
                continue
            last_commit = store.commit(store.height) if store.height else None
            executed = self.app.build(proposer=self.key.public, last_commit=last_commit)
            vote = sign_vote(self.key, self.app.chain_id, PRECOMMIT, executed.height, 0, executed.hash)
            self.app.commit(executed.hash, Commit.from_votes([vote]))
            log.info("committed block %d with %d transactions", executed.height, len(executed.txs))
