"""Building and checking blocks: every header field is recomputed by the validators and the auditor,
and the global transaction log gives inclusion and consistency proofs against header roots."""

from __future__ import annotations

from dataclasses import replace

import pytest
from chainkit import SECOND, Chain, with_params

from ledger.block import (
    PRECOMMIT,
    ZERO_HASH,
    Block,
    Commit,
    DuplicateVoteEvidence,
    commit_hash,
    evidence_hash,
    sign_vote,
    tx_root,
)
from ledger.chain import execute_block
from ledger.crypto.keys import SigningKey
from ledger.errors import DuplicateTransaction, InvalidBlock
from ledger.merkle import inclusion_proof_of, leaf_hash, verify_consistency, verify_inclusion
from ledger.storage.chainstore import ChainStore
from ledger.tx.bodies import GOV_REGISTER_POST, RegisterPost
from ledger.tx.envelope import decode_tx, make_tx


def forge(block: Block, *, txs: tuple[bytes, ...] | None = None, last_commit="keep", evidence=None,
          **header_changes) -> Block:
    """``block`` with other contents (their header hashes recomputed) and/or header fields changed."""
    header = block.header
    if txs is not None:
        header = replace(header, tx_root=tx_root(txs), tx_count=len(txs))
    else:
        txs = block.txs
    if last_commit != "keep":
        header = replace(header, last_commit_hash=commit_hash(last_commit))
    else:
        last_commit = block.last_commit
    if evidence is not None:
        header = replace(header, evidence_hash=evidence_hash(evidence))
    else:
        evidence = block.evidence
    return Block(replace(header, **header_changes), tuple(txs), last_commit, tuple(evidence))


def refusal(chain: Chain, block: Block) -> InvalidBlock:
    height, tip = chain.height, chain.store.tip
    with pytest.raises(InvalidBlock) as exc:
        execute_block(chain.store, block)
    assert chain.height == height and chain.store.tip == tip
    return exc.value


@pytest.fixture
def busy(chain: Chain):
    """A chain with some history and a proposed next block that carries transactions."""
    authority, terminal = chain.open_border()
    child = chain.enrol_child(authority)
    request = chain.crossing(terminal, child)
    proposed, refused = chain.propose([request, chain.register_post("MD-77")])
    assert refused == []
    return chain, proposed.block, (authority, terminal, child)


# --------------------------------------------------------------------------- a validator replays


def test_a_validator_replaying_the_proposers_blocks_reaches_the_same_state(chain: Chain):
    replica = ChainStore.memory(chain.genesis)
    authority, terminal = chain.open_border()
    child = chain.enrol_child(authority)
    request = chain.pending_crossing(terminal, child)
    chain.commit(*[chain.approve(g, request, child) for g in child.guardians])
    chain.advance(SECOND)

    for height in range(1, chain.height + 1):
        block = chain.store.block(height)
        executed = execute_block(replica, block)
        assert executed.changes.state_root == block.header.state_root
        replica.commit_block(executed, chain.store.commit(height))
    assert replica.tip == chain.store.tip
    assert dict(replica.kv.iterate(b"S", b"T")) == chain.state()
    assert replica.tx_location(request.id) == chain.store.tx_location(request.id)


def test_stored_blocks_decode_to_the_same_block(busy):
    chain, _, _ = busy
    for height in range(1, chain.height + 1):
        raw = chain.store.block_bytes(height)
        block = Block.decode(raw)
        assert block.encode() == raw and block.hash == chain.store.header(height).hash
        assert chain.store.height_of(block.hash) == height


def test_the_first_block_links_to_the_genesis(chain: Chain):
    chain.advance(SECOND)
    header = chain.store.header(1)
    assert header.prev_hash == chain.genesis.hash and header.last_commit_hash == ZERO_HASH
    assert header.validators_hash == chain.genesis.validator_set().hash


# --------------------------------------------------------------------------- tampered headers


def _other_key() -> bytes:
    return SigningKey.generate().public


TAMPERED_HEADERS = {
    "chain-id": lambda h: dict(chain_id="custos-staging"),
    "height": lambda h: dict(height=h.height + 1),
    "prev-hash": lambda h: dict(prev_hash=b"\x11" * 32),
    "time": lambda h: dict(time=h.time - SECOND),
    "validators-hash": lambda h: dict(validators_hash=b"\x22" * 32),
    "proposer": lambda h: dict(proposer=_other_key()),
    "last-commit-hash": lambda h: dict(last_commit_hash=b"\x33" * 32),
    "evidence-hash": lambda h: dict(evidence_hash=b"\x44" * 32),
    "tx-count": lambda h: dict(tx_count=h.tx_count - 1),
    "tx-root": lambda h: dict(tx_root=b"\x55" * 32),
    "log-size": lambda h: dict(log_size=h.log_size + 1),
    "log-root": lambda h: dict(log_root=b"\x66" * 32),
    "state-root": lambda h: dict(state_root=b"\x77" * 32),
    "results-hash": lambda h: dict(results_hash=b"\x88" * 32),
    "next-validators-hash": lambda h: dict(next_validators_hash=b"\x99" * 32),
}


@pytest.mark.parametrize("check", sorted(TAMPERED_HEADERS))
def test_every_tampered_header_field_is_detected(busy, check):
    chain, block, _ = busy
    err = refusal(chain, forge(block, **TAMPERED_HEADERS[check](block.header)))
    assert err.check == check
    assert err.height == chain.height + 1 and check in err.diagnostics()


def test_a_block_time_equal_to_the_previous_is_refused(busy):
    chain, block, _ = busy
    assert refusal(chain, forge(block, time=chain.now)).check == "time"


def test_the_untampered_block_is_accepted(busy):
    chain, block, _ = busy
    executed = execute_block(chain.store, block)
    assert executed.changes.state_root == block.header.state_root


# --------------------------------------------------------------------------- the previous block's commit


def test_refuses_a_block_without_the_previous_commit(busy):
    chain, block, _ = busy
    assert refusal(chain, forge(block, last_commit=None)).check == "last-commit"


def test_refuses_a_first_block_that_carries_a_commit(chain: Chain):
    proposed, _ = chain.propose()
    bogus = Commit(1, 0, b"\x01" * 32, ())
    assert refusal(chain, forge(proposed.block, last_commit=bogus)).check == "last-commit"


def _signed_commit(chain: Chain, *, height=None, block=None, keys=None, chain_id=None) -> Commit:
    keys = list(chain.validator_keys.values()) if keys is None else keys
    votes = [sign_vote(k, chain.chain_id if chain_id is None else chain_id, PRECOMMIT,
                       chain.height if height is None else height, 0,
                       chain.store.tip.hash if block is None else block) for k in keys]
    return Commit.from_votes(votes)


@pytest.mark.parametrize(
    "check, make",
    [
        ("commit-height", lambda c: _signed_commit(c, height=c.height - 1)),
        ("commit-block", lambda c: _signed_commit(c, block=c.store.header(c.height - 1).hash)),
        ("commit-signer", lambda c: _signed_commit(c, keys=[SigningKey.generate()])),
        ("commit-signature", lambda c: _signed_commit(c, chain_id="custos-staging")),
    ],
)
def test_refuses_a_previous_commit_that_does_not_prove_the_previous_block(busy, check, make):
    chain, block, _ = busy
    assert refusal(chain, forge(block, last_commit=make(chain))).check == check


def test_refuses_a_previous_commit_without_more_than_two_thirds_of_the_power():
    chain = Chain(validators=4)
    chain.advance(SECOND)
    proposed, _ = chain.propose()
    validators = list(chain.validator_keys.values())
    three_of_four = _signed_commit(chain, keys=validators[:3])
    execute_block(chain.store, forge(proposed.block, last_commit=three_of_four))
    for too_few in (validators[:2], validators[:1]):  # exactly half, a quarter
        commit = _signed_commit(chain, keys=too_few)
        assert refusal(chain, forge(proposed.block, last_commit=commit)).check == "commit-quorum"


def test_refuses_a_previous_commit_with_a_signature_twice():
    chain = Chain(validators=2)
    chain.advance(SECOND)
    proposed, _ = chain.propose()
    good = _signed_commit(chain)
    doubled = Commit(good.height, good.round, good.block, (good.signatures[0], good.signatures[0]))
    assert refusal(chain, forge(proposed.block, last_commit=doubled)).check == "commit-order"


# --------------------------------------------------------------------------- the transactions


def test_refuses_a_transaction_whose_signature_does_not_verify(busy):
    chain, block, (authority, terminal, child) = busy
    foreign = make_tx(GOV_REGISTER_POST, RegisterPost("MD-88", "x"), 99, chain.council[:2], "custos-staging")
    err = refusal(chain, forge(block, txs=(*block.txs, foreign.raw)))
    assert err.check == "tx-signature" and "transaction 2" in str(err)


def test_refuses_a_transaction_that_breaks_a_rule(busy):
    chain, block, _ = busy
    twice = chain.register_post("MD-01")  # registered already
    err = refusal(chain, forge(block, txs=(*block.txs, twice.raw)))
    assert err.check == "tx-rule" and "already-exists" in str(err)


def test_refuses_the_same_transaction_twice_in_one_block(busy):
    chain, block, _ = busy
    err = refusal(chain, forge(block, txs=block.txs + block.txs[:1]))
    assert err.check == "tx-rule" and "duplicate-transaction" in str(err)


def test_refuses_a_block_with_a_transaction_committed_earlier(busy):
    chain, block, (authority, terminal, child) = busy
    chain.finalize(execute_block(chain.store, block))
    earlier = chain.store.block(chain.height).txs[0]
    proposed, _ = chain.propose()
    err = refusal(chain, forge(proposed.block, txs=(earlier,)))
    assert err.check == "tx-duplicate"


def test_the_proposer_leaves_out_a_transaction_committed_earlier(chain: Chain):
    post = chain.register_post("MD-01")
    chain.commit(post)
    where = chain.location(post)
    proposed, refused = chain.propose([post])
    assert proposed.txs == [] and [type(err) for _, err in refused] == [DuplicateTransaction]
    assert chain.location(post) == where


def test_refuses_transaction_bytes_that_do_not_decode(busy):
    chain, block, _ = busy
    assert refusal(chain, forge(block, txs=(*block.txs, b"\xc1"))).check == "tx-encoding"


def test_refuses_evidence_that_proves_nothing(busy):
    chain, block, _ = busy
    (validator,) = chain.validator_keys.values()
    vote = sign_vote(validator, chain.chain_id, PRECOMMIT, 1, 0, b"\x01" * 32)
    same = DuplicateVoteEvidence(vote, vote)
    assert refusal(chain, forge(block, evidence=(same,))).check == "evidence"


def test_refuses_a_block_over_the_transaction_limit():
    chain = Chain(params=with_params(max_block_txs=1))
    proposed, _ = chain.propose([chain.register_post("MD-01")])
    second = chain.register_post("MD-02")
    assert refusal(chain, forge(proposed.block, txs=(*proposed.block.txs, second.raw))).check == "block-size"


# --------------------------------------------------------------------------- the log


def test_every_transaction_is_provably_in_the_log_of_every_later_header(chain: Chain):
    authority, terminal = chain.open_border()
    child = chain.enrol_child(authority)
    request = chain.pending_crossing(terminal, child)
    chain.commit(chain.approve(child.guardians[0], request, child))
    chain.commit(chain.approve(child.guardians[1], request, child), chain.register_post("MD-50"))
    log = chain.store.log()
    headers = [chain.store.header(h) for h in range(1, chain.height + 1)]

    assert headers[-1].log_size == log.size == 8 and headers[-1].log_root == log.root()
    for header in headers:
        block = chain.store.block(header.height)
        for position, raw in enumerate(block.txs):
            where = chain.store.tx_location(decode_tx(raw).id)
            assert (where.height, where.index) == (header.height, position)
            for later in headers[header.height - 1:]:
                proof = log.inclusion_proof(where.log_index, later.log_size)
                assert verify_inclusion(leaf_hash(raw), where.log_index, later.log_size, proof, later.log_root)
                assert not verify_inclusion(leaf_hash(raw + b"\x00"), where.log_index, later.log_size, proof,
                                            later.log_root)
            # and in the block's own transaction root
            leaves = [leaf_hash(t) for t in block.txs]
            assert verify_inclusion(leaves[position], position, len(leaves), inclusion_proof_of(leaves, position),
                                    header.tx_root)


def test_every_earlier_header_log_is_a_prefix_of_every_later_one(chain: Chain):
    authority, terminal = chain.open_border()
    for _ in range(3):
        chain.enrol_child(authority)
    chain.advance(SECOND)  # an empty block: same log size as its parent
    headers = [chain.store.header(h) for h in range(1, chain.height + 1)]
    log = chain.store.log()
    for i, old in enumerate(headers):
        for new in headers[i:]:
            proof = log.consistency_proof(old.log_size, new.log_size)
            assert verify_consistency(old.log_size, new.log_size, old.log_root, new.log_root, proof)
    first, last = headers[0], headers[-1]
    proof = log.consistency_proof(first.log_size, last.log_size)
    assert not verify_consistency(first.log_size, last.log_size, b"\x00" * 32, last.log_root, proof)
