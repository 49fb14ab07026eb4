"""Nodes commit their access logs to the chain: one checkpoint record per node key.

A node keeps an RFC 6962 log of every read of a child's records it served (node/access/log.py)
and signs a ``node.access-checkpoint`` with its log's size and root at intervals. The record
``acl/<node key>`` keeps the last one. Because each checkpoint carries a consistency proof from
the previous one, the chain itself refuses a log that was rewritten rather than extended: once
a checkpoint is committed, no entry it covers can be changed or removed without the node's
every later checkpoint being refused.
"""

from __future__ import annotations

from ledger.errors import InvalidValue, UnknownKey
from ledger.merkle import EMPTY_ROOT, verify_consistency
from ledger.rules.context import Ctx, Outcome, require_not_revoked, require_signers
from ledger.state.records import (
    ACCESS_CHECKPOINT_RECORD,
    AccessCheckpointRecord,
    k_access_checkpoint,
    k_validator,
    load,
    store,
)
from ledger.tx.bodies import AccessCheckpoint


def checkpoint(ctx: Ctx, body: AccessCheckpoint) -> Outcome:
    # Rule: signed by the node alone, a node of this chain (a validator key, bonded now or before).
    require_signers(ctx.tx, body.node)
    require_not_revoked(ctx.state, body.node)
    if ctx.state.get(k_validator(body.node)) is None:
        raise UnknownKey(f"key {body.node.hex()[:16]} is not a validator's: only nodes commit access logs")
    # Rule: the log grew, and the new tree extends the last committed one.
    previous = load(ctx.state, k_access_checkpoint(body.node), ACCESS_CHECKPOINT_RECORD)
    old_size, old_root = (previous.size, previous.root) if previous is not None else (0, EMPTY_ROOT)
    if body.size <= old_size:
        raise InvalidValue(f"the access log must grow: size {body.size}, last checkpoint {old_size}")
    if not verify_consistency(old_size, body.size, old_root, body.root, list(body.proof)):
        raise InvalidValue(f"the access log of size {body.size} does not extend the last checkpoint "
                           f"(size {old_size}): an entry was changed or removed")
    store(ctx.state, k_access_checkpoint(body.node), ACCESS_CHECKPOINT_RECORD,
          AccessCheckpointRecord(size=body.size, root=body.root, height=ctx.height, tx=ctx.tx.id))
    return Outcome()
