"""JSON-friendly forms of chain objects (bytes become hex in :func:`codec.jsonable`)."""

from __future__ import annotations

from typing import Any

from ledger.block import COMMIT, EVIDENCE, HEADER, Block, Commit
from ledger.merkle import leaf_hash
from ledger.state.records import REQUEST, ValidatorRecord, k_request, load
from ledger.storage.chainstore import ChainStore, TxLocation
from ledger.validators import ValidatorSet


def header_doc(block: Block) -> dict[str, Any]:
    return {"hash": block.hash, **HEADER.wire(block.header)}


def block_doc(block: Block, commit: Commit | None) -> dict[str, Any]:
    return {
        "height": block.height,
        "hash": block.hash,
        "header": header_doc(block),
        "txs": list(block.txs),
        "last_commit": None if block.last_commit is None else COMMIT.wire(block.last_commit),
        "evidence": [EVIDENCE.wire(e) for e in block.evidence],
        "commit": None if commit is None else COMMIT.wire(commit),
    }


def validators_doc(vs: ValidatorSet, height: int, bonded: list[tuple[bytes, ValidatorRecord]]) -> dict[str, Any]:
    """The set in force at ``height``, and every bonded key's stake and jail status now."""
    return {
        "height": height,
        "hash": vs.hash,
        "total_power": vs.total_power,
        "validators": [{"key": v.key, "power": v.power} for v in vs],
        "bonded": [{"key": key, "stake": r.stake, "jailed": r.jailed} for key, r in bonded],
    }


def tx_doc(store: ChainStore, tx_id: bytes, loc: TxLocation) -> dict[str, Any]:
    """Where a transaction is, what it did, its current status, and a proof of inclusion in
    the global log up to the latest committed header (with that header's commit)."""
    block = store.block(loc.height)
    raw = block.txs[loc.index] if block is not None else b""
    tip = store.tip
    tip_block = store.block(tip.height)
    doc: dict[str, Any] = {
        "id": tx_id,
        "status": "committed",
        "height": loc.height,
        "index": loc.index,
        "result": {"status": loc.status, "ref": loc.ref},
        "tx": raw,
    }
    request = load(store.state, k_request(tx_id), REQUEST)
    if request is not None:
        doc["crossing"] = REQUEST.wire(request)
    log = store.log()
    doc["proof"] = {
        "log_index": loc.log_index,
        "log_size": tip.log_size,
        "leaf_hash": leaf_hash(raw),
        "path": log.inclusion_proof(loc.log_index, tip.log_size),
        "header": header_doc(tip_block) if tip_block is not None else None,
        "commit": _commit_wire(store.commit(tip.height)),
    }
    return doc


def _commit_wire(commit: Commit | None) -> dict | None:
    return None if commit is None else COMMIT.wire(commit)
