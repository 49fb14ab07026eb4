"""JSON-friendly forms of chain objects (bytes become hex in :func:`codec.jsonable`).

Blocks and transactions come in two views: ``full`` (the transactions' bytes, for integrity
readers) and ``public`` (ids, leaf hashes, headers, commits and proofs: enough to check every
hash, root and certificate, nothing of a child's records). Transactions erased by order are
stubs in both (ledger/block.py); ``erased`` lists their positions in a block, and a
transaction's own document says ``"erased": true`` and carries its proof without its bytes.
"""

from __future__ import annotations

from typing import Any

from ledger.block import COMMIT, EVIDENCE, HEADER, Block, Commit, erased_positions, is_stub, stub_parts, tx_leaf
from ledger.state.records import REQUEST, Request, ValidatorRecord
from ledger.storage.chainstore import ChainStore, TxLocation
from ledger.tx.envelope import decode_tx
from ledger.validators import ValidatorSet


def header_doc(block: Block) -> dict[str, Any]:
    return {"hash": block.hash, **HEADER.wire(block.header)}


def block_doc(block: Block, commit: Commit | None) -> dict[str, Any]:
    """The whole block, transactions' bytes included (for integrity readers)."""
    return {
        "view": "full",
        "height": block.height,
        "hash": block.hash,
        "header": header_doc(block),
        "txs": list(block.txs),
        "erased": erased_positions(block.txs),
        "last_commit": None if block.last_commit is None else COMMIT.wire(block.last_commit),
        "evidence": [EVIDENCE.wire(e) for e in block.evidence],
        "commit": None if commit is None else COMMIT.wire(commit),
    }


def tx_digests(block: Block) -> tuple[list[bytes], list[bytes]]:
    """The ids and RFC 6962 leaf hashes of a block's transactions (or their stubs), in block order."""
    ids = [stub_parts(raw)[1] if is_stub(raw) else decode_tx(raw).id for raw in block.txs]
    return ids, [tx_leaf(raw) for raw in block.txs]


def public_block_doc(block: Block, commit: Commit | None, tx_ids: list[bytes],
                     leaf_hashes: list[bytes]) -> dict[str, Any]:
    """Everything that checks the block's hash, roots and certificates, but not the transactions'
    bytes: the header's ``tx_root`` is the RFC 6962 root over ``leaf_hashes``."""
    return {
        "view": "public",
        "height": block.height,
        "hash": block.hash,
        "header": header_doc(block),
        "tx_count": len(tx_ids),
        "tx_ids": tx_ids,
        "leaf_hashes": leaf_hashes,
        "erased": erased_positions(block.txs),
        "last_commit": None if block.last_commit is None else COMMIT.wire(block.last_commit),
        "evidence": [EVIDENCE.wire(e) for e in block.evidence],
        "commit": None if commit is None else COMMIT.wire(commit),
    }


def public_block_msgpack(block: Block, commit: Commit | None, tx_ids: list[bytes],
                         leaf_hashes: list[bytes]) -> dict[str, Any]:
    """:func:`public_block_doc` with canonical encodings (the header's bytes hash to ``hash``)."""
    return {
        "view": "public",
        "hash": block.hash,
        "header": HEADER.encode(block.header),
        "tx_ids": tx_ids,
        "leaf_hashes": leaf_hashes,
        "erased": erased_positions(block.txs),
        "last_commit": None if block.last_commit is None else COMMIT.encode(block.last_commit),
        "evidence": [EVIDENCE.encode(e) for e in block.evidence],
        "commit": None if commit is None else COMMIT.encode(commit),
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


def tx_doc(store: ChainStore, tx_id: bytes, loc: TxLocation, raw: bytes, *, include_tx: bool,
           crossing: Request | None = None) -> dict[str, Any]:
    """Where a transaction is, what it did, its current status, and a proof of inclusion in
    the global log up to the latest committed header (with that header's commit).

    The transaction's bytes only with ``include_tx``, the crossing record only if given: the
    caller decides who may read them (see :mod:`node.api.server`). The bytes of a transaction
    erased by order are gone (``raw`` is its stub): the document says so and keeps its proof."""
    tip = store.tip
    tip_block = store.block(tip.height)
    doc: dict[str, Any] = {
        "view": "full" if include_tx else "public",
        "id": tx_id,
        "status": "committed",
        "height": loc.height,
        "index": loc.index,
        "result": {"status": loc.status, "ref": loc.ref},
    }
    if is_stub(raw):
        doc["erased"] = True
    elif include_tx:
        doc["tx"] = raw
    if crossing is not None:
        doc["crossing"] = REQUEST.wire(crossing)
    log = store.log()
    doc["proof"] = {
        "log_index": loc.log_index,
        "log_size": tip.log_size,
        "leaf_hash": tx_leaf(raw),
        "path": log.inclusion_proof(loc.log_index, tip.log_size),
        "header": header_doc(tip_block) if tip_block is not None else None,
        "commit": _commit_wire(store.commit(tip.height)),
    }
    return doc


def _commit_wire(commit: Commit | None) -> dict | None:
    return None if commit is None else COMMIT.wire(commit)
