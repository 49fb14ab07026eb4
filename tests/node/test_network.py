"""Four validator processes (stakes 300/270/230/200) and an observer on 127.0.0.1.

They commit a stream of transactions; survive a validator's SIGKILL and catch it up; stop
committing without more than 2/3 of the stake and resume when it returns; never double-sign
across crash-restarts; and an observer follows by block sync, verifying every certificate.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import time
import urllib.request

import pytest

from node.client.http import NodeClient, ProblemError
from node.ops.scrape import parse_samples
from tests.node.netkit import Net, adult_traveller, run

VALIDATORS = ["val-0", "val-1", "val-2", "val-3"]


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    net = Net(tmp_path_factory.mktemp("four"), validators=4, observers=1, heartbeat_ms=500,
              extra_consensus={"timeout_propose_ms": 800, "rebroadcast_ms": 300})
    net.start()
    yield net
    net.stop()


@pytest.fixture(scope="module")
def border(net):
    """A terminal at a registered post and an adult traveller (every crossing permitted)."""
    traveller = adult_traveller(net, "P-1")

    async def go():
        async with NodeClient(net.urls) as c:
            for tx in traveller.setup:
                assert (await c.submit(tx.raw, wait=True))["status"] == "committed"

    run(go())
    return traveller


def crossings(net, border, n):
    return [border.crossing(net.txs) for _ in range(n)]


async def submit_all(urls, txs, *, wait_s=40.0):
    """Submit round-robin over ``urls``, then wait (bounded) until every one is committed."""
    clients = [NodeClient(u, timeout_s=5) for u in urls]
    try:
        for i, tx in enumerate(txs):
            await clients[i % len(clients)].submit(tx.raw)
        deadline = time.monotonic() + wait_s
        pending = {tx.id for tx in txs}
        while pending and time.monotonic() < deadline:
            for tx_id in list(pending):
                try:
                    if (await clients[0].tx(tx_id))["status"] == "committed":
                        pending.discard(tx_id)
                except ProblemError as exc:
                    if exc.status != 404:  # 404: submitted elsewhere, not gossiped here yet
                        raise
            if pending:
                await asyncio.sleep(0.3)
        return pending
    finally:
        for c in clients:
            await c.close()


def hashes(net, name, upto):
    return [net.get(name, f"/v1/blocks/{h}")["hash"] for h in range(1, upto + 1)]


def assert_same_chain(net, names):
    upto = min(net.height(n) for n in names)
    reference = hashes(net, names[0], upto)
    for n in names[1:]:
        assert hashes(net, n, upto) == reference, f"{n} disagrees with {names[0]}"
    return upto


def metric(net, name, metric_name) -> int:
    with urllib.request.urlopen(net.url(name) + "/metrics", timeout=5) as r:
        return int(parse_samples(r.read().decode()).get(metric_name, 0))


def test_four_validators_commit_a_stream_of_transactions(net, border):
    txs = crossings(net, border, 60)
    assert run(submit_all(net.urls[:4], txs)) == set()
    assert assert_same_chain(net, VALIDATORS) >= 2


def test_the_rest_keep_committing_without_a_killed_validator_and_it_catches_up(net, border):
    net.kill("val-3", signal.SIGKILL)
    alive = [net.url(n) for n in VALIDATORS[:3]]
    assert run(submit_all(alive, crossings(net, border, 30))) == set()
    target = net.height("val-0")
    net.start("val-3")
    net.wait_height(target, "val-3", timeout_s=30)
    assert assert_same_chain(net, VALIDATORS) >= target


def test_commits_stop_at_half_the_stake_and_resume_when_it_returns(net, border):
    net.kill("val-1", signal.SIGTERM)
    net.kill("val-2", signal.SIGTERM)  # 270 + 230 of 1000: the rest hold exactly half
    stuck_at = net.height("val-0")
    tx = crossings(net, border, 1)[0]
    run(NodeClient(net.url("val-0")).submit(tx.raw))
    time.sleep(3.0)  # six heartbeats: an unstopped chain would have added blocks
    assert net.height("val-0") == stuck_at
    assert net.get("val-0", f"/v1/txs/{tx.id.hex()}")["status"] == "accepted"
    net.start("val-1", "val-2")
    net.wait_until("the stalled transaction to commit",
                   lambda: net.get("val-0", f"/v1/txs/{tx.id.hex()}")["status"] == "committed", timeout_s=40)
    assert net.height("val-0") > stuck_at
    assert_same_chain(net, VALIDATORS)


def test_a_validator_killed_mid_round_again_and_again_never_double_signs(net, border):
    # val-1 holds 270 of 1000: without it the others (730) still commit, so it is killed in
    # the middle of live rounds, and restarts into heights it may have voted in already
    for _ in range(3):
        txs = crossings(net, border, 20)
        others = [net.url(n) for n in VALIDATORS if n != "val-1"]

        async def load_and_kill(others=others, txs=txs):
            task = asyncio.create_task(submit_all(others, txs))
            await asyncio.sleep(0.7)
            net.kill("val-1", signal.SIGKILL)
            return await task

        assert run(load_and_kill()) == set()
        net.start("val-1")
    net.wait_height(net.height("val-0"), "val-1", timeout_s=30)
    for name in VALIDATORS:
        assert metric(net, name, "custos_evidence_seen_total") == 0, f"{name} saw a double vote"
    bonded = net.get("val-0", "/v1/validators")["bonded"]
    assert all(not b["jailed"] for b in bonded)
    assert_same_chain(net, VALIDATORS)


def test_a_new_observer_catches_up_by_block_sync_and_never_votes(net, border):
    # the observer loses everything and comes back as a new node: consensus messages of past
    # heights are gone, so only block sync (with each certificate checked) can bring it back
    net.kill("obs-0", signal.SIGKILL)
    for sub in ("chain", "consensus", "reads-index"):
        shutil.rmtree(net.dir / "obs-0" / sub, ignore_errors=True)
    assert run(submit_all(net.urls[:4], crossings(net, border, 10))) == set()
    target = net.height("val-0")
    net.start("obs-0")
    net.wait_height(target, "obs-0", timeout_s=30)
    status = net.get("obs-0", "/v1/status")
    assert status["validator"] is False
    assert_same_chain(net, [*VALIDATORS, "obs-0"])
    assert metric(net, "obs-0", "custos_blocks_synced_total") >= target - 2


def test_a_council_change_of_the_validator_set_takes_effect_two_blocks_later(net, border):
    """Unbonding val-3 (200 of 1000) by a council transaction in block h changes the set that
    signs block h + 2 (the genesis delay), not earlier; the others carry on without it."""
    leaving = bytes.fromhex(net.nodes["val-3"].key)
    tx = net.txs.set_validator(net.council[:2], leaving, 0)

    async def go():
        async with NodeClient(net.url("val-0")) as c:
            return await c.submit(tx.raw, wait=True)

    h = run(go())["height"]

    def signers(height):
        return {s["validator"] for s in net.get("val-0", f"/v1/blocks/{height}")["commit"]["signatures"]}

    def set_at(height):
        return {v["key"] for v in net.get("val-0", f"/v1/validators?height={height}")["validators"]}

    net.wait_height(h + 3, "val-0", "val-1", "val-2", timeout_s=30)
    assert leaving.hex() in set_at(h + 1)
    assert leaving.hex() not in set_at(h + 2)
    assert leaving.hex() not in signers(h + 2) and leaving.hex() not in signers(h + 3)
    assert net.get("val-3", "/v1/status")["validator"] is False


def test_a_transaction_accepted_then_left_out_answers_why_not_that_it_is_unknown(net):
    """Two nodes accept, each from its own client, transactions that exclude each other (the same
    post registered twice). One commits; the other can never commit, and its status says so,
    with the rule, instead of "no such transaction"."""
    first = net.txs.register_post(net.council[:2], "P-TWICE", "first")
    second = net.txs.register_post(net.council[:2], "P-TWICE", "second")

    async def go():
        async with NodeClient(net.url("val-0")) as a, NodeClient(net.url("val-1")) as b:
            accepted = await asyncio.gather(a.submit(first.raw), b.submit(second.raw))
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                answers = []
                for client, tx in ((a, first), (b, second)):
                    try:
                        answers.append(await client.tx(tx.id))
                    except ProblemError as exc:
                        answers.append(exc)
                if all(isinstance(x, ProblemError) or x.get("status") == "committed" for x in answers):
                    return accepted, answers
                await asyncio.sleep(0.3)
            raise AssertionError(f"neither settled: {answers}")

    accepted, answers = run(go())
    assert [doc["status"] for doc in accepted] == ["accepted", "accepted"]
    committed = [x for x in answers if isinstance(x, dict)]
    refused = [x for x in answers if isinstance(x, ProblemError)]
    assert len(committed) == 1 and len(refused) == 1, answers
    assert refused[0].status == 410 and refused[0].type.endswith("/dropped")
    assert refused[0].rule == "already-exists"  # the rule the transaction broke once the other committed
