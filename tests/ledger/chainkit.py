"""A small chain for tests: keys, a genesis, a store, and one helper per transaction kind.

Tests read like the story they tell::

    chain = Chain()
    authority, terminal = chain.open_border()
    child = chain.enrol_child(authority)
    request = chain.crossing(terminal, child)
    chain.commit(request)
    chain.commit(chain.decide(child.guardians[0], request, child))

Transaction helpers (``register_post``, ``crossing``, ``decide``, ...) only *build* a signed
transaction, with the signers the rules expect; pass ``signers=[...]`` to sign otherwise.
``commit`` proposes a block with them, re-executes it as a validator would (so every test also
checks that proposer and validators agree), signs the precommits and stores it.
``reject`` proposes one transaction, expects the proposer to refuse it, and checks that it left
no trace in the state.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, replace
from pathlib import Path

from ledger.block import PRECOMMIT, PREVOTE, Commit, DuplicateVoteEvidence, sign_vote
from ledger.chain import ExecutedBlock, build_block, execute_block
from ledger.crypto.keys import SigningKey
from ledger.errors import RejectedTransaction
from ledger.genesis import Genesis, GenesisValidator
from ledger.privacy.tags import child_tag, order_hash
from ledger.protocol import LATEST
from ledger.rules.validators import validator_set_at
from ledger.state.machine import BlockExecution
from ledger.state.records import (
    ALERT,
    DEFAULT_PARAMS,
    IDENTITY_RECORD,
    KEY_ROLE,
    P_ALERT,
    VALIDATOR_RECORD,
    Alert,
    Consent,
    Council,
    Identity,
    KeyRole,
    Params,
    Request,
    ValidatorRecord,
    consent_by_id,
    k_alert,
    k_identity,
    k_revoked,
    k_role,
    k_validator,
    load,
    request_by_id,
    split_time_key,
)
from ledger.state.view import scan_prefix
from ledger.storage.chainstore import ChainStore, TxLocation
from ledger.tx import bodies as k
from ledger.tx.bodies import Policy
from ledger.tx.envelope import Transaction, make_tx
from ledger.validators import ValidatorSet

CHAIN_ID = "custos-test"
T0 = 1_700_000_000_000  # genesis time, ms since the epoch
SECOND = 1_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
YEAR = 365 * DAY
ORDER = order_hash(b"\x01" * 16, "court order 17/2024")
STAKE = 1_000


def keys(n: int) -> list[SigningKey]:
    return [SigningKey.generate() for _ in range(n)]


def sorted_keys(signing_keys: list[SigningKey]) -> tuple[bytes, ...]:
    return tuple(sorted(key.public for key in signing_keys))


@dataclass
class Terminal:
    key: SigningKey
    post: str

    @property
    def public(self) -> bytes:
        return self.key.public


@dataclass
class Child:
    """An enrolled child as the test knows it: the chain sees only the identity id and keys."""

    identity: bytes
    biometric: SigningKey  # the key re-derived from the child's biometrics at each scan
    guardians: list[SigningKey]
    majority_day: int
    policy: Policy

    @property
    def guardian_keys(self) -> tuple[bytes, ...]:
        return sorted_keys(self.guardians)


class Chain:
    """A chain with a council of three (threshold two) and ``validators`` validators."""

    def __init__(self, *, validators: int = 1, stake: int = STAKE, params: Params = DEFAULT_PARAMS,
                 path: str | Path | None = None, chain_id: str = CHAIN_ID, protocol_version: int = LATEST) -> None:
        self.chain_id = chain_id
        self.council = keys(3)
        self.validator_keys = {key.public: key for key in keys(validators)}
        self.genesis = Genesis(
            chain_id=chain_id,
            genesis_time=T0,
            council=Council(threshold=2, members=sorted_keys(self.council)),
            validators=tuple(GenesisValidator(pk, stake, f"validator-{i}")
                             for i, pk in enumerate(sorted(self.validator_keys))),
            params=params,
            protocol_version=protocol_version,
        )
        self.path = path
        self.store = ChainStore.open(path, self.genesis) if path is not None else ChainStore.memory(self.genesis)
        self._nonces = itertools.count(1)
        self._identities = itertools.count(1)
        self._posts = itertools.count(1)

    # ------------------------------------------------------------------ blocks

    @property
    def height(self) -> int:
        return self.store.tip.height

    @property
    def now(self) -> int:
        """The time of the last committed block."""
        return self.store.tip.time

    def next_time(self, time: int | None = None) -> int:
        return self.now + SECOND if time is None else time

    def last_commit(self) -> Commit | None:
        return self.store.commit(self.height) if self.height else None

    def proposer(self, height: int | None = None) -> bytes:
        height = self.height + 1 if height is None else height
        return validator_set_at(self.store.state, height).proposer(height, 0)

    def propose(self, txs: list[Transaction] | tuple[Transaction, ...] = (), *, time: int | None = None,
                evidence: tuple[DuplicateVoteEvidence, ...] | list[DuplicateVoteEvidence] = ()
                ) -> tuple[ExecutedBlock, list[tuple[Transaction, RejectedTransaction]]]:
        """Build (but do not store) the next block from ``txs``; returns it and the refused ones."""
        return build_block(self.store, list(txs), time=self.next_time(time), proposer=self.proposer(),
                           last_commit=self.last_commit(), evidence=evidence)

    def precommits(self, executed: ExecutedBlock, round_: int = 0) -> Commit:
        """Every known validator of the block's set precommits it."""
        votes = [sign_vote(self.validator_keys[v.key], self.chain_id, PRECOMMIT, executed.height, round_,
                           executed.hash)
                 for v in executed.changes.validators if v.key in self.validator_keys]
        return Commit.from_votes(votes)

    def finalize(self, executed: ExecutedBlock) -> ExecutedBlock:
        """Re-execute the proposed block as a validator would, then store it with its commit."""
        checked = execute_block(self.store, executed.block)
        assert checked.changes.state_root == executed.changes.state_root
        self.store.commit_block(checked, self.precommits(checked))
        return checked

    def commit(self, *txs: Transaction, time: int | None = None,
               evidence: tuple[DuplicateVoteEvidence, ...] | list[DuplicateVoteEvidence] = ()) -> ExecutedBlock:
        """Commit one block holding exactly ``txs``; fail the test if the proposer refuses any."""
        executed, rejected = self.propose(txs, time=time, evidence=evidence)
        if rejected:
            raise AssertionError("refused: " + "; ".join(f"{tx.kind}: {err.diagnostics()}" for tx, err in rejected))
        return self.finalize(executed)

    def advance(self, ms: int) -> ExecutedBlock:
        """Commit an empty block ``ms`` after the last one."""
        return self.commit(time=self.now + ms)

    def reject(self, tx: Transaction, *, time: int | None = None) -> RejectedTransaction:
        """Propose ``tx``; it must be refused and leave the state exactly as an empty block would.

        The block (without it) is committed, so the chain moves on as it would in production.
        """
        time = self.next_time(time)
        empty, _ = self.propose([], time=time)
        executed, rejected = self.propose([tx], time=time)
        assert executed.txs == [], f"{tx.kind} was accepted"
        assert [t for t, _ in rejected] == [tx]
        assert executed.changes.writes == empty.changes.writes, "a refused transaction changed the state"
        assert executed.changes.events == empty.changes.events, "a refused transaction raised events"
        self.finalize(executed)
        assert self.store.tx_location(tx.id) is None or rejected[0][1].rule == "duplicate-transaction"
        return rejected[0][1]

    def assert_rejected(self, tx: Transaction, error: type[RejectedTransaction], *,
                        time: int | None = None) -> RejectedTransaction:
        """``tx`` is refused with ``error`` (its class and its stable rule name) and changes nothing."""
        err = self.reject(tx, time=time)
        assert type(err) is error, f"expected {error.__name__}, got {type(err).__name__}: {err.diagnostics()}"
        assert err.rule == error.rule
        return err

    def reject_evidence(self, evidence: DuplicateVoteEvidence) -> RejectedTransaction:
        """Evidence the next block may not carry: the proposer leaves it out, and punishing it
        directly raises without touching the state."""
        proposed, _ = self.propose(evidence=[evidence])
        assert proposed.block.evidence == (), "the proposer included the evidence"
        execution = BlockExecution(self.store.state, self.store.chain, self.height + 1, self.next_time())
        try:
            execution.punish(evidence)
        except RejectedTransaction as err:
            assert execution.overlay.writes == {} and execution.punished == []
            return err
        raise AssertionError("the evidence was accepted")

    def state(self) -> dict[bytes, bytes]:
        """The whole state, for before/after comparisons."""
        return dict(self.store.kv.iterate(b"S", b"T"))

    # ------------------------------------------------------------------ reading the state

    def location(self, tx: Transaction) -> TxLocation | None:
        return self.store.tx_location(tx.id)

    def request(self, request: Transaction | bytes) -> Request:
        rid = request.id if isinstance(request, Transaction) else request
        record = request_by_id(self.store.state, rid)
        assert record is not None, "no such request"
        return record

    def status(self, request: Transaction | bytes) -> str:
        return self.request(request).status

    def identity(self, child: Child | bytes) -> Identity | None:
        identity = child.identity if isinstance(child, Child) else child
        return load(self.store.state, k_identity(identity), IDENTITY_RECORD)

    def consent(self, consent: Transaction | bytes) -> Consent | None:
        cid = consent.id if isinstance(consent, Transaction) else consent
        return consent_by_id(self.store.state, cid)

    def alerts(self) -> list[Alert]:
        """Every alert on the chain, in the order they were raised."""
        out = []
        for key, _ in scan_prefix(self.store.state, P_ALERT):
            _, identity, rid = split_time_key(P_ALERT, key)
            alert = load(self.store.state, k_alert(identity, rid), ALERT)
            assert alert is not None, "an alert index entry without its alert"
            out.append(alert)
        return out

    def role(self, key: bytes) -> KeyRole | None:
        return load(self.store.state, k_role(key), KEY_ROLE)

    def is_revoked(self, key: bytes) -> bool:
        return self.store.state.get(k_revoked(key)) is not None

    def validator(self, key: bytes) -> ValidatorRecord | None:
        return load(self.store.state, k_validator(key), VALIDATOR_RECORD)

    def validator_set(self, height: int) -> ValidatorSet:
        return validator_set_at(self.store.state, height)

    # ------------------------------------------------------------------ governance

    def gov(self, kind: str, body: object, signers: list[SigningKey] | None = None) -> Transaction:
        """A council transaction, signed by two of the three members unless told otherwise."""
        return make_tx(kind, body, next(self._nonces), self.council[:2] if signers is None else signers,
                       self.chain_id)

    def register_authority(self, key: bytes, label: str = "civil registry", **kw) -> Transaction:
        return self.gov(k.GOV_REGISTER_AUTHORITY, k.RegisterAuthority(key, label), **kw)

    def register_post(self, post: str, label: str = "border post", **kw) -> Transaction:
        return self.gov(k.GOV_REGISTER_POST, k.RegisterPost(post, label), **kw)

    def register_terminal(self, key: bytes, post: str, label: str = "lane 1", **kw) -> Transaction:
        return self.gov(k.GOV_REGISTER_TERMINAL, k.RegisterTerminal(key, post, label), **kw)

    def register_auditor(self, key: bytes, label: str = "ombudsman", **kw) -> Transaction:
        return self.gov(k.GOV_REGISTER_AUDITOR, k.RegisterAuditor(key, label), **kw)

    def set_validator(self, key: bytes, stake: int, **kw) -> Transaction:
        return self.gov(k.GOV_SET_VALIDATOR, k.SetValidator(key, stake), **kw)

    def revoke(self, key: bytes, reason: str = "compromised", **kw) -> Transaction:
        return self.gov(k.GOV_REVOKE_KEY, k.RevokeKey(key, k.REVOKE_REASONS.index(reason)), **kw)

    def erase(self, child: Child, *, order: bytes = b"\x07" * 32, basis: str = "court-order", **kw) -> Transaction:
        return self.gov(k.GOV_ERASE, k.EraseIdentity(child_tag(child.identity), order, k.ERASE_BASES.index(basis)),
                        **kw)

    def rotate(self, old: bytes, new: bytes, **kw) -> Transaction:
        return self.gov(k.GOV_ROTATE_KEY, k.RotateKey(old, new), **kw)

    def schedule_upgrade(self, height: int, version: int, **kw) -> Transaction:
        return self.gov(k.GOV_SCHEDULE_UPGRADE, k.ScheduleUpgrade(height, version), **kw)

    def set_params(self, height: int, params: Params, **kw) -> Transaction:
        return self.gov(k.GOV_SET_PARAMS, k.SetParams(height, params), **kw)

    def set_council(self, threshold: int, members: list[SigningKey], **kw) -> Transaction:
        return self.gov(k.GOV_SET_COUNCIL, k.SetCouncil(threshold, sorted_keys(members)), **kw)

    def rotate_validator(self, old: bytes, new: bytes, **kw) -> Transaction:
        return self.gov(k.GOV_ROTATE_VALIDATOR, k.RotateValidator(old, new), **kw)

    def add_validator(self, stake: int = STAKE) -> SigningKey:
        """Generate a validator key the kit will sign precommits with (bond it separately)."""
        key = SigningKey.generate()
        self.validator_keys[key.public] = key
        return key

    # ------------------------------------------------------------------ identities

    def new_child(self, *, guardians: int = 2, approvals: int = 2, veto: bool = True, deadline: int = HOUR,
                  minor: bool = True) -> Child:
        """A child not yet on chain: fresh identity id, biometric key and guardian keys."""
        n = next(self._identities)
        majority = (T0 + 10 * YEAR if minor else T0 - YEAR) // DAY
        return Child(identity=n.to_bytes(16, "big"), biometric=SigningKey.generate(), guardians=keys(guardians),
                     majority_day=majority, policy=Policy(approvals, deadline, veto))

    def enrol(self, authority: SigningKey, child: Child, *, signers: list[SigningKey] | None = None) -> Transaction:
        body = k.Enrol(authority.public, child.identity, child.biometric.public, child.majority_day,
                       child.guardian_keys, child.policy)
        return make_tx(k.ENROL, body, next(self._nonces),
                       [authority, child.biometric] if signers is None else signers, self.chain_id)

    def update_guardians(self, authority: SigningKey, child: Child, guardians: list[SigningKey],
                         policy: Policy | None = None, *, order: bytes = ORDER,
                         signers: list[SigningKey] | None = None) -> Transaction:
        body = k.UpdateGuardians(authority.public, child.identity, sorted_keys(guardians),
                                 child.policy if policy is None else policy, order)
        return make_tx(k.UPDATE_GUARDIANS, body, next(self._nonces), [authority] if signers is None else signers,
                       self.chain_id)

    def reenrol(self, authority: SigningKey, child: Child, biometric: SigningKey, *,
                signers: list[SigningKey] | None = None) -> Transaction:
        body = k.Reenrol(authority.public, child.identity, biometric.public)
        return make_tx(k.REENROL, body, next(self._nonces), [authority, biometric] if signers is None else signers,
                       self.chain_id)

    # ------------------------------------------------------------------ crossings

    def crossing(self, terminal: Terminal, child: Child, *, direction: str = k.EXIT, event_time: int | None = None,
                 destination: str = "RO", companion: bytes | None = None, post: str | None = None,
                 signers: list[SigningKey] | None = None) -> Transaction:
        """A terminal's request, co-signed by the child's biometric key (from today's scan)."""
        body = k.CrossingRequest(terminal.public, child.identity, terminal.post if post is None else post,
                                 direction, self.now + SECOND // 2 if event_time is None else event_time,
                                 destination, companion)
        return make_tx(k.CROSSING, body, next(self._nonces),
                       [terminal.key, child.biometric] if signers is None else signers, self.chain_id)

    def decide(self, guardian: SigningKey, request: Transaction | bytes, child: Child, decision: str = k.APPROVE,
               *, reason: str = "unspecified", signers: list[SigningKey] | None = None) -> Transaction:
        rid = request.id if isinstance(request, Transaction) else request
        body = k.GuardianDecision(guardian.public, rid, child.identity, decision, k.DENY_REASONS.index(reason))
        return make_tx(k.DECISION, body, next(self._nonces), [guardian] if signers is None else signers,
                       self.chain_id)

    def approve(self, guardian: SigningKey, request: Transaction | bytes, child: Child, **kw) -> Transaction:
        return self.decide(guardian, request, child, k.APPROVE, **kw)

    def deny(self, guardian: SigningKey, request: Transaction | bytes, child: Child, **kw) -> Transaction:
        return self.decide(guardian, request, child, k.DENY, reason="not-informed", **kw)

    def grant_consent(self, child: Child, *, not_before: int | None = None, not_after: int | None = None,
                      direction: str = k.EXIT, destination: str | None = "RO", companion: bytes | None = None,
                      uses: int = 1, signers: list[SigningKey] | None = None) -> Transaction:
        """A travel consent signed by all of the child's guardians, for the next 30 days by default."""
        start = self.now if not_before is None else not_before
        body = k.GrantConsent(child.identity, start, start + 30 * DAY if not_after is None else not_after,
                              direction, destination, companion, uses)
        return make_tx(k.GRANT_CONSENT, body, next(self._nonces), child.guardians if signers is None else signers,
                       self.chain_id)

    def revoke_consent(self, guardian: SigningKey, consent: Transaction | bytes, child: Child, *,
                       signers: list[SigningKey] | None = None) -> Transaction:
        cid = consent.id if isinstance(consent, Transaction) else consent
        return make_tx(k.REVOKE_CONSENT, k.RevokeConsent(guardian.public, cid, child.identity), next(self._nonces),
                       [guardian] if signers is None else signers, self.chain_id)

    # ------------------------------------------------------------------ stories

    def open_border(self, post: str | None = None) -> tuple[SigningKey, Terminal]:
        """Council registers an enrolment authority, a border post and one terminal there."""
        post = f"MD-{next(self._posts):02d}" if post is None else post
        authority, terminal = SigningKey.generate(), Terminal(SigningKey.generate(), post)
        self.commit(self.register_authority(authority.public), self.register_post(post),
                    self.register_terminal(terminal.public, post))
        return authority, terminal

    def add_terminal(self, post: str) -> Terminal:
        terminal = Terminal(SigningKey.generate(), post)
        self.commit(self.register_terminal(terminal.public, post))
        return terminal

    def enrol_child(self, authority: SigningKey, **kw) -> Child:
        """A child enrolled on chain (two guardians, both must approve, any denial vetoes)."""
        child = self.new_child(**kw)
        self.commit(self.enrol(authority, child))
        return child

    def child_with_history(self, authority: SigningKey, terminal: Terminal, *,
                           companion: bytes = b"\x42" * 16) -> tuple[Child, list[Transaction]]:
        """A child with a random identity id (finding it in a file means something), enrolled,
        with a consent, a crossing it covered (both naming ``companion``), and a crossing one
        guardian approved and the other denied. Returns the child and every transaction about
        it, in chain order."""
        child = replace(self.new_child(), identity=os.urandom(16))
        enrol = self.enrol(authority, child)
        self.commit(enrol)
        consent = self.grant_consent(child, companion=companion)
        self.commit(consent)
        covered = self.crossing(terminal, child, companion=companion)
        self.commit(covered)
        pending = self.crossing(terminal, child, direction=k.ENTRY)
        self.commit(pending)
        approve, deny = self.approve(child.guardians[0], pending, child), self.deny(child.guardians[1], pending, child)
        self.commit(approve, deny)
        return child, [enrol, consent, covered, pending, approve, deny]

    def pending_crossing(self, terminal: Terminal, child: Child, **kw) -> Transaction:
        """A minor's crossing committed and left pending for the guardians."""
        request = self.crossing(terminal, child, **kw)
        self.commit(request)
        assert self.status(request) == "pending"
        return request

    def double_vote(self, validator: SigningKey, height: int, *, round_: int = 0, kind: str = PREVOTE,
                    chain_id: str | None = None) -> DuplicateVoteEvidence:
        """Evidence that ``validator`` voted for two different blocks at one height and round."""
        cid = self.chain_id if chain_id is None else chain_id
        first = sign_vote(validator, cid, kind, height, round_, b"\x01" * 32)
        second = sign_vote(validator, cid, kind, height, round_, b"\x02" * 32)
        return DuplicateVoteEvidence.of(first, second)

    def reopen(self) -> Chain:
        """Close and reopen the LevelDB store (the keys stay)."""
        assert self.path is not None
        self.store.close()
        self.store = ChainStore.open(self.path, self.genesis)
        return self


def with_params(**changes: int) -> Params:
    return replace(DEFAULT_PARAMS, **changes)
