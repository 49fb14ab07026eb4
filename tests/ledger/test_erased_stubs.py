"""Stubs of erased transactions: headers, roots and log proofs verify; execution refuses them."""

from __future__ import annotations

import pytest
from chainkit import Chain

from ledger.block import (
    STUB_SIZE,
    Block,
    erased_positions,
    is_stub,
    make_stub,
    stub_parts,
    tx_leaf,
    tx_root,
)
from ledger.chain import execute_block
from ledger.errors import ErasedTransactions, InvalidBlock
from ledger.merkle import leaf_hash, verify_consistency, verify_inclusion
from ledger.storage.chainstore import ChainStore

ROW = b"\x42" * 32  # a result row's hash (its value does not matter to roots and proofs)


def stubbed(block: Block, positions: list[int], ids: list[bytes]) -> Block:
    txs = list(block.txs)
    for position, tx_id in zip(positions, ids, strict=True):
        txs[position] = make_stub(txs[position], tx_id, ROW)
    return Block.decode(Block(block.header, tuple(txs), block.last_commit, block.evidence).encode())


def test_a_stub_keeps_the_leaf_hash_and_id_of_what_it_replaces(chain: Chain, authority):
    tx = chain.enrol(authority, chain.new_child())
    stub = make_stub(tx.raw, tx.id, ROW)
    assert len(stub) == STUB_SIZE and is_stub(stub) and not is_stub(tx.raw)
    assert stub_parts(stub) == (leaf_hash(tx.raw), tx.id, ROW)
    assert tx_leaf(stub) == tx_leaf(tx.raw) == leaf_hash(tx.raw)
    assert tx.raw[0] != 0  # an envelope is a msgpack map: it never starts with the stub mark


def test_stubs_leave_the_header_roots_and_log_proofs_verifiable(chain: Chain, authority, terminal):
    child = chain.new_child()
    first = chain.commit(chain.enrol(authority, child), chain.enrol(authority, chain.new_child()))
    old_size, old_root = chain.store.tip.log_size, chain.store.tip.log_root
    chain.commit(chain.crossing(terminal, child))
    block = stubbed(first.block, [0], [first.txs[0].id])
    assert block.hash == first.block.hash
    assert erased_positions(block.txs) == [0]
    assert tx_root(block.txs) == block.header.tx_root
    # the global log: inclusion of the erased transaction, consistency of an older head
    loc = chain.store.tx_location(first.txs[0].id)
    log, tip = chain.store.log(), chain.store.tip
    proof = log.inclusion_proof(loc.log_index, tip.log_size)
    assert verify_inclusion(tx_leaf(block.txs[0]), loc.log_index, tip.log_size, proof, tip.log_root)
    assert verify_consistency(old_size, tip.log_size, old_root, tip.log_root,
                              log.consistency_proof(old_size, tip.log_size))


def test_rejects_executing_a_block_that_holds_stubs(chain: Chain, authority):
    fresh = ChainStore.memory(chain.genesis)
    executed = chain.commit(chain.enrol(authority, chain.new_child()), chain.enrol(authority, chain.new_child()))
    with pytest.raises(ErasedTransactions) as caught:
        for height in range(1, executed.height):
            fresh.commit_block(execute_block(fresh, chain.store.block(height)), chain.store.commit(height))
        execute_block(fresh, stubbed(executed.block, [1], [executed.txs[1].id]))
    err = caught.value
    assert isinstance(err, InvalidBlock)  # every caller that refuses invalid blocks refuses it
    assert (err.height, err.positions, err.check) == (executed.height, [1], "tx-erased")
    assert "positions 1" in str(err)


def test_rejects_a_stub_whose_leaf_does_not_match_the_root(chain: Chain, authority):
    fresh = ChainStore.memory(chain.genesis)
    executed = chain.commit(chain.enrol(authority, chain.new_child()))
    for height in range(1, executed.height):
        fresh.commit_block(execute_block(fresh, chain.store.block(height)), chain.store.commit(height))
    forged = Block(executed.block.header, (b"\x00" + bytes(32) + executed.txs[0].id,),
                   executed.block.last_commit, executed.block.evidence)
    with pytest.raises(InvalidBlock) as caught:
        execute_block(fresh, forged)
    assert caught.value.check == "tx-root"
