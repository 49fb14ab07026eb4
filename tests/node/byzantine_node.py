"""A validator that signs conflicting votes, for tests only.

Run it as the node is run (``python -m tests.node.byzantine_node node start --config FILE``): it
is the real node, same command line and code, with one change made from outside. Each vote of
its own it broadcasts is followed by a conflicting vote for the same height, round and step,
signed with the raw key (past the signer's double-sign guard). Its peers must detect the pair
and the chain must slash and jail it. The production configuration has no switch for this.
"""

from __future__ import annotations

import sys

from ledger.block import Vote, sign_vote
from node.cli import main
from node.consensus.driver import ConsensusDriver
from node.consensus.messages import Proposal, encode_message
from node.p2p.frames import CONSENSUS

_honest_broadcast = ConsensusDriver.broadcast


def _broadcast_and_equivocate(driver: ConsensusDriver, message: Proposal | Vote) -> None:
    _honest_broadcast(driver, message)
    if isinstance(message, Vote) and message.validator == driver.key.public:
        other = None if message.block is not None else bytes(32)
        twin = sign_vote(driver.key, driver.chain_id, message.kind, message.height, message.round, other)
        driver.network.broadcast(CONSENSUS, encode_message(twin))
        driver.app.metrics.inc("equivocations_sent")


if __name__ == "__main__":
    ConsensusDriver.broadcast = _broadcast_and_equivocate  # type: ignore[method-assign]
    sys.exit(main(sys.argv[1:]))
