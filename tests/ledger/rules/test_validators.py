"""Validator-set changes (fixed delay) and the punishment of equivocation (slash and jail)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from chainkit import SECOND, STAKE, Chain, with_params

from ledger.block import (
    PRECOMMIT,
    Block,
    Commit,
    DuplicateVoteEvidence,
    commit_hash,
    evidence_hash,
    sign_vote,
)
from ledger.chain import execute_block
from ledger.crypto.keys import SigningKey
from ledger.errors import (
    InsufficientCouncilSignatures,
    InvalidBlock,
    InvalidEvidence,
    NotFound,
    RevokedKey,
    StakeError,
)
from ledger.state.records import ValidatorRecord


@pytest.fixture
def two() -> Chain:
    """A chain with two validators of equal stake: both must precommit every block."""
    chain = Chain(validators=2)
    chain.advance(SECOND)
    return chain


def slashed(stake: int, chain: Chain) -> int:
    return stake - stake * chain.genesis.params.slash_bps // 10_000


# --------------------------------------------------------------------------- bonding


def test_bonding_takes_effect_exactly_validator_delay_blocks_later(chain: Chain):
    delay = chain.genesis.params.validator_delay
    (old,) = chain.validator_keys
    new = chain.add_validator()
    h = chain.commit(chain.set_validator(new.public, 2 * STAKE)).height
    assert chain.validator(new.public) == ValidatorRecord(stake=2 * STAKE, jailed=False)
    for _ in range(delay + 1):
        chain.advance(SECOND)

    for height in range(h, h + delay):
        assert new.public not in chain.validator_set(height)
    assert chain.validator_set(h + delay).power_of(new.public) == 2 * STAKE
    # each header names the set that signs it and the one that signs the next block
    headers = {height: chain.store.header(height) for height in range(h, h + delay + 1)}
    assert headers[h + delay - 1].validators_hash == chain.validator_set(h).hash
    assert headers[h + delay - 1].next_validators_hash == chain.validator_set(h + delay).hash
    assert headers[h + delay].validators_hash == chain.validator_set(h + delay).hash
    # from then on the old validator alone no longer carries two thirds of the power
    proposed, _ = chain.propose()
    alone = Commit.from_votes([sign_vote(chain.validator_keys[old], chain.chain_id, PRECOMMIT, chain.height, 0,
                                         chain.store.tip.hash)])
    forged = Block(replace(proposed.block.header, last_commit_hash=commit_hash(alone)), proposed.block.txs, alone, ())
    with pytest.raises(InvalidBlock) as exc:
        execute_block(chain.store, forged)
    assert exc.value.check == "commit-quorum"


def test_changing_stake_changes_voting_power_after_the_delay(two: Chain):
    delay = two.genesis.params.validator_delay
    key = min(two.validator_keys)
    h = two.commit(two.set_validator(key, 5 * STAKE)).height
    assert two.validator_set(h + delay - 1).power_of(key) == STAKE
    assert two.validator_set(h + delay).power_of(key) == 5 * STAKE


def test_unbonding_removes_the_validator_after_the_delay(two: Chain):
    delay = two.genesis.params.validator_delay
    leaving = min(two.validator_keys)
    h = two.commit(two.set_validator(leaving, 0)).height
    assert leaving in two.validator_set(h + delay - 1)
    assert leaving not in two.validator_set(h + delay)
    for _ in range(delay + 1):  # the chain goes on with the remaining validator
        two.advance(SECOND)


def test_revoking_a_validator_key_removes_it_after_the_delay(two: Chain):
    delay = two.genesis.params.validator_delay
    compromised = min(two.validator_keys)
    h = two.commit(two.revoke(compromised, "compromised")).height
    assert compromised in two.validator_set(h + delay - 1)
    assert compromised not in two.validator_set(h + delay)


def test_rejects_unbonding_a_key_that_is_not_a_validator(chain: Chain):
    chain.assert_rejected(chain.set_validator(SigningKey.generate().public, 0), NotFound)


def test_rejects_bonding_a_revoked_key(two: Chain):
    key = min(two.validator_keys)
    two.commit(two.revoke(key))
    two.assert_rejected(two.set_validator(key, STAKE), RevokedKey)


def test_rejects_unbonding_the_last_validator(chain: Chain):
    (only,) = chain.validator_keys
    err = chain.assert_rejected(chain.set_validator(only, 0), StakeError)
    assert err.rule == "validator-set"
    assert chain.validator(only).stake == STAKE


def test_rejects_bonding_without_the_council_quorum(chain: Chain):
    key = SigningKey.generate().public
    chain.assert_rejected(chain.set_validator(key, STAKE, signers=chain.council[:1]), InsufficientCouncilSignatures)
    assert chain.validator(key) is None


# --------------------------------------------------------------------------- equivocation


def test_double_vote_slashes_and_jails_the_validator(two: Chain):
    delay = two.genesis.params.validator_delay
    cheat = two.validator_keys[min(two.validator_keys)]
    evidence = two.double_vote(cheat, height=1)
    block = two.commit(evidence=[evidence])
    h = block.height
    assert block.block.evidence == (evidence,)
    assert block.changes.punished == [cheat.public]
    assert two.validator(cheat.public) == ValidatorRecord(stake=slashed(STAKE, two), jailed=True)
    assert cheat.public in two.validator_set(h + delay - 1)
    assert cheat.public not in two.validator_set(h + delay)
    for _ in range(delay + 1):  # the honest validator carries on alone
        two.advance(SECOND)


def test_double_precommit_in_a_later_round_is_punished_too(two: Chain):
    cheat = two.validator_keys[min(two.validator_keys)]
    two.commit(evidence=[two.double_vote(cheat, height=1, round_=3, kind=PRECOMMIT)])
    assert two.validator(cheat.public).jailed


def test_rejects_the_same_evidence_twice(two: Chain):
    cheat = two.validator_keys[min(two.validator_keys)]
    evidence = two.double_vote(cheat, height=1)
    two.commit(evidence=[evidence])
    stake = two.validator(cheat.public).stake

    err = two.reject_evidence(evidence)
    assert type(err) is InvalidEvidence and err.rule == "invalid-evidence"
    # a proposer that carries it anyway has its block refused
    proposed, _ = two.propose()
    forged = Block(replace(proposed.block.header, evidence_hash=evidence_hash([evidence])), proposed.block.txs,
                   proposed.block.last_commit, (evidence,))
    with pytest.raises(InvalidBlock) as exc:
        execute_block(two.store, forged)
    assert exc.value.check == "evidence"
    assert two.validator(cheat.public).stake == stake


def test_rejects_another_proof_of_an_offence_already_punished(two: Chain):
    cheat = two.validator_keys[min(two.validator_keys)]
    first = two.double_vote(cheat, height=1)
    two.commit(evidence=[first])
    third_vote = sign_vote(cheat, two.chain_id, first.a.kind, 1, 0, b"\x03" * 32)
    other_pair = DuplicateVoteEvidence.of(first.a, third_vote)
    assert other_pair.hash != first.hash
    assert type(two.reject_evidence(other_pair)) is InvalidEvidence


def test_rejects_votes_that_do_not_conflict(two: Chain):
    key = two.validator_keys[min(two.validator_keys)]
    vote = sign_vote(key, two.chain_id, PRECOMMIT, 1, 0, b"\x01" * 32)
    later = sign_vote(key, two.chain_id, PRECOMMIT, 1, 1, b"\x02" * 32)  # another round is no equivocation
    assert type(two.reject_evidence(DuplicateVoteEvidence(vote, vote))) is InvalidEvidence
    assert type(two.reject_evidence(DuplicateVoteEvidence.of(vote, later))) is InvalidEvidence
    assert not two.validator(key.public).jailed


def test_rejects_evidence_from_the_future(two: Chain):
    cheat = two.validator_keys[min(two.validator_keys)]
    assert type(two.reject_evidence(two.double_vote(cheat, height=two.height + 1))) is InvalidEvidence


def test_rejects_evidence_older_than_the_maximum_age():
    chain = Chain(validators=2, params=with_params(evidence_max_age=2))
    for _ in range(3):
        chain.advance(SECOND)
    cheat = chain.validator_keys[min(chain.validator_keys)]
    assert type(chain.reject_evidence(chain.double_vote(cheat, height=1))) is InvalidEvidence
    chain.commit(evidence=[chain.double_vote(cheat, height=2)])  # still young enough
    assert chain.validator(cheat.public).jailed


def test_rejects_evidence_signed_for_another_chain(two: Chain):
    cheat = two.validator_keys[min(two.validator_keys)]
    foreign = two.double_vote(cheat, height=1, chain_id="custos-staging")
    assert type(two.reject_evidence(foreign)) is InvalidEvidence


def test_rejects_evidence_against_a_key_that_was_not_a_validator(two: Chain):
    assert type(two.reject_evidence(two.double_vote(SigningKey.generate(), height=1))) is InvalidEvidence


def test_council_releases_a_jailed_validator_by_bonding_it_again(two: Chain):
    delay = two.genesis.params.validator_delay
    cheat = two.validator_keys[min(two.validator_keys)]
    two.commit(evidence=[two.double_vote(cheat, height=1)])
    h = two.commit(two.set_validator(cheat.public, STAKE)).height
    assert two.validator(cheat.public) == ValidatorRecord(stake=STAKE, jailed=False)
    assert two.validator_set(h + delay).power_of(cheat.public) == STAKE


def test_the_last_validator_is_slashed_but_not_removed(chain: Chain):
    delay = chain.genesis.params.validator_delay
    chain.advance(SECOND)
    (only,) = chain.validator_keys.values()
    h = chain.commit(evidence=[chain.double_vote(only, height=1)]).height
    assert chain.validator(only.public) == ValidatorRecord(stake=slashed(STAKE, chain), jailed=True)
    assert chain.validator_set(h + delay).power_of(only.public) == slashed(STAKE, chain)
    for _ in range(delay + 1):
        chain.advance(SECOND)


def test_rejects_evidence_whose_votes_are_out_of_order(two: Chain):
    """One offence has one evidence hash: the pair must be in canonical order."""
    cheat = two.validator_keys[min(two.validator_keys)]
    evidence = two.double_vote(cheat, height=1)
    swapped = DuplicateVoteEvidence(evidence.b, evidence.a)
    assert type(two.reject_evidence(swapped)) is InvalidEvidence
    assert not two.validator(cheat.public).jailed


def test_rejects_evidence_against_a_validator_jailed_already(two: Chain):
    cheat = two.validator_keys[min(two.validator_keys)]
    two.commit(evidence=[two.double_vote(cheat, height=1)])
    stake = two.validator(cheat.public).stake
    later = two.double_vote(cheat, height=2, round_=1)  # another offence before the jail applies
    assert type(two.reject_evidence(later)) is InvalidEvidence
    assert two.validator(cheat.public).stake == stake


def test_a_validator_bonded_again_by_the_council_can_be_punished_again(two: Chain):
    cheat = two.validator_keys[min(two.validator_keys)]
    two.commit(evidence=[two.double_vote(cheat, height=1)])
    two.commit(two.set_validator(cheat.public, STAKE))
    two.commit(evidence=[two.double_vote(cheat, height=2)])
    assert two.validator(cheat.public) == ValidatorRecord(stake=slashed(STAKE, two), jailed=True)
