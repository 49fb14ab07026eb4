"""The replica's decisions, fed events by hand: no sockets, no clock, no disk.

One validator holding all the stake decides each height alone, so every test sees the whole
path from an event to the effects a node carries out.
"""

from __future__ import annotations

import hashlib
import random

from ledger.block import PREVOTE, DuplicateVoteEvidence, sign_vote
from ledger.crypto.keys import SigningKey
from ledger.validators import Validator, ValidatorSet
from node.consensus.engine import Engine
from node.consensus.messages import sign_proposal
from node.consensus.privval import MemoryPrivValidator
from node.consensus.recorder import RecordedEngine
from node.consensus.replica import (
    MAX_TX_BATCH,
    Broadcast,
    EvidenceReceived,
    FlushTxs,
    Pace,
    Received,
    Relay,
    Replica,
    ReplicaConfig,
    Send,
    SetTimer,
    Start,
    StoreBlock,
    Stored,
    SyncOutcome,
    SyncReceived,
    Tick,
    TimerFired,
    TxAdmitted,
    TxBatch,
)
from node.consensus.simscenario import CHAIN_ID, ToyApp
from node.consensus.wal import ConsensusWal, MemoryStorage
from node.sync import Blocks, Get, Item, Status

KEY = SigningKey(hashlib.sha256(b"replica-test").digest())
OTHER = SigningKey(hashlib.sha256(b"replica-test-other").digest())
PEER = b"\x07" * 32
CONFIG = ReplicaConfig(heartbeat_ms=5_000, block_interval_ms=200, rebroadcast_ms=1_000, tx_gossip_ms=25)


class FakeLedger:
    def __init__(self) -> None:
        self.stored: dict[int, bytes] = {}
        self.tip_time = 0
        self.pending = 1
        self.evidence: list[DuplicateVoteEvidence] = []
        self.counts: dict[str, int] = {}
        self.validator_set = ValidatorSet([Validator(KEY.public, 10), Validator(OTHER.public, 1)])

    def height(self) -> int:
        return max(self.stored, default=0)

    def tip_time_ms(self) -> int:
        return self.tip_time

    def validators(self, height: int) -> ValidatorSet:
        return self.validator_set

    def pending_txs(self) -> int:
        return self.pending

    def blocks_from(self, start: int, limit: int) -> list[Item]:
        return [Item(self.stored[h], None) for h in range(start, start + limit) if h in self.stored]

    def apply_synced(self, item: Item) -> SyncOutcome:
        return SyncOutcome.REFUSED

    def knows_evidence(self, evidence: DuplicateVoteEvidence) -> bool:
        return evidence in self.evidence

    def add_evidence(self, evidence: DuplicateVoteEvidence) -> None:
        self.evidence.append(evidence)

    def verify_vote(self, vote) -> bool:
        return vote.verify(CHAIN_ID)

    def count(self, metric: str) -> None:
        self.counts[metric] = self.counts.get(metric, 0) + 1


def replica(ledger: FakeLedger) -> Replica:
    engine = Engine(ToyApp("me", random.Random(0), 0.0), MemoryPrivValidator(KEY, CHAIN_ID))
    return Replica(RecordedEngine(engine, ConsensusWal(MemoryStorage())), ledger, CONFIG)


def of(effects, kind):
    return [e for e in effects if isinstance(e, kind)]


def store(r: Replica, ledger: FakeLedger, effects, now: int):
    """Carry out the StoreBlock among ``effects`` as the node would, and report it stored."""
    (s,) = of(effects, StoreBlock)
    ledger.stored[s.decision.height] = s.decision.value
    ledger.tip_time = now
    return r.handle(now, Stored(s.decision.height))


def test_a_decided_height_is_stored_before_the_next_one_begins():
    ledger = FakeLedger()
    r = replica(ledger)
    effects = r.handle(0, Start())
    assert [s.decision.height for s in of(effects, StoreBlock)] == [1]
    assert of(effects, Broadcast)  # its proposal and votes
    # transactions arrive while block 1 is on its way to disk: height 2 must wait for it
    assert not of(r.handle(10, TxAdmitted(None)), StoreBlock)
    after = store(r, ledger, effects, now=20)
    assert Broadcast(Status(1)) in after
    (pace,) = [e for e in of(after, SetTimer) if isinstance(e.timer, Pace)]
    assert pace.delay_ms == CONFIG.block_interval_ms  # a transaction waits: batch a little more
    assert [s.decision.height for s in of(r.handle(220, TimerFired(pace.timer)), StoreBlock)] == [2]


def test_an_idle_chain_makes_a_block_only_when_the_heartbeat_is_due():
    ledger = FakeLedger()
    ledger.pending = 0
    r = replica(ledger)
    after = store(r, ledger, r.handle(0, Start()), now=1_000)
    (pace,) = [e for e in of(after, SetTimer) if isinstance(e.timer, Pace)]
    assert pace.delay_ms == CONFIG.heartbeat_ms
    # a client's transaction brings the next height forward
    ledger.pending = 1
    sooner = [e for e in of(r.handle(2_000, TxAdmitted(b"tx")), SetTimer) if isinstance(e.timer, Pace)]
    assert [e.delay_ms for e in sooner] == [CONFIG.block_interval_ms]
    assert [s.decision.height for s in of(r.handle(2_200, TimerFired(sooner[0].timer)), StoreBlock)] == [2]
    assert not r.handle(6_000, TimerFired(pace.timer))  # superseded: the height is not started twice


def _gossiped(effects) -> list[tuple[bytes, ...]]:
    return [e.message.raws for e in of(effects, Broadcast) if isinstance(e.message, TxBatch)]


def _flush_timers(effects) -> list[SetTimer]:
    return [e for e in of(effects, SetTimer) if isinstance(e.timer, FlushTxs)]


def test_client_transactions_go_to_the_peers_at_most_one_batch_per_gossip_interval():
    ledger = FakeLedger()
    r = replica(ledger)
    store(r, ledger, r.handle(0, Start()), now=10)
    # after a quiet spell, without waiting: at the end of this turn of the event loop, so that
    # the rest of the client's request goes in the same batch
    first = r.handle(100, TxAdmitted(b"tx-1"))
    (flush,) = _flush_timers(first)
    assert flush.delay_ms == 0 and not _gossiped(first)
    assert not _flush_timers(r.handle(100, TxAdmitted(b"tx-2")))
    assert _gossiped(r.handle(100, TimerFired(flush.timer))) == [(b"tx-1", b"tx-2")]
    # those that follow within the interval wait for its end (a peer's are not relayed at all)
    second = r.handle(105, TxAdmitted(b"tx-3"))
    (flush,) = _flush_timers(second)
    assert flush.delay_ms == 100 + CONFIG.tx_gossip_ms - 105 and not _gossiped(second)
    for now, raw in ((110, None), (120, b"tx-4")):
        later = r.handle(now, TxAdmitted(raw))
        assert not _gossiped(later) and not _flush_timers(later)
    assert _gossiped(r.handle(125, TimerFired(flush.timer))) == [(b"tx-3", b"tx-4")]
    # quiet again for an interval: without waiting
    assert [e.delay_ms for e in _flush_timers(r.handle(400, TxAdmitted(b"tx-5")))] == [0]
    # a clock stepped back holds gossip up for one interval at most
    assert _gossiped(r.handle(401, TimerFired(FlushTxs()))) == [(b"tx-5",)]
    assert [e.delay_ms for e in _flush_timers(r.handle(50, TxAdmitted(b"tx-6")))] == [CONFIG.tx_gossip_ms]


def test_a_full_batch_of_client_transactions_goes_to_the_peers_at_once():
    ledger = FakeLedger()
    r = replica(ledger)
    store(r, ledger, r.handle(0, Start()), now=10)
    sent = []
    for i in range(MAX_TX_BATCH + 1):
        sent += _gossiped(r.handle(101, TxAdmitted(b"tx-%d" % i)))
    assert [len(batch) for batch in sent] == [MAX_TX_BATCH]  # without waiting for the timer
    assert _gossiped(r.handle(125, TimerFired(FlushTxs()))) == [(b"tx-%d" % MAX_TX_BATCH,)]


def test_a_node_behind_asks_the_highest_peer_and_waits_before_asking_again():
    ledger = FakeLedger()
    r = replica(ledger)
    store(r, ledger, r.handle(0, Start()), now=10)
    asked = of(r.handle(100, SyncReceived(PEER, Status(9))), Send)
    assert asked == [Send(PEER, Get(2, 20))]
    assert not of(r.handle(200, SyncReceived(PEER, Status(10))), Send)  # a request is out
    assert of(r.handle(6_000, SyncReceived(PEER, Status(10))), Send) == [Send(PEER, Get(2, 20))]


def test_a_peer_that_does_not_answer_a_sync_request_gives_way_to_the_others():
    # the peer that heads the list (the highest key among those at the best height) was killed
    # after deciding the height this node lacks: it must not be asked forever
    gone, alive, third = b"\xff" * 32, b"\x10" * 32, b"\x20" * 32
    ledger = FakeLedger()
    r = replica(ledger)
    store(r, ledger, r.handle(0, Start()), now=10)
    asked = [of(r.handle(20, SyncReceived(peer, Status(5))), Send) for peer in (gone, alive, third)]
    assert asked == [[Send(gone, Get(2, 20))], [], []]
    assert not of(r.handle(4_000, TimerFired(Tick())), Send)  # still waiting for its answer
    asked = [of(r.handle(now, TimerFired(Tick())), Send) for now in (5_100, 10_200, 15_300, 20_400)]
    # each that stays silent moves to the back; once all have failed, they are asked again
    assert asked == [[Send(third, Get(2, 20))], [Send(alive, Get(2, 20))], [Send(gone, Get(2, 20))],
                     [Send(third, Get(2, 20))]]


def test_rejects_a_peer_whose_blocks_do_not_verify():
    ledger = FakeLedger()
    r = replica(ledger)
    store(r, ledger, r.handle(0, Start()), now=10)
    r.handle(100, SyncReceived(PEER, Status(9)))
    r.handle(150, SyncReceived(PEER, Blocks((Item(b"forged", b"x"),))))
    assert ledger.counts["sync_blocks_refused"] == 1
    assert not of(r.handle(6_000, TimerFired(Tick())), Send)  # that peer is not asked again


def test_a_block_holding_erased_transactions_stops_sync_and_is_asked_for_again_much_later():
    ledger = FakeLedger()
    ledger.apply_synced = lambda item: SyncOutcome.ERASED  # type: ignore[method-assign]
    r = replica(ledger)
    store(r, ledger, r.handle(0, Start()), now=10)
    r.handle(100, SyncReceived(PEER, Status(9)))
    r.handle(150, SyncReceived(PEER, Blocks((Item(b"stubbed", b"x"),))))
    assert ledger.counts["sync_blocks_erased"] == 1 and ledger.height() == 1
    assert "sync_blocks_refused" not in ledger.counts  # the peer is not blamed
    assert not of(r.handle(10_000, SyncReceived(PEER, Status(10))), Send)
    assert of(r.handle(30_200, SyncReceived(PEER, Status(10))), Send) == [Send(PEER, Get(2, 20))]


def test_evidence_is_kept_and_relayed_once():
    ledger = FakeLedger()
    r = replica(ledger)
    a = sign_vote(OTHER, CHAIN_ID, PREVOTE, 1, 0, b"\x01" * 32)
    b = sign_vote(OTHER, CHAIN_ID, PREVOTE, 1, 0, b"\x02" * 32)
    ev = DuplicateVoteEvidence(a, b)
    assert of(r.handle(0, EvidenceReceived(PEER, ev)), Relay) == [Relay(ev)]
    assert not r.handle(1, EvidenceReceived(PEER, ev))
    assert ledger.evidence == [ev]


def test_rejects_evidence_with_a_forged_signature():
    ledger = FakeLedger()
    r = replica(ledger)
    a = sign_vote(OTHER, CHAIN_ID, PREVOTE, 1, 0, b"\x01" * 32)
    forged = sign_vote(KEY, CHAIN_ID, PREVOTE, 1, 0, b"\x02" * 32)
    forged = type(forged)(**{**{f: getattr(forged, f) for f in forged.__dataclass_fields__},
                             "validator": OTHER.public})
    assert not r.handle(0, EvidenceReceived(PEER, DuplicateVoteEvidence(a, forged)))
    assert ledger.evidence == [] and ledger.counts["bad_evidence"] == 1


def test_a_proposal_for_the_next_height_starts_it_at_once():
    ledger = FakeLedger()
    ledger.pending = 0
    r = replica(ledger)
    store(r, ledger, r.handle(0, Start()), now=10)
    assert not r.running
    # a message for height 2 from a peer: the replica joins before any timer fires
    p = sign_proposal(OTHER, CHAIN_ID, 2, 1, -1, b"\x05" * 32, b"2|other|1")
    r.handle(20, Received(PEER, p))
    assert r.running and r.height == 2


def test_a_node_without_blocks_for_ten_seconds_says_where_consensus_stands(caplog):
    ledger = FakeLedger()
    ledger.validator_set = ValidatorSet([Validator(KEY.public, 10), Validator(OTHER.public, 30)])
    r = replica(ledger)  # a quarter of the stake: it proposes and votes, and nothing is decided
    effects = r.handle(0, Start())
    assert not of(effects, StoreBlock)
    with caplog.at_level("WARNING", logger="custos.consensus"):
        for now in range(1_000, 25_001, 1_000):
            r.handle(now, TimerFired(Tick()))
    warnings = [rec.getMessage() for rec in caplog.records if "no block for" in rec.getMessage()]
    assert ledger.counts.get("stall_warnings") == len(warnings) == 2  # at 10 s and at 20 s
    assert warnings[0].startswith("no block for 10 s: height 1 round ")
    assert "of 40 stake" in warnings[0] and "working on the height" in warnings[0]
