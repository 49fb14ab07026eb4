"""Four validators under load while a nemesis pauses, kills, restarts and isolates them one at a
time and damages stopped copies of their stores (:mod:`tests.node.nemesis`). After each
perturbation the network heals by itself within the stated bound; at the end every
acknowledged crossing is in the chain exactly once, the validators agree, and every one's
data directory audits VALID.

The default run makes one perturbation of each kind (about a minute); ``--run-slow`` adds a
run of 50. ``CUSTOS_NEMESIS_SEED`` replays a run; the figures are printed as JSON.
"""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from node.client.http import NodeClient
from tests.node.faultkit import Load, chain_counts, committed_ids, recovered
from tests.node.links import Links
from tests.node.nemesis import KINDS, Nemesis, audit_valid
from tests.node.netkit import Net, adult_traveller, run

#: every perturbation must heal by itself within this (all connected, dialling and committing)
RECOVERY_BOUND_S = 45.0


def nemesis_run(tmp_path, count: int) -> dict:
    seed = int(os.environ.get("CUSTOS_NEMESIS_SEED", "20261201"))
    net = Net(tmp_path / "net", validators=4, heartbeat_ms=500,
              extra_consensus={"timeout_propose_ms": 800, "rebroadcast_ms": 300})
    links = Links(net)
    links.install()
    net.start()
    validators = sorted(net.nodes)
    try:
        traveller = adult_traveller(net, "P-NEMESIS")

        async def go() -> tuple[Nemesis, Load]:
            async with NodeClient(net.urls) as c:
                for tx in traveller.setup:
                    assert (await c.submit(tx.raw, wait=True))["status"] == "committed"
            await recovered(net, validators, timeout_s=30)
            load = Load(net, traveller, net.urls, rate=10)
            stream = asyncio.create_task(load.run())
            nemesis = Nemesis(net, links, seed, recovery_bound_s=RECOVERY_BOUND_S)
            try:
                await nemesis.run(count)
            finally:
                load.stop()
                await stream
            committed = await committed_ids(net.url("val-0"), load.acknowledged, timeout_s=60)
            nemesis.figures.acknowledged = len(load.acknowledged)
            nemesis.figures.committed = len(committed)
            return nemesis, load

        nemesis, load = run(go())
        counts = chain_counts(net, "val-0")
        figures = nemesis.figures
        figures.lost = sum(1 for t in load.acknowledged if counts[t] == 0)
        figures.duplicated = sum(1 for t in load.acknowledged if counts[t] > 1)
        tips = {n: net.get(n, "/v1/status")["height"] for n in validators}
        agreed = min(tips.values())
        assert len({net.get(n, f"/v1/blocks/{agreed}")["hash"] for n in validators}) == 1
        for name in validators:
            assert net.procs[name].poll() is None, f"{name} exited"
    finally:
        net.stop()
        links.close()
    print("nemesis figures:", json.dumps({**figures.to_json(), "log": nemesis.log}), flush=True)
    audits = {name: audit_valid(net, name)["ok"] for name in validators}
    doc = {**figures.to_json(), "audits_valid": audits, "log": nemesis.log}
    print("nemesis audits:", json.dumps(audits))
    assert figures.lost == 0 and figures.duplicated == 0, doc
    assert figures.committed == figures.acknowledged > 0, doc
    assert all(audits.values())
    return doc


def test_a_nemesis_of_each_kind_leaves_every_acknowledged_crossing_committed_once(tmp_path):
    doc = nemesis_run(tmp_path, len(KINDS))
    assert set(doc["by_kind"]) == set(KINDS)


@pytest.mark.slow
@pytest.mark.timeout(3600)  # 50 perturbations, then four audits: longer than a default test may take
def test_fifty_perturbations_leave_every_acknowledged_crossing_committed_once(tmp_path):
    doc = nemesis_run(tmp_path, 50)
    assert doc["perturbations"] == 50
