"""The replica a node runs, under simulated faults, over many seeds.

Each seed is one scenario (see :mod:`node.consensus.simulator`): validators with unequal
stakes, often one Byzantine equivocator, message loss, duplication, delay and reordering,
partitions that heal, crash-restarts that lose the unsynced tail of the log, slow disks, CPU
starvation, and a laggard catching up by block sync while the others move on. Safety must hold
for every seed; liveness must return once the faults end. Set the number of seeds with
``pytest tests/node/consensus --sim-seeds N`` or ``CUSTOS_SIM_SEEDS=N``; replay a failure with
``python -m node.consensus.simulator --seed S --verbose``.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

import pytest

from node.consensus import driver, simulator
from node.consensus.replica import Replica
from node.consensus.simnet import NetworkFaults
from node.consensus.simscenario import Crash, Scenario
from node.consensus.simulator import SimResult, SimStats, main, run_seed


def test_the_simulator_runs_the_replica_the_node_runs():
    # one class: what the seeds check is the code a node executes, not a copy of it
    assert simulator.Replica is driver.Replica is Replica
    sim = simulator.Simulation(simulator.Scenario.from_seed(1))
    assert all(type(node.replica) is Replica for node in sim.nodes)


def test_safety_and_liveness(sim_seeds: range, request: pytest.FixtureRequest):
    failures = []
    if sim_seeds.start == request.config.getoption("--sim-first-seed"):
        results: Iterable[SimResult] = map(run_seed, sim_seeds)  # in process, seen by coverage
    else:
        results = request.getfixturevalue("sim_pool").map(run_seed, sim_seeds, chunksize=5)
    for res in results:
        if not res.ok:
            failures.append(f"seed {res.seed}: " + "; ".join(res.failures))
    assert not failures, (
        f"{len(failures)} of {len(sim_seeds)} seeds failed "
        f"(replay with: python -m node.consensus.simulator --seed N --verbose)\n"
        + "\n".join(failures))


def test_a_validator_killed_for_good_leaves_the_others_deciding():
    # Stakes 280/270/250/200: without the 270 the other three hold 730 of 1,000, just enough,
    # so each of them must keep up. It is killed at a random moment while a fifth of the
    # messages are lost; one of the others may then lack a height the dead one helped decide
    # and must fetch it from a live peer (the dead one, which it may ask first, never answers).
    forever = 10**9
    stalled = []
    for seed in range(40):
        crash_at = random.Random(seed).randint(300, 6_000)
        faults = NetworkFaults(heal_at=6_000, drop=0.2, slow=0.1, slow_ms=800)
        sim = simulator.Simulation(Scenario(seed, (280, 270, 250, 200), None, faults,
                                            (Crash(1, crash_at, forever),), 0.0, 4, 2, 40_000))
        queue, live = sim.queue, [sim.nodes[i] for i in (0, 2, 3)]
        while queue.now < 6_000 and queue.run_one():
            pass
        before = [len(n.blocks) for n in live]

        def three_more(live=live, before=before) -> bool:
            return all(len(n.blocks) >= b + 3 for n, b in zip(live, before, strict=True))

        while queue.now < 6_000 + 40_000 and queue.run_one() and not three_more():
            pass
        assert not sim.failures, sim.failures
        if not three_more():
            stalled.append(f"seed {seed} (killed at {crash_at} ms): heights {before} -> "
                           f"{[len(n.blocks) for n in live]}")
    assert not stalled, "no three more blocks within 40 s: " + "; ".join(stalled)


def test_the_scenarios_exercise_every_fault():
    total = SimStats()
    for seed in range(40):
        s = run_seed(seed).stats
        for name in vars(total):
            setattr(total, name, getattr(total, name) + getattr(s, name))
    assert total.crashes > 0 and total.wal_repairs > 0  # restarts over torn logs
    assert total.evidence > 0 and total.equivocations > 0  # the Byzantine validator
    assert total.synced > 0  # block sync
    assert total.laggard_synced > 20  # a laggard caught up over more than one batch of blocks
    assert total.stalled_events > 0  # CPU starvation
    assert total.slow_stores > 0  # a slow disk
    assert total.max_round > 0  # rounds that failed
    assert total.decisions > 40 * 4 * 4


def test_a_seed_replays_identically():
    a, b = run_seed(7), run_seed(7)
    assert a.summary() == b.summary()


def test_command_line_replays_one_seed(capsys):
    assert main(["--seed", "3", "--heights", "3"]) == 0
    out = capsys.readouterr().out
    assert "seed 3: ok" in out


def test_command_line_sweeps_seeds(capsys):
    assert main(["--seeds", "0:3"]) == 0
    assert "3 seeds, 0 failed" in capsys.readouterr().out
