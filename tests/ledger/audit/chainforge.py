"""Tools of an attacker with write access to a node's store, or with a validator's key.

Each tampering names what it models: a flipped byte on disk, a dropped or swapped block, a
forged certificate, a rewritten guardian decision, a history rebuilt and re-signed by a rogue
validator. The audit tests apply them to copies of real chains and expect the auditor to name
the height and the check.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from ledger.block import BLOCK, COMMIT, PRECOMMIT, Block, Commit, sign_vote, tx_root
from ledger.chain import build_block, execute_block
from ledger.crypto.keys import DOMAIN_TX, SigningKey, sign_bytes
from ledger.encoding import decode, encode
from ledger.merkle import MerkleLog, leaf_hash
from ledger.storage.chainstore import ChainStore
from ledger.storage.kv import KV
from ledger.tx.envelope import Transaction, decode_tx


def h8(height: int) -> bytes:
    return height.to_bytes(8, "big")


def block_key(height: int) -> bytes:
    return b"B" + h8(height)


def commit_key(height: int) -> bytes:
    return b"C" + h8(height)


def flip(data: bytes, offset: int) -> bytes:
    """One bit flipped at ``offset`` (negative offsets count from the end)."""
    b = bytearray(data)
    b[offset] ^= 0x01
    return bytes(b)


def flip_inside(data: bytes, needle: bytes, at: int | None = None) -> bytes:
    """Flip a byte in the middle of ``needle`` where it occurs in ``data``."""
    offset = data.index(needle)
    return flip(data, offset + (len(needle) // 2 if at is None else at))


def put(kv: KV, key: bytes, value: bytes | None) -> None:
    kv.write({key: value}, sync=True)


def block_at(kv: KV, height: int) -> Block:
    return BLOCK.decode(kv.get(block_key(height)))


def commit_at(kv: KV, height: int) -> Commit:
    return COMMIT.decode(kv.get(commit_key(height)))


def sign_commit(keys: Sequence[SigningKey], chain_id: str, height: int, block_hash: bytes, round_: int = 0) -> Commit:
    """Precommits of ``keys`` for ``block_hash``: a certificate, valid or not depending on who signs."""
    return Commit.from_votes([sign_vote(k, chain_id, PRECOMMIT, height, round_, block_hash) for k in keys])


def store_block(kv: KV, block: Block, commit: Commit | None = None) -> None:
    batch = {block_key(block.height): BLOCK.encode(block)}
    if commit is not None:
        batch[commit_key(block.height)] = COMMIT.encode(commit)
    kv.write(batch, sync=True)


def replace_txs(block: Block, txs: Sequence[bytes], previous_log_size: int,
                get_node: Callable[[int, int], bytes | None]) -> Block:
    """The block with other transaction bytes, its transaction count, root and log fields
    recomputed (a forger who keeps the header self-consistent)."""
    log = MerkleLog(get_node, previous_log_size)
    for raw in txs:
        log.append(leaf_hash(raw))
    header = replace(block.header, tx_root=tx_root(tuple(txs)), tx_count=len(txs), log_size=log.size,
                     log_root=log.root())
    return replace(block, header=header, txs=tuple(txs))


def forge_signature(tx: Transaction, impostor: SigningKey, chain_id: str, *, claim: bytes) -> bytes:
    """``tx`` re-signed by ``impostor``, its signature filed under the key ``claim``."""
    wire = decode(tx.raw)
    sig = impostor.sign_raw(sign_bytes(DOMAIN_TX, chain_id, tx.id))
    wire["sigs"] = [{"key": claim, "sig": sig}]
    return encode(wire)


def rewrite_history(stored: ChainStore, into: ChainStore, *, from_height: int,
                    edit: Callable[[int, list[Transaction]], list[Transaction]],
                    validator_keys: dict[bytes, SigningKey], up_to: int | None = None) -> int:
    """A rogue validator's history: blocks below ``from_height`` as they were, then every block
    rebuilt from ``edit(height, its transactions)``, re-executed and re-signed. Returns the
    height reached. The result is a *valid* chain: only an audit checkpoint can tell."""
    up_to = stored.height if up_to is None else up_to
    chain_id = into.chain.chain_id
    for height in range(1, up_to + 1):
        original = stored.block(height)
        assert original is not None
        if height < from_height:
            executed = execute_block(into, original)
            into.commit_block(executed, stored.commit(height))
            continue
        txs = edit(height, [decode_tx(raw) for raw in original.txs])
        last_commit = into.commit(height - 1) if height > 1 else None
        executed, rejected = build_block(into, txs, time=original.header.time, proposer=original.header.proposer,
                                         last_commit=last_commit, evidence=original.evidence)
        keys = [validator_keys[v.key] for v in executed.changes.validators if v.key in validator_keys]
        into.commit_block(executed, sign_commit(keys, chain_id, height, executed.hash))
    return into.height
