"""Signature checks in worker processes: same verdicts and same refusals as checking in process,
through a worker's death, and only whole verified tasks are ever taken from a worker."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import replace

import pytest

from ledger.block import tx_root
from ledger.chain import execute_block
from ledger.encoding import decode, encode
from ledger.errors import InvalidBlock
from ledger.tx.envelope import decode_tx
from node import sigcheck
from node.app import NodeApp
from node.client.http import NodeClient
from node.sigcheck import SigChecker
from tests.ledger.chainkit import Chain
from tests.node.faultkit import committed_ids, metric
from tests.node.netkit import Net, adult_traveller, run


@pytest.fixture
def checker():
    c = SigChecker(workers=1, min_batch=8)
    c.start()
    yield c
    c.close()


@pytest.fixture
def border():
    chain = Chain()
    authority, terminal = chain.open_border()
    adult = chain.enrol_child(authority, minor=False)
    return chain, terminal, adult


def forge(raw: bytes) -> bytes:
    envelope = decode(raw)
    envelope["sigs"][1]["sig"] = bytes(64)  # the terminal's signature replaced by zeros
    return encode(envelope)


def test_a_block_checked_ahead_executes_as_without_the_workers(checker, border):
    chain, terminal, adult = border
    executed, _ = chain.propose([chain.crossing(terminal, adult) for _ in range(150)])
    ahead = checker.ahead(chain.chain_id, executed.block.txs)
    assert ahead.workers is not None  # the batch went to the workers
    result = execute_block(chain.store, executed.block, verified=ahead.verified)
    assert result.changes.state_root == executed.changes.state_root
    assert [tx.id for tx in result.txs] == [tx.id for tx in executed.txs]
    assert all(ahead.verified(tx) for tx in result.txs)


def test_a_worker_posts_a_verdict_for_every_task_and_refuses_the_forged_one(checker, border):
    chain, terminal, adult = border
    raws = [chain.crossing(terminal, adult).raw for _ in range(100)]
    raws[70] = forge(raws[70])
    workers = checker._pool
    job = workers.submit(chain.chain_id, raws, 32)
    deadline = time.monotonic() + 30
    verdicts = [workers.verdict(job, k) for k in range(4)]
    while None in verdicts and time.monotonic() < deadline:
        workers.wait()
        verdicts = [workers.verdict(job, k) for k in range(4)]
    assert verdicts == [True, True, False, True]  # positions 64-95 hold the forged one


def test_a_forged_signature_is_refused_as_by_the_serial_check(checker, border):
    chain, terminal, adult = border
    executed, _ = chain.propose([chain.crossing(terminal, adult) for _ in range(100)])
    block = executed.block
    raws = list(block.txs)
    raws[70] = forge(raws[70])
    forged = replace(block, header=replace(block.header, tx_root=tx_root(raws)), txs=tuple(raws))
    with pytest.raises(InvalidBlock) as serial:
        execute_block(chain.store, forged)
    ahead = checker.ahead(chain.chain_id, forged.txs)
    assert ahead.workers is not None
    with pytest.raises(InvalidBlock) as parallel:
        execute_block(chain.store, forged, verified=ahead.verified)
    assert serial.value.check == "tx-signature" and "transaction 70" in str(serial.value)
    assert str(parallel.value) == str(serial.value)


def test_a_worker_that_dies_holding_tasks_is_replaced_and_its_tasks_are_checked_here(border):
    chain, terminal, adult = border
    raws = [chain.crossing(terminal, adult).raw for _ in range(2000)]
    counted: list[str] = []
    c = SigChecker(workers=1, min_batch=8, count=counted.append)
    c.start()
    try:
        pool = c._pool
        ahead = c.ahead(chain.chain_id, raws)
        deadline = time.monotonic() + 30
        while not pool.taken(ahead.job, 0) and time.monotonic() < deadline:
            time.sleep(0.001)
        os.kill(pool.procs[0].pid, signal.SIGKILL)  # dies with most of the job left
        assert all(ahead.verified(decode_tx(raw)) for raw in raws)
        assert pool.broken
        assert c.ahead(chain.chain_id, raws).workers is None  # new workers start meanwhile
        assert counted == ["signature_jobs", "signature_workers_replaced"]
        c.start()
        assert c._pool is not None and c._pool is not pool
        third = c.ahead(chain.chain_id, raws[:100])
        assert third.workers is c._pool and all(third.verified(decode_tx(raw)) for raw in raws[:100])
    finally:
        c.close()


def test_a_stopped_worker_holding_a_task_is_given_up_on(border, monkeypatch):
    chain, terminal, adult = border
    raws = [chain.crossing(terminal, adult).raw for _ in range(400)]
    monkeypatch.setattr(sigcheck, "STALL_S", 0.5)
    c = SigChecker(workers=1, min_batch=8)
    c.start()
    pool = c._pool
    try:
        ahead = c.ahead(chain.chain_id, raws)
        deadline = time.monotonic() + 30
        while not pool.taken(ahead.job, 0) and time.monotonic() < deadline:
            time.sleep(0.001)
        os.kill(pool.procs[0].pid, signal.SIGSTOP)  # alive, but holding a task for ever
        started = time.monotonic()
        assert all(ahead.verified(decode_tx(raw)) for raw in raws)
        assert pool.broken and time.monotonic() - started < 20
    finally:
        os.kill(pool.procs[0].pid, signal.SIGCONT)
        c.close()


def test_a_job_a_stopped_worker_does_not_read_does_not_stop_the_caller(border, monkeypatch):
    chain, terminal, adult = border
    raws = [chain.crossing(terminal, adult).raw for _ in range(1000)]  # more than a pipe holds
    monkeypatch.setattr(sigcheck, "STALL_S", 0.5)
    c = SigChecker(workers=1, min_batch=8)
    c.start()
    pool = c._pool
    os.kill(pool.procs[0].pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        ahead = c.ahead(chain.chain_id, raws)
        assert pool.broken and time.monotonic() - started < 20
        assert all(ahead.verified(decode_tx(raw)) for raw in raws)
    finally:
        os.kill(pool.procs[0].pid, signal.SIGCONT)
        c.close()


def test_small_batches_and_no_workers_are_checked_in_process(border):
    chain, terminal, adult = border
    raws = [chain.crossing(terminal, adult).raw for _ in range(4)]
    small = SigChecker(workers=1, min_batch=sigcheck.MIN_BATCH)
    none = SigChecker(workers=0, min_batch=1)
    try:
        assert small.ahead(chain.chain_id, raws).workers is None
        assert small._pool is None and small._starting is None  # nothing started for it
        assert none.ahead(chain.chain_id, raws).workers is None
    finally:
        small.close()
        none.close()


def test_an_earlier_block_s_verdicts_hold_after_a_later_block_was_handed_over(checker, border):
    chain, terminal, adult = border
    first = [chain.crossing(terminal, adult).raw for _ in range(64)]
    second = [chain.crossing(terminal, adult).raw for _ in range(64)]
    second[5] = forge(second[5])
    a = checker.ahead(chain.chain_id, first)
    b = checker.ahead(chain.chain_id, second)  # replaces the job the workers take tasks from
    assert all(a.verified(decode_tx(raw)) for raw in first)
    assert [b.verified(decode_tx(raw)) for raw in second[:32]] == [False] * 32  # the forged one's task
    assert all(b.verified(decode_tx(raw)) for raw in second[32:])


def test_a_node_validates_a_block_of_unadmitted_transactions_through_its_workers(border):
    chain, terminal, adult = border
    app = NodeApp(chain.store, clock_ms=lambda: chain.store.tip.time + 500, signature_workers=1)
    try:
        first, _ = chain.propose([chain.crossing(terminal, adult) for _ in range(150)])
        assert app.validate(first.block).changes.state_root == first.changes.state_root
        app._sigcheck.start()  # the first large batch started the workers in the background
        workers = app._sigcheck._pool
        assert workers is not None and workers.job == 0
        txs = [chain.crossing(terminal, adult) for _ in range(150)]
        second, _ = chain.propose(txs)
        raws = list(second.block.txs)
        raws[99] = forge(raws[99])
        header = replace(second.block.header, tx_root=tx_root(raws))
        with pytest.raises(InvalidBlock, match="transaction 99"):
            app.validate(replace(second.block, header=header, txs=tuple(raws)))
        assert workers.job == 1  # handed to the workers
        assert app.validate(second.block).changes.state_root == second.changes.state_root
        assert workers.job == 2
        assert app.metrics.counters["signature_jobs"] == 2
    finally:
        app.close()


def test_a_running_observer_checks_blocks_it_never_admitted_through_its_signature_workers(tmp_path):
    """Through real processes: the observer peers with val-1 only, and the crossings go to val-0,
    which hands them to its peers but no further, so they reach the observer in blocks alone.
    The first large block starts its worker in the background; once it runs, the next large
    block's signatures go to it, and the observer's state is the validators'."""
    net = Net(tmp_path / "net", validators=2, observers=1, heartbeat_ms=300,
              node_consensus={"obs-0": {"signature_workers": 1}})
    apart = {"obs-0": net.nodes["val-0"].key, "val-0": net.nodes["obs-0"].key}
    for name, key in apart.items():
        config = net.dir / name / "node.toml"
        config.write_text("\n".join(line for line in config.read_text().splitlines() if key not in line) + "\n")
    net.start()
    try:
        traveller = adult_traveller(net, "P-SIG")

        async def submit(raws: list[bytes]) -> None:  # in one batch: in the mempool together, in one block
            async with NodeClient([net.url("val-0")]) as c:
                assert {r["status"] for r in await c.submit_batch(raws)} == {"accepted"}

        def observer_commits(txs: list) -> None:
            ids = [tx.id for tx in txs]
            assert run(committed_ids(net.url("obs-0"), ids, timeout_s=60)) == set(ids)

        def burst() -> None:
            txs = [traveller.crossing(net.txs) for _ in range(400)]
            run(submit([tx.raw for tx in txs]))
            observer_commits(txs)

        async def setup() -> None:
            async with NodeClient([net.url("val-0")]) as c:
                for tx in traveller.setup:
                    assert (await c.submit(tx.raw, wait=True))["status"] == "committed"

        run(setup())
        observer_commits(traveller.setup)
        assert metric(net, "obs-0", "custos_signature_workers") == 0  # not before a large block
        burst()
        net.wait_until("the observer's signature worker to start",
                       lambda: metric(net, "obs-0", "custos_signature_workers") == 1, timeout_s=30)
        before = metric(net, "obs-0", "custos_signature_jobs_total") or 0
        burst()
        assert (metric(net, "obs-0", "custos_signature_jobs_total") or 0) > before
        height = net.height("val-0")
        net.wait_height(height, "obs-0")
        theirs = net.get("val-0", f"/v1/blocks/{height}")["hash"]
        for name in ("val-1", "obs-0"):
            assert net.get(name, f"/v1/blocks/{height}")["hash"] == theirs
    finally:
        net.stop()
