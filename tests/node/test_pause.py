"""A validator that stalls (SIGSTOP, as a VM pause or a long collector pass would) and resumes
comes back into the network by itself: its peers dropped it while it was silent, and on both
ends every configured peer is redialled whatever ended the last connection. The others keep
committing during the stall (no validator holds a third of the stake); nothing acknowledged is
lost or recorded twice; no node is restarted.

The stalls go to the validators in the order of their keys, the lowest first: on resuming, a
node reads its peers' last pings after they gave up on it, and aiohttp's automatic answer
fails on the closing socket. The one-per-pair rule keeps the connection the lower key dialled,
so the lowest key's dialers meet that failure first, and the next node's when it stalls in
turn: before the dialers were supervised, both ends of a pair could lose theirs for good.

The full scenario (four stalls of 28 s) runs with ``--run-slow``; the default run stalls one
validator, the lowest key (whose dialers meet the failure first), for long enough that every
peer drops it.
"""

from __future__ import annotations

import asyncio

import pytest

from node.client.http import NodeClient
from tests.node.faultkit import Load, chain_counts, committed_ids, pause, recovered, resume
from tests.node.netkit import Net, adult_traveller, run

VALIDATORS = ["val-0", "val-1", "val-2", "val-3"]
#: a peer that does not answer a websocket ping within half of the p2p heartbeat (10 s) is
#: dropped; a pause of 16 s outlasts that whatever the phase of the pings
SHORT_PAUSE_S = 16.0


def pause_scenario(tmp_path, *, stalls: int, pause_s: float) -> None:
    net = Net(tmp_path / "net", validators=4, heartbeat_ms=500,
              extra_consensus={"timeout_propose_ms": 800, "rebroadcast_ms": 300})
    net.start()
    try:
        traveller = adult_traveller(net, "P-PAUSE")

        async def go() -> None:
            async with NodeClient(net.urls) as c:
                for tx in traveller.setup:
                    assert (await c.submit(tx.raw, wait=True))["status"] == "committed"
            await recovered(net, VALIDATORS, timeout_s=30)
            order = sorted(VALIDATORS, key=lambda n: net.nodes[n].key)
            load = Load(net, traveller, net.urls, rate=10)  # fails over past a stalled node
            stream = asyncio.create_task(load.run())
            try:
                for i in range(stalls):
                    stalled = order[i % len(order)]
                    others = [n for n in VALIDATORS if n != stalled]
                    pause(net, stalled)
                    before = max(net.height(n) for n in others)
                    await asyncio.sleep(pause_s)
                    assert min(net.height(n) for n in others) > before, "the others stopped committing"
                    resume(net, stalled)
                    took = await recovered(net, VALIDATORS, timeout_s=45)
                    print(f"{stalled} recovered {took:.1f} s after a stall of {pause_s:.0f} s")
            finally:
                load.stop()
                await stream
            assert len(load.acknowledged) > 10 * pause_s * stalls / 2, load.unanswered
            committed = await committed_ids(net.url("val-0"), load.acknowledged, timeout_s=60)
            assert committed == set(load.acknowledged), f"{len(load.acknowledged) - len(committed)} never committed"
            counts = await asyncio.to_thread(chain_counts, net, "val-0")
            assert all(counts[t] == 1 for t in load.acknowledged)

        run(go())
        for name in VALIDATORS:
            assert net.procs[name].poll() is None, f"{name} exited"
    finally:
        net.stop()


def test_a_stalled_validator_rejoins_and_the_chain_commits_everything(tmp_path):
    pause_scenario(tmp_path, stalls=1, pause_s=SHORT_PAUSE_S)


@pytest.mark.slow
def test_a_validator_stalled_four_times_for_28_s_rejoins_without_a_restart(tmp_path):
    pause_scenario(tmp_path, stalls=4, pause_s=28.0)
