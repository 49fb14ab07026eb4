"""A seeded, deterministic simulator of a validator network running the real consensus code.

Each simulated validator runs the real :class:`~node.consensus.engine.Engine` behind the real
write-ahead log (:mod:`node.consensus.recorder`, in-memory storage) and the real double-sign
guard (:class:`~node.consensus.privval.MemoryPrivValidator`), with real Ed25519 keys and
signatures. Signatures are not verified on delivery: the simulated network cannot forge an
honest validator's messages, and what the engine does with a message does not depend on it.
Block sync does verify them (``Commit.check``), as a real node must.

One seed fixes the scenario: the number of validators and their (unequal) stakes, whether one
of them is Byzantine, and the faults before ``heal_at``: message loss, duplication and delay,
partitions that heal, crash-restarts of honest validators that lose the unsynced tail of their
log. The Byzantine validator (less than a third of the stake) runs an engine but equivocates:
it sends different proposals and conflicting votes to different peers, before and after
``heal_at``. Some proposals are malformed and rejected by ``validate``, so nil votes happen.

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
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from ledger.block import Commit, Vote, sign_vote
from ledger.crypto.keys import SigningKey
from ledger.errors import ChainError
from ledger.validators import Validator, ValidatorSet
from node.consensus.config import TimeoutConfig
from node.consensus.engine import Engine
from node.consensus.messages import Proposal, Timeout, sign_proposal
from node.consensus.outputs import Broadcast, Decide, EvidenceFound, ScheduleTimeout
from node.consensus.privval import MemoryPrivValidator
from node.consensus.recorder import RecordedEngine
from node.consensus.simnet import EventQueue, Network
from node.consensus.simscenario import CHAIN_ID, Scenario, ToyApp, UnguardedSigner, value_id
from node.consensus.wal import ConsensusWal, MemoryStorage

SIM_TIMEOUTS = TimeoutConfig(propose_ms=300, propose_delta_ms=100, prevote_ms=150,
                             prevote_delta_ms=75, precommit_ms=150, precommit_delta_ms=75)
REBROADCAST_MS = 500
COMMIT_DELAY_MS = 50  # like CometBFT's timeout_commit: a pause before the next height
SYNC_RETRY_MS = 300
SYNC_BATCH = 8


# --------------------------------------------------------------------------- nodes


@dataclass(frozen=True, slots=True)
class SyncRequest:
    height: int


@dataclass(frozen=True, slots=True)
class SyncResponse:
    blocks: tuple[tuple[int, bytes, Commit], ...]


class Node:
    """One validator: engine, log, signer, block store, and a minimal block sync."""

    def __init__(self, sim: Simulation, index: int, key: SigningKey) -> None:
        self.sim = sim
        self.index = index
        self.name = f"n{index}"
        self.key = key
        self.app = ToyApp(self.name, random.Random(f"{sim.scenario.seed}/{index}"),
                          sim.scenario.bad_proposal_rate)
        self.blocks: dict[int, tuple[bytes, Commit]] = {}
        self.epoch = 0  # bumped on crash: timers of a previous life are ignored
        self.crashed = False
        self.last_sync_request = -10**9
        self.signer = self.make_signer()
        self.storage = MemoryStorage()
        self.engine: Any = None

    @property
    def honest(self) -> bool:
        return True

    def make_signer(self) -> Any:
        return MemoryPrivValidator(self.key, CHAIN_ID)

    def boot(self) -> None:
        """Start, or restart after a crash: recover the engine from the log."""
        wal = ConsensusWal(self.storage)
        if wal.recovery.problem:
            self.sim.stats.wal_repairs += 1
            self.sim.trace(f"{self.name} log repaired: {wal.recovery.problem}")
        engine = Engine(self.app, self.signer, timeouts=SIM_TIMEOUTS)
        self.engine = RecordedEngine(engine, wal)
        self.handle(self.engine.recover(self.next_height, self.sim.validators))
        self.schedule_rebroadcast()

    @property
    def next_height(self) -> int:
        """The first height this node has no block for."""
        return max(self.blocks, default=0) + 1

    def schedule_rebroadcast(self) -> None:
        jitter = self.sim.rng.randint(0, REBROADCAST_MS // 5)
        self.sim.queue.after(REBROADCAST_MS + jitter, self.on_rebroadcast, self.epoch)

    def on_rebroadcast(self, epoch: int) -> None:
        if epoch != self.epoch or self.crashed:
            return
        self.handle(self.engine.rebroadcast())
        self.schedule_rebroadcast()

    def on_timer(self, epoch: int, t: Timeout) -> None:
        if epoch == self.epoch and not self.crashed:
            self.handle(self.engine.on_timeout(t))

    def receive(self, src: int, msg: Any) -> None:
        if self.crashed:
            return
        if isinstance(msg, (Proposal, Vote)):
            if msg.height > self.next_height:
                self.request_sync(src)
            if isinstance(msg, Proposal):
                self.handle(self.engine.on_proposal(msg))
            else:
                self.handle(self.engine.on_vote(msg))
        elif isinstance(msg, SyncRequest):
            self.serve_sync(src, msg)
        elif isinstance(msg, SyncResponse):
            self.apply_sync(src, msg)

    # ---------------------------------------------------------------- outputs

    def handle(self, outputs: list) -> None:
        if self.sim.verbose:
            self.trace_outputs(outputs)
        for o in outputs:
            if isinstance(o, Broadcast):
                self.broadcast(o.message)
            elif isinstance(o, ScheduleTimeout):
                self.sim.queue.after(o.delay_ms, self.on_timer, self.epoch, o.timeout)
            elif isinstance(o, Decide):
                self.commit(o.height, o.value, o.value_id, o.commit, o.round, synced=False)
            elif isinstance(o, EvidenceFound):
                self.sim.on_evidence(self, o.evidence)

    def trace_outputs(self, outputs: list) -> None:
        e = self.engine.engine
        for o in outputs:
            if isinstance(o, Broadcast) and o.message in e.own_messages():
                m = o.message
                if isinstance(m, Proposal):
                    what = f"proposes {m.value!r} (pol {m.pol_round})"
                else:
                    what = f"{m.kind}s {m.block.hex()[:10] if m.block else 'nil'}"
                self.sim.trace(f"{self.name} h={m.height} r={m.round} {what}")
            elif isinstance(o, ScheduleTimeout):
                self.sim.trace(f"{self.name} h={o.height} r={o.round} waits {o.delay_ms} ms "
                               f"({o.step})")

    def broadcast(self, msg: Any) -> None:
        for j in range(len(self.sim.nodes)):
            if j != self.index:
                self.sim.network.send(self.index, j, msg)

    def commit(self, height: int, value: bytes, vid: bytes, commit: Commit, round_: int, *,
               synced: bool) -> None:
        self.sim.on_decide(self, height, round_, value, vid, commit, synced)
        if height in self.blocks:
            return  # block sync got there first; the engine's decision was checked above
        self.blocks[height] = (value, commit)
        delay = 0 if synced else COMMIT_DELAY_MS
        self.sim.queue.after(delay, self.start_next, self.epoch, height + 1)

    def start_next(self, epoch: int, height: int) -> None:
        if (epoch == self.epoch and not self.crashed and height == self.next_height
                and self.engine.engine.height < height):
            self.handle(self.engine.start_height(height, self.sim.validators))

    # ---------------------------------------------------------------- block sync

    def request_sync(self, peer: int, *, again: bool = False) -> None:
        now = self.sim.queue.now
        if again or now - self.last_sync_request >= SYNC_RETRY_MS:
            self.last_sync_request = now
            self.sim.network.send(self.index, peer, SyncRequest(self.next_height))

    def serve_sync(self, peer: int, req: SyncRequest) -> None:
        out = []
        for h in range(req.height, req.height + SYNC_BATCH):
            if h not in self.blocks:
                break
            value, commit = self.blocks[h]
            out.append((h, value, commit))
        if out:
            self.sim.network.send(self.index, peer, SyncResponse(tuple(out)))

    def apply_sync(self, peer: int, resp: SyncResponse) -> None:
        for h, value, commit in resp.blocks:
            if h != self.next_height:
                continue
            vid = self.app.validate(h, commit.round, value)
            if vid is None:
                self.sim.trace(f"{self.name} sync: invalid value at height {h}")
                return
            try:
                commit.check(CHAIN_ID, self.sim.validators, height=h, block=vid)
            except ChainError as exc:
                self.sim.trace(f"{self.name} sync: rejected commit: {exc}")
                return
            self.sim.stats.synced += 1
            self.commit(h, value, vid, commit, commit.round, synced=True)
        if len(resp.blocks) == SYNC_BATCH:
            self.request_sync(peer, again=True)  # the peer may have more


class ByzantineNode(Node):
    """Runs an engine, but equivocates: each peer may get a different proposal or vote."""

    @property
    def honest(self) -> bool:
        return False

    def make_signer(self) -> Any:
        return UnguardedSigner(self.key)

    def broadcast(self, msg: Any) -> None:
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
                f"{s.dropped}/{s.sent} messages dropped, {s.events} events")


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
        self.nodes: list[Node] = []
        for i, key in enumerate(self.keys):
            cls = ByzantineNode if i == scenario.byzantine else Node
            self.nodes.append(cls(self, i, key))
        self.trace(f"scenario {scenario.seed}: {scenario.describe()}")
        for node in self.nodes:
            node.boot()
        for c in scenario.crashes:
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

    def _crash(self, i: int) -> None:
        node = self.nodes[i]
        if node.crashed:
            return
        node.crashed = True
        node.epoch += 1
        self.stats.crashes += 1
        self.stats.refused_signatures += node.engine.engine.refused_signatures
        unsynced = len(node.storage.data) - node.storage.durable
        node.storage.power_cut(self.rng.randint(0, unsynced))
        self.trace(f"{node.name} crashes at height {node.next_height} (log loses "
                   f"{unsynced - (len(node.storage.data) - node.storage.durable)} of "
                   f"{unsynced} unsynced bytes)")

    def _restart(self, i: int) -> None:
        node = self.nodes[i]
        if not node.crashed:
            return
        node.crashed = False
        node.epoch += 1
        node.boot()
        e = node.engine.engine
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
        st.refused_signatures += sum(n.engine.engine.refused_signatures for n in self.honest
                                     if not n.crashed)
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
