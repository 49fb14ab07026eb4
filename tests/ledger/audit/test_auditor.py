"""The auditor against chains built in memory: certificates against the set and stakes in force
at each height (set changes and slashing followed from genesis), the rules re-executed, the
store's own records, and a parallel run that reports exactly what a serial run reports."""

from __future__ import annotations

from dataclasses import replace

import pytest
from chainkit import Chain

from ledger.audit.auditor import Auditor
from ledger.audit.source import StoreSource
from ledger.block import BLOCK, COMMIT, commit_hash
from ledger.chain import execute_block
from ledger.crypto.keys import SigningKey
from ledger.errors import StorageError
from ledger.genesis import GENESIS
from ledger.storage.chainstore import ChainStore
from ledger.storage.kv import LevelKV
from ledger.tx.envelope import make_tx
from node.audit.datadir import DataDirSource

from .chainforge import (
    block_at,
    block_key,
    commit_at,
    commit_key,
    flip,
    flip_inside,
    put,
    replace_txs,
    sign_commit,
    store_block,
)
from .conftest import copy_kv


def run_audit(kv, *, jobs: int = 1, pool=None, genesis=None):
    report = Auditor(StoreSource(kv, "memory store"), jobs=jobs, pool=pool, genesis=genesis).run()
    return report


def failure_of(report) -> tuple[int, str, str]:
    f = report.failure
    assert f is not None, "the audit passed"
    return f.height, f.check, f.obj


def keys_of(multi, height: int) -> list[SigningKey]:
    """The known keys of the validators in force at ``height``."""
    vs = multi.chain.validator_set(height)
    return [multi.chain.validator_keys[v.key] for v in vs if v.key in multi.chain.validator_keys]


# --------------------------------------------------------------------------- a multi-validator chain


def test_multi_validator_chain_with_set_changes_and_slashing_passes(multi, pool):
    serial = run_audit(multi.chain.store.kv)
    assert serial.ok, serial.failure
    assert serial.checked_height == multi.chain.height
    assert serial.counts.evidence == 1
    parallel = run_audit(multi.chain.store.kv, jobs=2, pool=pool)
    assert parallel.outcome() == serial.outcome()


def test_rejects_certificate_under_two_thirds_of_the_stake(multi):
    kv = copy_kv(multi.chain.store.kv)
    h = multi.heights["newcomer_in_force"] + 1
    two = keys_of(multi, h)[:2]  # 2,000 of 6,000
    put(kv, commit_key(h), COMMIT.encode(sign_commit(two, multi.chain.chain_id, h, block_at(kv, h).hash)))
    assert failure_of(run_audit(kv)) == (h, "commit-quorum", "commit")


def test_rejects_the_old_stakes_once_a_newcomer_is_in_force(multi):
    """The four genesis validators are all the stake before the newcomer counts, and exactly
    2/3 (not more) after: the same four signatures commit block 4 and cannot commit block 5."""
    kv = copy_kv(multi.chain.store.kv)
    before, after = multi.heights["newcomer_in_force"] - 1, multi.heights["newcomer_in_force"]
    genesis_four = multi.validators
    for h in (before, after):
        put(kv, commit_key(h), COMMIT.encode(sign_commit(genesis_four, multi.chain.chain_id, h, block_at(kv, h).hash)))
    assert failure_of(run_audit(kv)) == (after, "commit-quorum", "commit")


def test_rejects_a_signature_of_a_validator_who_left(multi):
    kv = copy_kv(multi.chain.store.kv)
    h = multi.heights["leaver_out"]
    signers = [*keys_of(multi, h), multi.validators[0]]
    put(kv, commit_key(h), COMMIT.encode(sign_commit(signers, multi.chain.chain_id, h, block_at(kv, h).hash)))
    h_, check, obj = failure_of(run_audit(kv))
    assert (h_, check) == (h, "commit-signer") and obj == "commit"


def test_rejects_a_signature_of_a_jailed_validator(multi):
    """Slashed and jailed by evidence at one height, out of the set two blocks later."""
    kv = copy_kv(multi.chain.store.kv)
    h = multi.heights["jailed_out"]
    jailed = multi.validators[1]
    assert jailed.public in {s.validator for s in commit_at(kv, h - 1).signatures}, "still signing before"
    signers = [*keys_of(multi, h), jailed]
    put(kv, commit_key(h), COMMIT.encode(sign_commit(signers, multi.chain.chain_id, h, block_at(kv, h).hash)))
    assert failure_of(run_audit(kv))[:2] == (h, "commit-signer")


def test_rejects_a_carried_certificate_under_two_thirds(multi):
    """Block h+1 carries a forged certificate of block h; its header and own certificate are
    fixed up by the (complete) set, so only the carried certificate is wrong."""
    kv = copy_kv(multi.chain.store.kv)
    h = multi.heights["slashed"] + 1
    chain_id = multi.chain.chain_id
    weak = sign_commit(keys_of(multi, h)[:1], chain_id, h, block_at(kv, h).hash)
    block = block_at(kv, h + 1)
    forged = replace(block, last_commit=weak, header=replace(block.header, last_commit_hash=commit_hash(weak)))
    store_block(kv, forged, sign_commit(keys_of(multi, h + 1), chain_id, h + 1, forged.hash))
    assert failure_of(run_audit(kv)) == (h + 1, "commit-quorum", "last_commit")


def test_rejects_a_block_signed_by_a_set_that_is_not_in_force(multi):
    """A header naming the old set after the change (and certified by it) is caught by the
    validators-hash rule before any signature is looked at."""
    kv = copy_kv(multi.chain.store.kv)
    h = multi.heights["leaver_out"]
    block = block_at(kv, h)
    old = multi.chain.validator_set(h - 1)
    forged = replace(block, header=replace(block.header, validators_hash=old.hash))
    store_block(kv, forged, sign_commit(multi.validators, multi.chain.chain_id, h, forged.hash))
    assert failure_of(run_audit(kv))[:2] == (h, "validators-hash")


TAMPERS = {
    "commit-signature": lambda kv, h: put(kv, commit_key(h), flip_inside(
        kv.get(commit_key(h)), COMMIT.decode(kv.get(commit_key(h))).signatures[1].signature)),
    "carried-signature": lambda kv, h: put(kv, block_key(h), flip_inside(
        kv.get(block_key(h)), BLOCK.decode(kv.get(block_key(h))).last_commit.signatures[2].signature)),
    "tx-bytes": lambda kv, h: put(kv, block_key(h), flip_inside(kv.get(block_key(h)), BLOCK.decode(
        kv.get(block_key(h))).txs[-1], at=-3)),
    "block-garbage": lambda kv, h: put(kv, block_key(h), kv.get(block_key(h))[:-1]),
}


@pytest.mark.parametrize("tamper", sorted(TAMPERS))
def test_parallel_report_equals_serial_report(multi, pool, tamper):
    kv = copy_kv(multi.chain.store.kv)
    TAMPERS[tamper](kv, multi.chain.height - 1)
    serial, parallel = run_audit(kv), run_audit(kv, jobs=2, pool=pool)
    assert not serial.ok
    assert parallel.outcome() == serial.outcome()


# --------------------------------------------------------------------------- the rules, re-executed


@pytest.fixture(scope="module")
def guarded() -> tuple[Chain, dict]:
    """A minor's crossing, permitted by the approvals of both guardians (each in its own block)."""
    c = Chain()
    authority, terminal = c.open_border()
    child = c.enrol_child(authority)
    request = c.pending_crossing(terminal, child)
    c.commit(c.approve(child.guardians[0], request, child))
    first = c.height
    c.commit(c.approve(child.guardians[1], request, child))
    assert c.status(request) == "permitted"
    c.advance(1_000)
    return c, {"child": child, "request": request, "first_approval": first, "second_approval": c.height - 1}


def _validator(c: Chain) -> SigningKey:
    return next(iter(c.validator_keys.values()))


def test_rejects_an_approval_by_someone_who_is_not_a_guardian(guarded):
    """A validator's forgery: the second approval is replaced by one validly signed by a key that
    is no guardian of the child; the roots are fixed and the certificate re-signed."""
    c, s = guarded
    kv = copy_kv(c.store.kv)
    h = s["second_approval"]
    impostor = SigningKey.generate()
    forged_tx = make_tx("guardian.decide", replace(
        c.approve(s["child"].guardians[1], s["request"], s["child"]).body, guardian=impostor.public), 99,
        [impostor], c.chain_id)
    block = block_at(kv, h)
    forged = replace_txs(block, [forged_tx.raw], block.header.log_size - 1,
                         lambda lv, i: kv.get(b"L" + bytes([lv]) + i.to_bytes(8, "big")))
    store_block(kv, forged, sign_commit([_validator(c)], c.chain_id, h, forged.hash))
    h_, check, obj = failure_of(run_audit(kv))
    assert (h_, check) == (h, "tx-rule") and "guardian.decide" in obj


def test_rejects_a_permitted_crossing_without_its_approvals(guarded):
    """The second approval is dropped from its block but the header keeps the state it led to."""
    c, s = guarded
    kv = copy_kv(c.store.kv)
    h = s["second_approval"]
    block = block_at(kv, h)
    forged = replace_txs(block, [], block.header.log_size - 1,
                         lambda lv, i: kv.get(b"L" + bytes([lv]) + i.to_bytes(8, "big")))
    store_block(kv, forged, sign_commit([_validator(c)], c.chain_id, h, forged.hash))
    assert failure_of(run_audit(kv))[:2] == (h, "state-root")


# --------------------------------------------------------------------------- what only the store holds


@pytest.mark.parametrize("what", ["hash-index", "commit-missing", "commit-encoding", "block-encoding"])
def test_rejects_damaged_store_records(guarded, what):
    c, s = guarded
    kv = copy_kv(c.store.kv)
    h = s["first_approval"]
    if what == "hash-index":
        put(kv, b"N" + block_at(kv, h).hash, (h + 1).to_bytes(8, "big"))
    elif what == "commit-missing":
        put(kv, commit_key(h), None)
    elif what == "commit-encoding":
        put(kv, commit_key(h), kv.get(commit_key(h)) + b"\x00")
    else:
        put(kv, block_key(h), flip(kv.get(block_key(h)), 0))
    assert failure_of(run_audit(kv))[:2] == (h, what)


def test_rejects_a_source_running_another_genesis_than_the_pinned_one(guarded):
    c, _ = guarded
    other = Chain().genesis
    report = run_audit(c.store.kv, genesis=other)
    assert failure_of(report) == (0, "genesis-hash", "genesis")
    assert report.failure.expected == other.hash and report.failure.found == c.genesis.hash
    assert run_audit(c.store.kv, genesis=c.genesis).ok


def test_rejects_a_genesis_that_does_not_decode(guarded):
    c, _ = guarded
    kv = copy_kv(c.store.kv)
    put(kv, b"G", GENESIS.encode(c.genesis) + b"\x00")
    assert failure_of(run_audit(kv))[:2] == (0, "genesis-encoding")


def test_a_changed_genesis_breaks_the_first_link(guarded):
    """A store whose genesis record was edited (a parameter changed) no longer links to block 1."""
    c, _ = guarded
    kv = copy_kv(c.store.kv)
    put(kv, b"G", GENESIS.encode(replace(c.genesis, params=replace(c.genesis.params, slash_bps=9_999))))
    assert failure_of(run_audit(kv))[:2] == (1, "prev-hash")


def test_an_empty_chain_audits_to_its_genesis():
    c = Chain()
    report = run_audit(c.store.kv)
    assert report.ok and report.checked_height == 0 and report.counts.blocks == 0


def _files(path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in path.iterdir()}


def test_audit_never_writes_a_record_and_a_copying_audit_touches_nothing(guarded, tmp_path):
    c, _ = guarded
    path = tmp_path / "chain"
    store = ChainStore.open(path, c.genesis)
    for h in range(1, c.height + 1):
        store.commit_block(execute_block(store, c.store.block(h)), c.store.commit(h))
    store.close()
    kv = LevelKV(path, create=False)
    records = dict(kv.iterate(b"", b"\xff"))
    kv.close()
    files = _files(path)
    source = DataDirSource(path, copy=True)
    try:
        assert Auditor(source).run().ok
    finally:
        source.close()
    assert _files(path) == files, "an audit of a copy leaves the directory byte for byte as it was"
    source = DataDirSource(path)
    try:
        report = Auditor(source).run()
        with pytest.raises(StorageError):
            source.kv.write({b"x": b"y"})
    finally:
        source.close()
    assert report.ok, report.failure
    kv = LevelKV(path, create=False)
    try:
        assert dict(kv.iterate(b"", b"\xff")) == records
    finally:
        kv.close()
