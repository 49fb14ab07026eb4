"""Council governance: registering roles and posts, revoking and rotating keys, the k-of-n quorum."""

from __future__ import annotations

import pytest
from chainkit import Chain, keys

from ledger.chain import execute_block
from ledger.crypto.keys import SigningKey
from ledger.errors import (
    AlreadyExists,
    InsufficientCouncilSignatures,
    InvalidBlock,
    InvalidValue,
    NotFound,
    RevokedKey,
    UnexpectedSignature,
)
from ledger.state.records import REVOCATION, Revocation, k_post, k_revoked, load
from ledger.tx.bodies import (
    GOV_REGISTER_AUTHORITY,
    REVOKE_REASONS,
    ROLE_AUDITOR,
    ROLE_AUTHORITY,
    ROLE_TERMINAL,
    RegisterAuthority,
)
from ledger.tx.envelope import make_tx

# --------------------------------------------------------------------------- registering


def test_council_registers_an_enrolment_authority(chain: Chain):
    authority = SigningKey.generate()
    chain.commit(chain.register_authority(authority.public, "civil registry of Chisinau"))
    role = chain.role(authority.public)
    assert (role.role, role.label, role.post) == (ROLE_AUTHORITY, "civil registry of Chisinau", None)


def test_council_registers_a_post_and_a_terminal_bound_to_it(chain: Chain):
    terminal = SigningKey.generate()
    chain.commit(chain.register_post("MD-LEUSENI", "Leuseni crossing"))
    chain.commit(chain.register_terminal(terminal.public, "MD-LEUSENI", "lane 3"))
    assert chain.store.state.get(k_post("MD-LEUSENI")) is not None
    role = chain.role(terminal.public)
    assert (role.role, role.post) == (ROLE_TERMINAL, "MD-LEUSENI")


def test_council_registers_an_auditor(chain: Chain):
    auditor = SigningKey.generate()
    chain.commit(chain.register_auditor(auditor.public))
    assert chain.role(auditor.public).role == ROLE_AUDITOR


@pytest.mark.parametrize("members", [(0, 1), (0, 2), (1, 2), (0, 1, 2)])
def test_any_two_of_the_three_members_suffice(chain: Chain, members):
    key = SigningKey.generate()
    chain.commit(chain.register_auditor(key.public, signers=[chain.council[i] for i in members]))
    assert chain.role(key.public) is not None


def test_rejects_registering_a_key_that_already_has_a_role(chain: Chain, border):
    authority, terminal = border
    chain.assert_rejected(chain.register_auditor(terminal.public), AlreadyExists)
    chain.assert_rejected(chain.register_terminal(authority.public, terminal.post), AlreadyExists)
    assert chain.role(authority.public).role == ROLE_AUTHORITY


def test_rejects_giving_a_role_to_a_key_used_elsewhere(chain: Chain, authority, terminal):
    child = chain.enrol_child(authority)
    validator = next(iter(chain.validator_keys))
    for used in (child.guardians[0].public, child.biometric.public, chain.council[0].public, validator):
        chain.assert_rejected(chain.register_terminal(used, terminal.post), AlreadyExists)
        chain.assert_rejected(chain.register_auditor(used), AlreadyExists)


def test_rejects_registering_a_revoked_key(chain: Chain, terminal):
    chain.commit(chain.revoke(terminal.public))
    chain.assert_rejected(chain.register_terminal(terminal.public, terminal.post), RevokedKey)


def test_rejects_registering_a_post_twice(chain: Chain, terminal):
    chain.assert_rejected(chain.register_post(terminal.post, "a second label"), AlreadyExists)


def test_rejects_a_terminal_for_an_unregistered_post(chain: Chain):
    chain.assert_rejected(chain.register_terminal(SigningKey.generate().public, "NOWHERE"), NotFound)


# --------------------------------------------------------------------------- council quorum


def test_rejects_one_signature_when_two_are_needed(chain: Chain):
    key = SigningKey.generate()
    err = chain.assert_rejected(chain.register_authority(key.public, signers=chain.council[:1]),
                                InsufficientCouncilSignatures)
    assert err.rule == "council-quorum"
    assert chain.role(key.public) is None


def test_rejects_a_signature_by_a_non_member(chain: Chain):
    outsider = SigningKey.generate()
    key = SigningKey.generate()
    # even with two genuine members on board, a stranger's signature spoils the transaction
    chain.assert_rejected(chain.register_authority(key.public, signers=[*chain.council[:2], outsider]),
                          UnexpectedSignature)
    chain.assert_rejected(chain.register_authority(key.public, signers=[chain.council[0], outsider]),
                          UnexpectedSignature)
    assert chain.role(key.public) is None


def test_rejects_a_signature_by_a_revoked_member(chain: Chain):
    chain.commit(chain.revoke(chain.council[2].public, signers=chain.council[:2]))
    key = SigningKey.generate()
    chain.assert_rejected(chain.register_authority(key.public, signers=[chain.council[0], chain.council[2]]),
                          RevokedKey)
    chain.commit(chain.register_authority(key.public, signers=chain.council[:2]))  # the others still can


def test_rejects_governance_signed_for_another_chain(chain: Chain):
    key = SigningKey.generate()
    foreign = make_tx(GOV_REGISTER_AUTHORITY, RegisterAuthority(key.public, "registry"), 1, chain.council[:2],
                      "custos-staging")
    assert foreign.bad_signatures("custos-staging") == []
    assert sorted(foreign.bad_signatures(chain.chain_id)) == sorted(k.public for k in chain.council[:2])
    proposed, _ = chain.propose([foreign])
    with pytest.raises(InvalidBlock) as exc:
        execute_block(chain.store, proposed.block)
    assert exc.value.check == "tx-signature"
    assert chain.height == 0 and chain.role(key.public) is None


# --------------------------------------------------------------------------- revoking


def test_revocation_is_recorded_with_its_reason(chain: Chain, terminal):
    block = chain.commit(chain.revoke(terminal.public, "compromised"))
    record = load(chain.store.state, k_revoked(terminal.public), REVOCATION)
    assert record == Revocation(height=block.height, reason=REVOKE_REASONS.index("compromised"))


def test_rejects_revoking_a_key_twice(chain: Chain, terminal):
    chain.commit(chain.revoke(terminal.public))
    chain.assert_rejected(chain.revoke(terminal.public), AlreadyExists)


def test_a_key_revoked_before_it_is_used_can_never_be_registered(chain: Chain):
    # a governance rule never asks whether a key is a guardian's (children's records may be
    # erased), so any key can be revoked, for example one known to be stolen before its use
    stranger = SigningKey.generate()
    chain.commit(chain.revoke(stranger.public, "compromised"))
    assert chain.is_revoked(stranger.public)
    chain.assert_rejected(chain.register_auditor(stranger.public), RevokedKey)


def test_rejects_revoking_a_member_when_the_council_would_lose_its_quorum(chain: Chain):
    chain.commit(chain.revoke(chain.council[2].public))
    chain.assert_rejected(chain.revoke(chain.council[1].public), InvalidValue)
    assert not chain.is_revoked(chain.council[1].public)


def test_rejects_revoking_the_last_validator(chain: Chain):
    (validator,) = chain.validator_keys
    chain.assert_rejected(chain.revoke(validator), InvalidValue)


def test_guardian_and_biometric_keys_can_be_revoked(chain: Chain, authority):
    child = chain.enrol_child(authority)
    chain.commit(chain.revoke(child.guardians[0].public), chain.revoke(child.biometric.public))
    assert chain.is_revoked(child.guardians[0].public) and chain.is_revoked(child.biometric.public)


# --------------------------------------------------------------------------- rotating


def test_rotating_a_terminal_key_moves_its_role(chain: Chain, authority, terminal):
    child = chain.enrol_child(authority, minor=False)
    new = SigningKey.generate()
    chain.commit(chain.rotate(terminal.public, new.public))
    assert chain.role(terminal.public) is None and chain.is_revoked(terminal.public)
    assert chain.role(new.public).post == terminal.post

    chain.assert_rejected(chain.crossing(terminal, child), RevokedKey)
    terminal.key = new
    request = chain.crossing(terminal, child)
    chain.commit(request)
    assert chain.status(request) == "permitted"


def test_rotating_a_guardian_key_moves_guardianship(chain: Chain, authority, terminal):
    child = chain.enrol_child(authority)
    old, new = child.guardians[0], SigningKey.generate()
    chain.commit(chain.rotate(old.public, new.public))
    record = chain.identity(child)
    assert old.public not in record.guardians and new.public in record.guardians
    assert record.version == 2

    request = chain.pending_crossing(terminal, child)
    assert set(chain.request(request).guardians) == {new.public, child.guardians[1].public}
    chain.assert_rejected(chain.approve(old, request, child), RevokedKey)
    chain.commit(chain.approve(new, request, child), chain.approve(child.guardians[1], request, child))
    assert chain.status(request) == "permitted"


def test_rotating_a_council_key_moves_membership(chain: Chain):
    old, new = chain.council[0], SigningKey.generate()
    chain.commit(chain.rotate(old.public, new.public))
    key = SigningKey.generate()
    chain.assert_rejected(chain.register_auditor(key.public, signers=[old, chain.council[1]]), UnexpectedSignature)
    chain.commit(chain.register_auditor(key.public, signers=[new, chain.council[1]]))
    assert chain.role(key.public) is not None


def test_rejects_rotating_to_the_same_key(chain: Chain, terminal):
    chain.assert_rejected(chain.rotate(terminal.public, terminal.public), InvalidValue)


def test_rejects_rotating_to_a_key_that_has_a_role(chain: Chain, border):
    authority, terminal = border
    chain.assert_rejected(chain.rotate(terminal.public, authority.public), AlreadyExists)


def test_rejects_rotating_to_a_council_member(chain: Chain, terminal):
    chain.assert_rejected(chain.rotate(terminal.public, chain.council[2].public), AlreadyExists)


def test_rejects_rotating_to_a_guardian(chain: Chain, authority, terminal):
    child = chain.enrol_child(authority)
    chain.assert_rejected(chain.rotate(terminal.public, child.guardians[0].public), AlreadyExists)


def test_rejects_rotating_to_a_revoked_key(chain: Chain, border):
    authority, terminal = border
    retired = chain.add_terminal(terminal.post)
    chain.commit(chain.revoke(retired.public))
    chain.assert_rejected(chain.rotate(terminal.public, retired.public), RevokedKey)


def test_rejects_rotating_a_revoked_key(chain: Chain, terminal):
    chain.commit(chain.revoke(terminal.public))
    chain.assert_rejected(chain.rotate(terminal.public, SigningKey.generate().public), RevokedKey)


def test_rotating_a_key_without_a_role_revokes_it_and_moves_nothing(chain: Chain):
    (stranger, new) = keys(2)
    chain.commit(chain.rotate(stranger.public, new.public))
    assert chain.is_revoked(stranger.public)
    assert chain.role(new.public) is None and not chain.is_revoked(new.public)


def test_rejects_rotation_without_quorum(chain: Chain, terminal):
    new = SigningKey.generate()
    chain.assert_rejected(chain.rotate(terminal.public, new.public, signers=chain.council[2:]),
                          InsufficientCouncilSignatures)
    assert chain.role(new.public) is None
