"""The consensus write-ahead log: format, recovery from torn and corrupt tails, and replay."""

from __future__ import annotations

import struct

import pytest
from consensus_harness import Net, sent, sent_votes, value_id

from ledger.block import PRECOMMIT, PREVOTE, Vote
from ledger.validators import Validator, ValidatorSet
from node.consensus.engine import Engine, Step
from node.consensus.errors import WalError
from node.consensus.messages import STEP_PRECOMMIT, STEP_PROPOSE, Proposal, Timeout
from node.consensus.recorder import RecordedEngine
from node.consensus.wal import (
    HEADER_SIZE,
    ConsensusWal,
    FileStorage,
    MemoryStorage,
    StartHeight,
    frame,
    parse,
)

V = b"value-v"
W = b"value-w"


@pytest.fixture
def net() -> Net:
    return Net()


def some_records(net: Net) -> list:
    a, b = net.others()[:2]
    return [net.proposal(0, V), net.prevote(a, 0, V), Timeout(STEP_PROPOSE, 1, 0),
            net.precommit(b, 0, None)]


def write_log(path, net: Net, records: list) -> bytes:
    wal = ConsensusWal.open(path)
    wal.begin_height(1, net.validators)
    for r in records:
        wal.append(r)
    wal.sync()
    wal.storage.close()
    return path.read_bytes()


# --------------------------------------------------------------------------- format


def test_records_survive_a_reopen(tmp_path, net):
    records = some_records(net)
    write_log(tmp_path / "wal", net, records)
    wal = ConsensusWal.open(tmp_path / "wal")
    rec = wal.recovery
    assert rec.problem is None and rec.dropped_bytes == 0
    assert rec.records[0] == StartHeight(1, net.validators)
    assert list(rec.records[1:]) == records
    assert rec.height == 1


def test_record_frame_is_length_crc_payload(net):
    data = frame(Timeout(STEP_PROPOSE, 1, 0))
    length, _crc = struct.unpack(">II", data[:HEADER_SIZE])
    assert length == len(data) - HEADER_SIZE


def test_torn_tail_is_truncated_at_every_byte_offset_of_the_last_record(tmp_path, net):
    records = some_records(net)
    full = write_log(tmp_path / "full", net, records)
    last = len(frame(records[-1]))
    intact = len(full) - last
    for cut in range(intact, len(full)):
        path = tmp_path / f"cut{cut}"
        path.write_bytes(full[:cut])
        wal = ConsensusWal.open(path)
        rec = wal.recovery
        assert list(rec.records[1:]) == records[:-1], cut
        assert rec.valid_bytes == intact
        assert rec.dropped_bytes == cut - intact
        if cut > intact:
            assert "torn" in rec.problem
        assert path.stat().st_size == intact  # truncated on disk
        # the log is usable again: a new record lands right after the intact ones
        wal.append(records[-1])
        wal.storage.close()
        assert list(ConsensusWal.open(path).recovery.records[1:]) == records


def test_corrupt_checksum_cuts_the_log_at_that_record(tmp_path, net):
    records = some_records(net)
    full = bytearray(write_log(tmp_path / "wal", net, records))
    start = len(frame(StartHeight(1, net.validators))) + len(frame(records[0]))
    full[start + HEADER_SIZE + 5] ^= 0x40  # a bit flip inside the second record's payload
    (tmp_path / "wal").write_bytes(bytes(full))
    rec = ConsensusWal.open(tmp_path / "wal").recovery
    assert list(rec.records[1:]) == records[:1]
    assert "checksum" in rec.problem
    assert rec.dropped_bytes == len(full) - start


def test_absurd_length_is_reported_not_allocated(net):
    data = frame(StartHeight(1, net.validators)) + struct.pack(">II", 2**31, 0) + b"x" * 10
    rec = parse(data)
    assert len(rec.records) == 1 and "length" in rec.problem


def test_rejects_a_log_that_does_not_start_with_its_height(net):
    rec = parse(frame(net.prevote(1, 0, V)))
    assert rec.records == () and "out of place" in rec.problem


def test_undecodable_payload_with_a_valid_checksum_is_reported(net):
    import zlib
    payload = b"\x81\xa4type\xa5bogus"
    data = frame(StartHeight(1, net.validators)) + struct.pack(
        ">II", len(payload), zlib.crc32(payload)) + payload
    rec = parse(data)
    assert len(rec.records) == 1 and "undecodable" in rec.problem


def test_begin_height_replaces_the_log_and_carries_early_messages(net):
    wal = ConsensusWal(MemoryStorage())
    wal.begin_height(1, net.validators)
    wal.append(net.prevote(1, 0, V))
    early = [net.prevote(1, 0, W, height=2)]
    wal.begin_height(2, net.validators, early)
    rec = ConsensusWal(wal.storage).recovery
    assert rec.records == (StartHeight(2, net.validators), *early)
    assert wal.storage.durable == len(wal.storage.data)


def test_append_needs_a_height():
    with pytest.raises(WalError):
        ConsensusWal(MemoryStorage()).append(Timeout(STEP_PROPOSE, 1, 0))


# --------------------------------------------------------------------------- recorder


def recorded(net: Net, storage: MemoryStorage) -> RecordedEngine:
    """A fresh engine for ``net.me`` (same signer, as after a restart) over ``storage``."""
    engine = Engine(net.app, net.signer, timeouts=net.timeouts)
    return RecordedEngine(engine, ConsensusWal(storage))


def drive_to_lock(net: Net, rec: RecordedEngine) -> None:
    """Height 1: lock v in round 0, precommit it, time out into round 1."""
    rec.start_height(1, net.validators)
    a, b, _ = net.others()
    rec.on_proposal(net.proposal(0, V))
    rec.on_vote(net.prevote(a, 0, V))
    rec.on_vote(net.prevote(b, 0, V))
    assert rec.engine.locked_round == 0
    rec.on_vote(net.precommit(a, 0, None))
    rec.on_vote(net.precommit(b, 0, None))
    rec.on_timeout(Timeout(STEP_PRECOMMIT, 1, 0))
    assert rec.engine.round == 1


def test_log_is_synced_before_own_messages_are_released(net):
    storage = MemoryStorage()
    rec = recorded(net, storage)
    rec.start_height(1, net.validators)
    assert storage.durable == len(storage.data)
    rec.on_vote(net.prevote(net.others()[0], 0, W))  # a peer's vote: no sync needed
    assert storage.durable < len(storage.data)
    out = rec.on_proposal(net.proposal(0, V))  # makes us prevote
    assert sent_votes(out, PREVOTE)
    assert storage.durable == len(storage.data)
    own = [r for r in ConsensusWal(storage).recovery.records
           if isinstance(r, Vote) and r.validator == net.signer.public]
    assert own == sent_votes(out)


def test_replay_resumes_the_round_and_the_lock_without_new_signatures(net):
    storage = MemoryStorage()
    before = recorded(net, storage)
    drive_to_lock(net, before)
    last_signed = net.signer.state
    own_before = before.engine.own_messages()

    after = recorded(net, storage)  # a restart: new engine, same signer, same log
    out = after.recover(1, net.validators)
    e = after.engine
    assert (e.height, e.round, e.step) == (1, 1, Step.PROPOSE)
    assert (e.locked_value, e.locked_round, e.valid_round) == (V, 0, 0)
    assert net.signer.state == last_signed  # nothing new was signed
    assert e.refused_signatures == 0  # every request was answered from the log
    assert e.own_messages() == own_before
    assert all(m in own_before for m in sent(out))
    # and the lock holds: a proposal for w in round 1 gets a nil prevote
    (pv,) = sent_votes(after.on_proposal(net.proposal(1, W)), PREVOTE)
    assert pv.block is None


def test_replay_after_a_power_cut_keeps_every_announced_lock(net):
    storage = MemoryStorage()
    rec = recorded(net, storage)
    drive_to_lock(net, rec)
    rec.on_vote(net.prevote(net.others()[0], 1, W))  # unsynced peer input after the lock
    rec.on_vote(net.precommit(net.others()[1], 1, None))
    synced, full = storage.durable, bytes(storage.data)
    assert synced < len(full)
    for keep in range(0, len(full) - synced + 1):
        cut = MemoryStorage()
        cut.rewrite(full[:synced + keep])
        again = recorded(net, cut)
        again.recover(1, net.validators)
        e = again.engine
        assert (e.locked_value, e.locked_round) == (V, 0), keep  # the round may be earlier:
        assert e.round in (0, 1), keep  # timeouts are not synced, and peers re-send


def test_replay_of_a_decided_height_decides_again(net):
    storage = MemoryStorage()
    rec = recorded(net, storage)
    rec.start_height(1, net.validators)
    rec.on_proposal(net.proposal(0, V))
    for i in net.others():
        rec.on_vote(net.precommit(i, 0, V))
    assert rec.engine.decision is not None
    # crash before the block reached the store: the log still holds height 1
    out = recorded(net, storage).recover(1, net.validators)
    decided = [o for o in out if type(o).__name__ == "Decide"]
    assert [d.value_id for d in decided] == [value_id(V)]


def test_recover_with_a_stale_log_starts_the_height_afresh(net):
    storage = MemoryStorage()
    drive_to_lock(net, recorded(net, storage))
    rec = recorded(net, storage)
    rec.recover(2, net.validators)  # block 1 is in the store
    assert (rec.engine.height, rec.engine.round, rec.engine.locked_round) == (2, 0, -1)
    assert ConsensusWal(storage).recovery.height == 2


def test_recover_refuses_a_log_ahead_of_the_store_or_for_other_validators(net):
    storage = MemoryStorage()
    drive_to_lock(net, recorded(net, storage))
    with pytest.raises(WalError):
        recorded(net, storage).recover(1, ValidatorSet(
            [Validator(k.public, 5) for k in net.keys]))
    other = MemoryStorage()
    wal = ConsensusWal(other)
    wal.begin_height(3, net.validators)
    with pytest.raises(WalError):
        recorded(net, other).recover(2, net.validators)


def test_recorder_carries_buffered_messages_into_the_next_log(net):
    storage = MemoryStorage()
    rec = recorded(net, storage)
    rec.start_height(1, net.validators)
    early = net.prevote(net.others()[0], 0, W, height=2)
    rec.on_vote(early)  # buffered by the engine, not logged for height 1
    assert early not in ConsensusWal(storage).recovery.records
    rec.on_proposal(net.proposal(0, V))
    for i in net.others():
        rec.on_vote(net.precommit(i, 0, V))
    rec.start_height(2, net.validators)
    records = ConsensusWal(storage).recovery.records
    assert records[:2] == (StartHeight(2, net.validators), early)


def test_file_backed_restart(tmp_path, net):
    path = tmp_path / "cs.wal"
    rec = RecordedEngine(Engine(net.app, net.signer, timeouts=net.timeouts),
                         ConsensusWal.open(path))
    drive_to_lock(net, rec)
    rec.wal.storage.close()
    again = RecordedEngine(Engine(net.app, net.signer, timeouts=net.timeouts),
                           ConsensusWal(FileStorage(path)))
    again.recover(1, net.validators)
    assert (again.engine.round, again.engine.locked_round) == (1, 0)
    assert isinstance(again.engine.proposal(0), Proposal)
    assert again.engine.precommits(0).votes[net.signer.public].kind == PRECOMMIT


def test_dropping_the_inputs_of_a_decided_height_keeps_only_its_start_record(tmp_path, net):
    records = some_records(net)
    raw = write_log(tmp_path / "wal", net, records)
    proposal_bytes = records[0].value
    assert proposal_bytes in raw
    wal = ConsensusWal.open(tmp_path / "wal")
    wal.drop_inputs()
    assert proposal_bytes not in (tmp_path / "wal").read_bytes()
    wal.append(records[1])  # the log goes on after it
    wal.sync()
    wal.storage.close()
    rec = ConsensusWal.open(tmp_path / "wal").recovery
    assert rec.problem is None and rec.records == (StartHeight(1, net.validators), records[1])
