"""Consensus: the Tendermint algorithm as a pure state machine, and what keeps it safe on disk.

* :mod:`node.consensus.engine`: Algorithm 1 of Buchman, Kwon, Milosevic, "The latest gossip on
  BFT consensus" (2018). Inputs are method calls, outputs are plain values; no I/O, no clock.
* :mod:`node.consensus.messages`: proposals, timeouts and the tagged wire union.
* :mod:`node.consensus.votes`: vote sets, one vote per validator, with equivocation detection.
* :mod:`node.consensus.privval`: the validator's signer, which never signs two conflicting
  messages, across restarts too.
* :mod:`node.consensus.wal`: the consensus write-ahead log, and :mod:`node.consensus.recorder`,
  which feeds an engine through it and replays it at start-up.
* :mod:`node.consensus.config`, :mod:`node.consensus.outputs`, :mod:`node.consensus.future`,
  :mod:`node.consensus.errors`: the engine's settings, outputs, next-height buffer and errors.
* :mod:`node.consensus.replica`: everything one validator decides around the engine (commit
  ordering, height pacing, block sync, gossip and evidence), fed ``(now, event)`` and returning
  effects; no I/O. :mod:`node.consensus.driver` is its asyncio shell in a node.
* :mod:`node.consensus.simulator` (with :mod:`~node.consensus.simscenario` and
  :mod:`~node.consensus.simnet`): a seeded simulator running the same replicas under delay,
  loss, duplication, partitions, crash-restarts, slow disks, CPU starvation, a laggard catching
  up and an equivocating validator.
"""
