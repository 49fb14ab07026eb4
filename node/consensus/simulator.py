"""A seeded, deterministic simulator of a validator network running the real consensus code.

Each simulated validator runs :class:`~node.consensus.replica.Replica`, the very class a node
runs (engine, commit ordering, height pacing, block sync, gossip and evidence decisions), behind
the real write-ahead log (:mod:`node.consensus.recorder`, in-memory storage) and the real
double-sign guard (:class:`~node.consensus.privval.MemoryPrivValidator`), with real Ed25519 keys
and signatures. Only the shell differs: the node's carries bytes over sockets and writes to
disk (:mod:`node.consensus.driver`), this one carries the same messages through a simulated
network, disk and CPU. Signatures of consensus messages are not verified on delivery (the node's
shell does that): the simulated network cannot forge an honest validator's messages. Evidence
and block sync are verified inside the replica's ledger, as in a node.

One seed fixes the scenario: the number of validators and their (unequal) stakes, whether one
of them is Byzantine, and the faults before ``heal_at``: message loss, duplication and delay,
partitions that heal, crash-restarts of honest validators that lose the unsynced tail of their
log, a slow disk (a decided block takes long to store, and a crash meanwhile loses it), CPU
starvation (a node stalls and handles everything that reached it late, at once), and a laggard
that is down while the others decide many heights and must catch up by block sync while they
move on. The Byzantine validator (less than a third of the stake) runs a replica but
equivocates: it sends different proposals and conflicting votes to different peers, before and
after ``heal_at``. Some proposals are malformed and rejected by ``validate``, so nil votes happen.

Checked properties:

* safety: no two honest validators ever decide different values at one height, every decision
  carries a commit with more than 2/3 of the stake, and evidence never accuses an honest
  validator;
* liveness: after ``heal_at`` every honest validator decides at least ``after_heal`` more
  heights (and ``heights`` in all) within ``liveness_ms`` of virtual time.

Replay one seed with a trace, or sweep many::

    python -m node.consensus.simulator --seed 1234 [--heights N] [--verbose]
    python -m node.consensus.simulator --seeds 0:10000
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from ledger.block import COMMIT, Commit, DuplicateVoteEvidence, Vote, sign_vote
from ledger.crypto.keys import SigningKey
from ledger.errors import ChainError, DecodeError
from ledger.validators import Validator, ValidatorSet
from node.consensus.config import TimeoutConfig
from node.consensus.engine import Engine
from node.consensus.messages import Proposal, Timeout, sign_proposal
from node.consensus.outputs import Decide
from node.consensus.privval import MemoryPrivValidator
from node.consensus.recorder import RecordedEngine
from node.consensus.replica import (
    Broadcast,
    Effect,
    Event,
    EvidenceReceived,
    Halt,
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
    TimerFired,
)
from node.consensus.simnet import EventQueue, Network
from node.consensus.simscenario import CHAIN_ID, Scenario, ToyApp, UnguardedSigner, value_id
from node.consensus.wal import ConsensusWal, MemoryStorage
from node.sync import Blocks, Get, Item, Status

SIM_TIMEOUTS = TimeoutConfig(propose_ms=300, propose_delta_ms=100, prevote_ms=150,
                             prevote_delta_ms=75, precommit_ms=150, precommit_delta_ms=75)
#: a pause before the next height (like CometBFT's timeout_commit), rebroadcast when stuck
SIM_CONFIG = ReplicaConfig(heartbeat_ms=5_000, block_interval_ms=50, rebroadcast_ms=500)
#: a healthy disk stores a block in this many ms
DISK_MS = (1, 10)


# --------------------------------------------------------------------------- nodes


class SimLedger:
    """A node's chain as the replica sees it (:class:`~node.consensus.replica.Ledger`): the toy
    application's values with their certificates, always a transaction waiting."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def height(self) -> int:
        return self.node.stored_height

    def tip_time_ms(self) -> int:
        return self.node.tip_time

    def validators(self, height: int) -> ValidatorSet:
        return self.node.sim.validators

    def pending_txs(self) -> int:
        return 1  # the chain is under load: every height has work

    def blocks_from(self, start: int, limit: int) -> list[Item]:
        out = []
        for h in range(start, start + limit):
            if h not in self.node.blocks:
                break
            value, commit = self.node.blocks[h]
            out.append(Item(value, COMMIT.encode(commit)))
        return out

    def apply_synced(self, item: Item) -> SyncOutcome:
        node = self.node
        try:
            commit = COMMIT.decode(item.commit) if item.commit is not None else None
        except DecodeError:
            return SyncOutcome.REFUSED
        if commit is None:
            return SyncOutcome.GAP
        h = commit.height
        if h <= node.stored_height:
            return SyncOutcome.KNOWN
        if h != node.stored_height + 1:
            return SyncOutcome.GAP
        vid = node.app.validate(h, commit.round, item.block)
        if vid is None:
            node.sim.trace(f"{node.name} sync: invalid value at height {h}")
            return SyncOutcome.REFUSED
        try:
            commit.check(CHAIN_ID, node.sim.validators, height=h, block=vid)
        except ChainError as exc:
            node.sim.trace(f"{node.name} sync: rejected commit: {exc}")
            return SyncOutcome.REFUSED
        node.sim.stats.synced += 1
        if node.sim.laggard == node.index and node.sim.queue.now >= node.sim.scenario.heal_at:
            node.sim.stats.laggard_synced += 1
        node.sim.on_decide(node, h, commit.round, item.block, vid, commit, True)
        node.keep(h, item.block, commit)
        return SyncOutcome.APPLIED

    def knows_evidence(self, evidence: DuplicateVoteEvidence) -> bool:
        return evidence.hash in self.node.evidence

    def add_evidence(self, evidence: DuplicateVoteEvidence) -> None:
        self.node.evidence.add(evidence.hash)
        self.node.sim.on_evidence(self.node, evidence)

    def verify_vote(self, vote: Vote) -> bool:
        return vote.verify(CHAIN_ID)

    def count(self, metric: str) -> None:
        pass


class Node:
    """One validator: the replica the node runs, its log and signer, a block store, and the
    simulated disk and CPU around it."""

    def __init__(self, sim: Simulation, index: int, key: SigningKey) -> None:
        self.sim = sim
        self.index = index
        self.name = f"n{index}"
        self.key = key
        self.app = ToyApp(self.name, random.Random(f"{sim.scenario.seed}/{index}"),
                          sim.scenario.bad_proposal_rate)
        self.ledger = SimLedger(self)
        self.blocks: dict[int, tuple[bytes, Commit]] = {}
        self.tip_time = 0
        self.evidence: set[bytes] = set()
        self.epoch = 0  # bumped on crash: timers and disk writes of a previous life are ignored
        self.crashed = False
        self.signer = self.make_signer()
        self.storage = MemoryStorage()
        self.replica: Replica | None = None

    @property
    def honest(self) -> bool:
        return True

    @property
    def stored_height(self) -> int:
        return max(self.blocks, default=0)

    def make_signer(self) -> Any:
        return MemoryPrivValidator(self.key, CHAIN_ID)

    def keep(self, height: int, value: bytes, commit: Commit) -> None:
        self.blocks[height] = (value, commit)
        self.tip_time = self.sim.queue.now

    def boot(self) -> None:
        """Start, or restart after a crash: the replica recovers its engine from the log."""
        wal = ConsensusWal(self.storage)
        if wal.recovery.problem:
            self.sim.stats.wal_repairs += 1
            self.sim.trace(f"{self.name} log repaired: {wal.recovery.problem}")
        engine = RecordedEngine(Engine(self.app, self.signer, timeouts=SIM_TIMEOUTS), wal)
        self.replica = Replica(engine, self.ledger, SIM_CONFIG)
        self.feed(Start())

    # ---------------------------------------------------------------- events in

    def _starved(self, action: Any, *args: Any) -> bool:
        """CPU starvation: while this node is stalled, whatever reaches it waits for the stall's end."""
        end = self.sim.stall_end(self.index)
        if end is None:
            return False
        self.sim.stats.stalled_events += 1
        self.sim.queue.at(end, action, *args)
        return True

    def feed(self, event: Event) -> None:
        assert self.replica is not None
        self.perform(self.replica.handle(self.sim.queue.now, event))

    def receive(self, src: int, msg: Any) -> None:
        if self.crashed or self._starved(self.receive, src, msg):
            return
        peer = self.sim.keys[src].public
        if isinstance(msg, (Proposal, Vote)):
            self.feed(Received(peer, msg))
        elif isinstance(msg, DuplicateVoteEvidence):
            self.feed(EvidenceReceived(peer, msg))
        elif isinstance(msg, (Status, Get, Blocks)):
            self.feed(SyncReceived(peer, msg))

    def on_timer(self, epoch: int, timer: Any) -> None:
        if epoch != self.epoch or self.crashed or self._starved(self.on_timer, epoch, timer):
            return
        self.feed(TimerFired(timer))

    def on_stored(self, epoch: int, d: Decide) -> None:
        if epoch != self.epoch or self.crashed or self._starved(self.on_stored, epoch, d):
            return  # a crash before the write finished: the block never reached the disk
        if d.height == self.stored_height + 1:
            self.keep(d.height, d.value, d.commit)
        self.feed(Stored(d.height))

    # ---------------------------------------------------------------- effects out

    def perform(self, effects: list[Effect]) -> None:
        if self.sim.verbose:
            self.trace_effects(effects)
        for e in effects:
            if isinstance(e, Broadcast):
                if isinstance(e.message, (Proposal, Vote)):
                    self.broadcast(e.message)
                else:
                    self.send_all(e.message)
            elif isinstance(e, SetTimer):
                self.sim.queue.after(e.delay_ms, self.on_timer, self.epoch, e.timer)
            elif isinstance(e, Send):
                self.sim.network.send(self.index, self.sim.node_of[e.peer], e.message)
            elif isinstance(e, Relay):
                self.send_all(e.evidence)
            elif isinstance(e, StoreBlock):
                d = e.decision
                self.sim.on_decide(self, d.height, d.round, d.value, d.value_id, d.commit, False)
                self.sim.queue.after(self.sim.disk_latency(), self.on_stored, self.epoch, d)
            elif isinstance(e, Halt):
                self.sim.failures.append(f"{self.name} halted: {e.reason}")

    def trace_effects(self, effects: list[Effect]) -> None:
        assert self.replica is not None
        own = self.replica.engine.engine.own_messages()
        for e in effects:
            if isinstance(e, Broadcast) and isinstance(e.message, (Proposal, Vote)) and e.message in own:
                m = e.message
                if isinstance(m, Proposal):
                    what = f"proposes {m.value!r} (pol {m.pol_round})"
                else:
                    what = f"{m.kind}s {m.block.hex()[:10] if m.block else 'nil'}"
                self.sim.trace(f"{self.name} h={m.height} r={m.round} {what}")
            elif isinstance(e, SetTimer) and isinstance(e.timer, Timeout):
                t = e.timer
                self.sim.trace(f"{self.name} h={t.height} r={t.round} waits {e.delay_ms} ms ({t.step})")
            elif isinstance(e, Send) and isinstance(e.message, Get):
                self.sim.trace(f"{self.name} asks {self.sim.nodes[self.sim.node_of[e.peer]].name} for blocks "
                               f"from {e.message.start}")

    def send_all(self, msg: Any) -> None:
        for j in range(len(self.sim.nodes)):
            if j != self.index:
                self.sim.network.send(self.index, j, msg)

    def broadcast(self, msg: Proposal | Vote) -> None:
        self.send_all(msg)


class ByzantineNode(Node):
    """Runs a replica, but equivocates: each peer may get a different proposal or vote."""

    @property
    def honest(self) -> bool:
        return False

    def make_signer(self) -> Any:
        return UnguardedSigner(self.key)

    def broadcast(self, msg: Proposal | Vote) -> None:
        rng = self.sim.rng
        peers = [j for j in range(len(self.sim.nodes)) if j != self.index]
        if isinstance(msg, Proposal) and msg.proposer == self.key.public:
            value = b"%d|byz|%d" % (msg.height, rng.randrange(1 << 30))
            other = sign_proposal(self.key, CHAIN_ID, msg.height, msg.round, -1,
                                  value_id(value), value)
            self.sim.stats.equivocations += 1
            for j in peers:
                self.sim.network.send(self.index, j, msg if rng.random() < 0.5 else other)
            return
        if isinstance(msg, Vote) and msg.validator == self.key.public:
            for j in peers:
                if rng.random() < 0.5:
                    block = None if msg.block is not None and rng.random() < 0.5 else bytes(
                        rng.randrange(256) for _ in range(32))
                    forged = sign_vote(self.key, CHAIN_ID, msg.kind, msg.height, msg.round, block)
                    self.sim.stats.equivocations += 1
                    self.sim.network.send(self.index, j, forged)
                else:
                    self.sim.network.send(self.index, j, msg)
            return
        super().broadcast(msg)


# --------------------------------------------------------------------------- the simulation


@dataclass
class SimStats:
    """What happened in one run (summed over runs by the sweep)."""

    decisions: int = 0  # by honest and Byzantine validators, including by block sync
    synced: int = 0
    max_round: int = 0
    evidence: int = 0
    equivocations: int = 0
    crashes: int = 0
    wal_repairs: int = 0
    refused_signatures: int = 0
    partitions: int = 0
    sent: int = 0
    dropped: int = 0
    duplicated: int = 0
    partitioned: int = 0
    recovery_ms: int = 0  # from the end of the faults to the end of the run
    events: int = 0
    stalled_events: int = 0  # events a starved node handled late
    slow_stores: int = 0  # decided blocks that took long to reach the disk
    laggard_synced: int = 0  # blocks a laggard caught up on by sync after it came back


@dataclass
class SimResult:
    seed: int
    ok: bool
    failures: list[str]
    stats: SimStats
    end_ms: int
    heights: dict[str, int] = field(default_factory=dict)
    scenario: str = ""

    def summary(self) -> str:
        s = self.stats
        state = "ok" if self.ok else "FAIL"
        return (f"seed {self.seed}: {state} at {self.end_ms} ms; heights {self.heights}; "
                f"{s.decisions} decisions ({s.synced} by sync), max round {s.max_round}, "
                f"{s.evidence} evidence, {s.equivocations} equivocations, {s.crashes} crashes, "
                f"{s.wal_repairs} log repairs, {s.refused_signatures} refused signatures, "
                f"{s.dropped}/{s.sent} messages dropped, {s.stalled_events} stalled events, "
                f"{s.slow_stores} slow stores, {s.laggard_synced} blocks caught up by a laggard, "
                f"{s.events} events")


class Simulation:
    MAX_EVENTS = 2_000_000

    def __init__(self, scenario: Scenario, *, verbose: bool = False) -> None:
        self.scenario = scenario
        self.verbose = verbose
        self.rng = random.Random(f"custos-sim-run/{scenario.seed}")
        self.queue = EventQueue()
        self.stats = SimStats()
        self.failures: list[str] = []
        self.decided: dict[int, bytes] = {}
        self.keys = [SigningKey(hashlib.sha256(b"custos-sim-key/%d/%d" % (scenario.seed, i)).digest())
                     for i in range(len(scenario.stakes))]
        self.validators = ValidatorSet(Validator(k.public, s)
                                       for k, s in zip(self.keys, scenario.stakes, strict=True))
        self.node_of = {k.public: i for i, k in enumerate(self.keys)}
        self.network = Network(self.queue, self.rng, scenario.faults, self._deliver)
        self.heights_at_heal: dict[int, int] | None = None
        self.laggard = scenario.laggard.node if scenario.laggard is not None else None
        self.nodes: list[Node] = []
        for i, key in enumerate(self.keys):
            cls = ByzantineNode if i == scenario.byzantine else Node
            self.nodes.append(cls(self, i, key))
        self.trace(f"scenario {scenario.seed}: {scenario.describe()}")
        for node in self.nodes:
            node.boot()
        for c in (*scenario.crashes, *([scenario.laggard] if scenario.laggard is not None else [])):
            self.queue.at(c.at, self._crash, c.node)
            self.queue.at(c.restart_at, self._restart, c.node)

    @property
    def honest(self) -> list[Node]:
        return [n for n in self.nodes if n.honest]

    def trace(self, line: str) -> None:
        if self.verbose:
            print(f"{self.queue.now:>7} ms  {line}")

    def _deliver(self, src: int, dst: int, msg: Any) -> None:
        self.nodes[dst].receive(src, msg)

    def stall_end(self, node: int) -> int | None:
        """If ``node`` is starved of CPU now, when it runs again."""
        now = self.queue.now
        for s in self.scenario.stalls:
            if s.node == node and s.start <= now < s.end:
                return s.end
        return None

    def disk_latency(self) -> int:
        """How long the next block takes to reach the disk."""
        sc = self.scenario
        if self.queue.now < sc.faults.heal_at and self.rng.random() < sc.slow_disk:
            self.stats.slow_stores += 1
            return self.rng.randint(100, sc.slow_disk_ms)
        return self.rng.randint(*DISK_MS)

    def _crash(self, i: int) -> None:
        node = self.nodes[i]
        if node.crashed:
            return
        node.crashed = True
        node.epoch += 1
        self.stats.crashes += 1
        assert node.replica is not None
        self.stats.refused_signatures += node.replica.engine.engine.refused_signatures
        unsynced = len(node.storage.data) - node.storage.durable
        node.storage.power_cut(self.rng.randint(0, unsynced))
        self.trace(f"{node.name} crashes at height {node.stored_height + 1} (log loses "
                   f"{unsynced - (len(node.storage.data) - node.storage.durable)} of "
                   f"{unsynced} unsynced bytes)")

    def _restart(self, i: int) -> None:
        node = self.nodes[i]
        if not node.crashed:
            return
        node.crashed = False
        node.epoch += 1
        node.boot()
        assert node.replica is not None
        e = node.replica.engine.engine
        self.trace(f"{node.name} restarts: height {e.height} round {e.round} "
                   f"step {e.step.name.lower()} locked {e.locked_round}")

    # ---------------------------------------------------------------- checks

    def on_decide(self, node: Node, height: int, round_: int, value: bytes, vid: bytes,
                  commit: Commit, synced: bool) -> None:
        self.stats.decisions += 1
        self.stats.max_round = max(self.stats.max_round, round_)
        how = "syncs" if synced else "decides"
        self.trace(f"{node.name} {how} h={height} r={round_} {value!r} {vid.hex()[:10]}")
        if not node.honest:
            return
        try:
            commit.check(CHAIN_ID, self.validators, height=height, block=vid,
                         verify_signatures=False)
        except ChainError as exc:
            self.failures.append(f"safety: {node.name} decided h={height} with a bad commit: {exc}")
        first = self.decided.setdefault(height, vid)
        if first != vid:
            self.failures.append(f"safety: {node.name} decided {vid.hex()[:12]} at height {height}, "
                                 f"another honest validator decided {first.hex()[:12]}")

    def on_evidence(self, node: Node, evidence: Any) -> None:
        self.stats.evidence += 1
        accused = evidence.a.validator
        culprit = self.nodes[self.node_of[accused]]
        self.trace(f"{node.name} finds evidence against {culprit.name} "
                   f"({evidence.a.kind} r={evidence.a.round})")
        if culprit.honest:
            self.failures.append(f"safety: evidence of equivocation against honest {culprit.name}")

    def _done(self) -> bool:
        sc = self.scenario
        if self.queue.now < sc.heal_at:
            return False
        if self.heights_at_heal is None:
            self.heights_at_heal = {n.index: len(n.blocks) for n in self.honest}
        return all(len(n.blocks) >= sc.heights
                   and len(n.blocks) - self.heights_at_heal[n.index] >= sc.after_heal
                   for n in self.honest)

    def run(self) -> SimResult:
        sc = self.scenario
        deadline = sc.heal_at + sc.liveness_ms
        while not self.failures:
            if self._done():
                break
            if self.queue.now > deadline:
                lagging = {n.name: len(n.blocks) for n in self.honest}
                self.failures.append(
                    f"liveness: {sc.liveness_ms} ms after the faults ended (at {sc.heal_at} ms) "
                    f"honest heights are {lagging}, at heal {self.heights_at_heal}")
                break
            if self.stats.events >= self.MAX_EVENTS or not self.queue.run_one():
                self.failures.append("liveness: the simulation ran out of events")
                break
            self.stats.events += 1
        st, net = self.stats, self.network.stats
        st.refused_signatures += sum(n.replica.engine.engine.refused_signatures for n in self.honest
                                     if not n.crashed and n.replica is not None)
        st.partitions = len(sc.faults.partitions)
        st.sent, st.dropped, st.duplicated = net.sent, net.dropped, net.duplicated
        st.partitioned = net.partitioned
        st.recovery_ms = max(0, self.queue.now - sc.heal_at)
        return SimResult(sc.seed, not self.failures, self.failures, st, self.queue.now,
                         {n.name: len(n.blocks) for n in self.nodes}, sc.describe())


def run_seed(seed: int, *, heights: int = 4, after_heal: int = 2, verbose: bool = False,
             liveness_ms: int = 40_000) -> SimResult:
    scenario = Scenario.from_seed(seed, heights=heights, after_heal=after_heal,
                                  liveness_ms=liveness_ms)
    return Simulation(scenario, verbose=verbose).run()


# --------------------------------------------------------------------------- CLI


def _seed_range(text: str) -> range:
    lo, _, hi = text.partition(":")
    return range(int(lo), int(hi))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m node.consensus.simulator",
                                 description="Run the consensus simulator for one seed or many.")
    which = ap.add_mutually_exclusive_group(required=True)
    which.add_argument("--seed", type=int, help="replay one seed and print its summary")
    which.add_argument("--seeds", type=_seed_range, metavar="A:B",
                       help="run seeds A..B-1 and print the failing ones")
    ap.add_argument("--heights", type=int, default=4,
                    help="heights every honest validator must decide (default 4)")
    ap.add_argument("--after-heal", type=int, default=2,
                    help="heights each must decide after the faults end (default 2)")
    ap.add_argument("--verbose", "-v", action="store_true", help="print a trace of the run")
    args = ap.parse_args(argv)
    # the replica's warnings (evidence, refused sync blocks) are the simulation's daily bread
    logging.getLogger("custos.consensus").setLevel(logging.ERROR)
    if args.seed is not None:
        res = run_seed(args.seed, heights=args.heights, after_heal=args.after_heal,
                       verbose=args.verbose)
        print(f"scenario: {res.scenario}")
        print(res.summary())
        for f in res.failures:
            print(f"  {f}")
        return 0 if res.ok else 1
    started = time.perf_counter()
    failed = 0
    total = SimStats()
    worst_recovery = (0, None)
    byzantine = heights = 0
    for seed in args.seeds:
        res = run_seed(seed, heights=args.heights, after_heal=args.after_heal)
        for k, v in vars(res.stats).items():
            setattr(total, k, max(getattr(total, k), v) if k == "max_round" else getattr(total, k) + v)
        worst_recovery = max(worst_recovery, (res.stats.recovery_ms, seed))
        byzantine += "no byzantine" not in res.scenario
        heights += sum(res.heights.values())
        if not res.ok:
            failed += 1
            print(res.summary())
            for f in res.failures:
                print(f"  {f}")
    elapsed = time.perf_counter() - started
    print(f"{len(args.seeds)} seeds, {failed} failed, {elapsed:.1f} s")
    print(f"  {byzantine} runs with a Byzantine validator; {heights} blocks committed in all")
    print(f"  longest recovery after the faults: {worst_recovery[0]} ms (seed {worst_recovery[1]})")
    print("  totals: " + ", ".join(f"{k} {v}" for k, v in vars(total).items()))
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # the trace was piped into a pager or head
        sys.exit(0)
