"""Governance that evolves: protocol upgrades, parameters at a future height, the council itself,
validator keys; and an audit that re-executes old blocks under the rules they were made under."""

from __future__ import annotations

from dataclasses import replace

import pytest
from chainkit import DAY, Chain, keys

from ledger.audit.auditor import Auditor
from ledger.audit.source import StoreSource
from ledger.block import Block
from ledger.chain import execute_block
from ledger.crypto.keys import SigningKey
from ledger.errors import (
    AlreadyExists,
    InsufficientCouncilSignatures,
    InvalidBlock,
    InvalidValue,
    KindNotInProtocol,
    NotFound,
    StakeError,
    UnexpectedSignature,
)
from ledger.protocol import SUPPORTED, protocol_at


@pytest.fixture
def old() -> Chain:
    """A chain started under protocol version 1."""
    return Chain(protocol_version=1)


def test_version_2_kinds_wait_for_the_upgrade_height(old: Chain):
    newcomer = SigningKey.generate()
    old.assert_rejected(old.set_council(2, [*old.council, newcomer]), KindNotInProtocol)
    at = old.height + 3
    old.commit(old.schedule_upgrade(at, 2))
    old.assert_rejected(old.set_council(2, [*old.council, newcomer]), KindNotInProtocol)  # block at - 1
    assert old.store.block(at - 1).header.version == 1
    block = old.commit(old.set_council(2, [*old.council, newcomer]))
    assert block.height == at and block.block.header.version == 2
    assert protocol_at(old.store.state, at) == 2


def test_rejects_a_block_that_claims_the_wrong_version(old: Chain):
    at = old.height + 3
    old.commit(old.schedule_upgrade(at, 2))
    old.advance(1)
    executed, _ = old.propose([])
    assert executed.block.header.version == 2
    forged = Block(replace(executed.block.header, version=1), executed.block.txs, executed.block.last_commit,
                   executed.block.evidence)
    with pytest.raises(InvalidBlock) as err:
        execute_block(old.store, forged)
    assert err.value.check == "version"


@pytest.mark.parametrize("case", ["too-soon", "unknown-version", "not-newer"])
def test_rejects_an_upgrade_that_nodes_could_not_follow(old: Chain, case):
    height, version = {"too-soon": (old.height + 2, 2), "unknown-version": (old.height + 5, SUPPORTED[-1] + 1),
                       "not-newer": (old.height + 5, 1)}[case]
    old.assert_rejected(old.schedule_upgrade(height, version), InvalidValue)


def test_rejects_an_upgrade_without_a_council_quorum(old: Chain):
    old.assert_rejected(old.schedule_upgrade(old.height + 5, 2, signers=old.council[:1]),
                        InsufficientCouncilSignatures)


def test_an_audit_re_executes_each_block_under_the_rules_of_its_height(tmp_path):
    old = Chain(protocol_version=1, path=tmp_path / "store")  # a real LevelDB store
    authority, terminal = old.open_border()
    child = old.enrol_child(authority)
    old.pending_crossing(terminal, child)
    at = old.height + 3
    old.commit(old.schedule_upgrade(at, 2))
    old.advance(1)
    newcomer = SigningKey.generate()
    old.commit(old.set_council(2, [*old.council, newcomer]))
    old.commit(old.set_params(old.height + 3, replace(old.genesis.params, max_consent_ms=DAY)))
    old.advance(1)
    old.advance(1)
    old.advance(1)
    # protocol 4: from its height on, blocks also append to the transaction-id log in the state
    at = old.height + 3
    old.commit(old.schedule_upgrade(at, 4))
    old.advance(1)
    old.pending_crossing(terminal, child)
    assert old.store.block(at).header.version == 4 and old.store.state.get(b"txlog") is not None
    old.commit(old.erase(child))  # an erased transaction's stub still counts in the log
    old.advance(1)
    report = Auditor(StoreSource(old.store.kv, "memory store")).run()
    assert report.ok, report.failure
    assert report.checked_height == old.height


# --------------------------------------------------------------------------- parameters


def test_parameters_change_at_the_height_the_council_names(chain: Chain, authority):
    child = chain.enrol_child(authority)
    at = chain.height + 3
    chain.commit(chain.set_params(at, replace(chain.genesis.params, max_consent_ms=DAY)))
    chain.commit(chain.grant_consent(child, not_after=chain.now + 10 * DAY))  # still the old limit
    assert chain.height + 1 == at
    chain.assert_rejected(chain.grant_consent(child, not_after=chain.now + 10 * DAY), InvalidValue)
    chain.commit(chain.grant_consent(child, not_after=chain.now + DAY // 2))
    assert chain.store.chain.params.max_consent_ms == DAY  # the store follows the chain record


def test_rejects_a_parameter_change_too_soon_or_twice_for_one_height(chain: Chain):
    params = replace(chain.genesis.params, slash_bps=100)
    chain.assert_rejected(chain.set_params(chain.height + 2, params), InvalidValue)
    chain.commit(chain.set_params(chain.height + 5, params))
    chain.assert_rejected(chain.set_params(chain.height + 4, params), AlreadyExists)


# --------------------------------------------------------------------------- the council


def test_the_council_replaces_its_members_and_threshold(chain: Chain, border):
    a, b, c = chain.council
    d, e = keys(2)
    chain.commit(chain.set_council(3, [a, d, e]))
    # old members are out, and two signatures no longer make a quorum
    chain.assert_rejected(chain.register_post("MD-99", signers=[b, c]), UnexpectedSignature)
    chain.assert_rejected(chain.register_post("MD-99", signers=[a, d]), InsufficientCouncilSignatures)
    chain.commit(chain.register_post("MD-99", signers=[a, d, e]))


def test_rejects_a_council_whose_threshold_cannot_be_met_or_that_reuses_a_role_key(chain: Chain, border):
    authority, _ = border
    chain.assert_rejected(chain.set_council(4, list(chain.council)), InvalidValue)
    chain.assert_rejected(chain.set_council(2, [*chain.council, authority]), AlreadyExists)


# --------------------------------------------------------------------------- validator keys


def test_a_validators_stake_moves_to_its_new_key_after_the_delay():
    chain = Chain(validators=2)
    old_key = max(chain.validator_keys)
    stake = chain.validator_set(1).power_of(old_key)
    new = chain.add_validator()
    block = chain.commit(chain.rotate_validator(old_key, new.public))
    switch = block.height + chain.genesis.params.validator_delay
    assert old_key in chain.validator_set(switch - 1)
    after = chain.validator_set(switch)
    assert old_key not in after and after.power_of(new.public) == stake
    chain.advance(1)
    chain.advance(1)  # the new key signs from the switch height on
    assert chain.height >= switch


def test_rejects_rotating_a_key_that_is_no_validator_or_to_a_key_in_use(chain: Chain, border):
    authority, _ = border
    validator = next(iter(chain.validator_keys))
    chain.assert_rejected(chain.rotate_validator(SigningKey.generate().public, SigningKey.generate().public),
                          NotFound)
    chain.assert_rejected(chain.rotate_validator(validator, authority.public), AlreadyExists)


def test_rejects_rotating_a_jailed_validators_key():
    chain = Chain(validators=2)
    cheat = chain.validator_keys[min(chain.validator_keys)]
    chain.advance(1)
    chain.commit(evidence=[chain.double_vote(cheat, height=1)])
    assert chain.validator(cheat.public).jailed
    chain.assert_rejected(chain.rotate_validator(cheat.public, SigningKey.generate().public), StakeError)
