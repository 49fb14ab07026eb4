"""The terminal against a live node: delivery exactly once across a crash, fail-over, refusals,
and the decision shown as it becomes final."""

from __future__ import annotations

import pytest

from ledger.crypto.keys import SigningKey
from node.client.queue import DurableQueue
from node.client.terminal import TerminalClient
from tests.node.clientkit import Background, cli, crossings_by, json_lines
from tests.node.netkit import run


def client(world, path, urls=None) -> TerminalClient:
    return TerminalClient(key=world.terminal, chain_id=world.net.chain_id, post=world.post,
                          queue=DurableQueue(path), urls=urls or world.net.urls, timeout_s=5)


class Crash(Exception):
    pass


def test_crash_after_sending_before_recording_the_answer_commits_once(world, tmp_path):
    child = world.enrol("gil", adult=True)
    before = len(crossings_by(world.net, world.terminal.public))

    async def first_life() -> bytes:
        c = client(world, tmp_path / "q")
        original = c.queue.acknowledge

        def crash(*args, **kwargs):
            raise Crash("power cut between the node's answer and the outbox update")

        c.queue.acknowledge = crash
        try:
            tx = c.make_request(child.biometric, child.identity, direction="exit", destination="RO")
            c.enqueue(tx)
            with pytest.raises(Crash):
                await c.deliver()  # the node has it; the outbox does not know
            assert [w.request_id for w in c.queue.waiting()] == [tx.id]
            return tx.id
        finally:
            c.queue.acknowledge = original
            await c.close()

    async def second_life(rid: bytes) -> None:
        async with client(world, tmp_path / "q") as c:
            report = await c.deliver()  # the same bytes again
            assert [s.request_id for s, _ in report.acknowledged] == [rid]
            doc = await c.wait_decision(rid, timeout_s=15)
            assert doc is not None and doc["status"] == "permitted"
            assert c.queue.waiting() == [] and c.queue.sent() == []

    rid = run(first_life())
    run(second_life(rid))
    after = crossings_by(world.net, world.terminal.public)
    assert len(after) == before + 1 and after.count(rid) == 1


def test_fails_over_to_a_live_node(world, tmp_path):
    child = world.enrol("hana", adult=True)

    async def go():
        async with client(world, tmp_path / "q", urls=["http://127.0.0.1:9", world.net.url()]) as c:
            entry, report = await c.cross(child.biometric, child.identity, direction="entry", destination="MD")
            assert report.error == "" and [s.request_id for s, _ in report.acknowledged] == [entry.request_id]
            assert report.acknowledged[0][0].node == world.net.url()
            return (await c.wait_decision(entry.request_id, timeout_s=15))["status"]

    assert run(go()) == "permitted"


def test_request_refused_by_a_rule_is_kept_for_the_officer(world, tmp_path):
    child = world.enrol("ivo", adult=True)
    impostor = SigningKey.generate()  # not the child's biometric key

    async def go():
        async with client(world, tmp_path / "q") as c:
            entry, report = await c.cross(impostor, child.identity, direction="exit", destination="RO")
            assert [(e.request_id, rule) for e, rule, _ in report.refused] == [(entry.request_id, "biometric-mismatch")]
            assert c.queue.waiting() == []
            assert [r.rule for r in c.queue.refused()] == ["biometric-mismatch"]
            again = await c.deliver()  # never resent by itself
            assert again.acknowledged == [] and again.refused == []

    run(go())


def test_cross_shows_each_step_until_the_decision_is_final(world, tmp_path):
    child = world.enrol("jon", guardians=2, approvals=2, deadline_ms=60_000)
    tdir = world.init_terminal(tmp_path / "terminal")
    cross = Background("terminal", "cross", "--dir", str(tdir), "--card", str(child.card), "--scan",
                       str(child.scans[0]), "--direction", "exit", "--destination", "RO", "--companion", "aunt-77",
                       "--wait", "60s", "--json")
    try:
        queued = cross.expect("the request in the outbox", lambda d: d["event"] == "queued")
        rid = queued["id"]
        cross.expect("delivery", lambda d: d["event"] == "delivered")
        pending = cross.expect("pending", lambda d: d.get("status") == "pending")
        assert pending["approvals_needed"] == 2 and pending["companion"] is not None
        for n, guardian in enumerate(child.guardians):
            doc = world.submit_all([world.net.txs.decide(guardian, bytes.fromhex(rid), child.identity, "approve")])
            assert doc[0]["status"] == "committed"
            if n == 0:
                update = cross.expect("the first approval", lambda d: d["event"] == "decision")
                assert len(update["approvals"]) == 1 and update["status"] == "pending"
        final = cross.expect("the final decision", lambda d: d["event"] == "closed")
        assert final["status"] == "permitted"
        assert cross.proc.wait(15) == 0
    finally:
        cross.stop()
    status = json_lines(cli("terminal", "status", "--dir", str(tdir), rid, "--json", check=True).stdout)[0]
    assert status["status"] == "permitted" and len(status["approvals"]) == 2
    text = cli("terminal", "status", "--dir", str(tdir), rid, check=True).stdout
    assert "PERMITTED" in text


def test_cross_refuses_a_scan_that_does_not_unlock_the_card(world, tmp_path):
    kim = world.enrol("kim", adult=True)
    lea = world.enrol("lea", adult=True)
    tdir = world.init_terminal(tmp_path / "terminal")
    proc = cli("terminal", "cross", "--dir", str(tdir), "--card", str(kim.card), "--scan", str(lea.scans[0]),
               "--direction", "exit", "--destination", "RO")
    assert proc.returncode == 2 and "NO MATCH" in proc.stderr
    outbox = json_lines(cli("terminal", "queue", "--dir", str(tdir), "--json", check=True).stdout)[0]
    assert outbox["waiting"] == [] and outbox["sent"] == []  # nothing was signed, nothing queued


def test_the_next_child_can_be_recorded_while_one_waits_for_guardians(world, tmp_path):
    waiting_child = world.enrol("max", guardians=1, approvals=1)
    next_child = world.enrol("nia", adult=True)
    tdir = world.init_terminal(tmp_path / "terminal")
    first = Background("terminal", "cross", "--dir", str(tdir), "--card", str(waiting_child.card), "--scan",
                       str(waiting_child.scans[0]), "--direction", "exit", "--destination", "RO", "--wait", "60s",
                       "--json")
    try:
        rid = first.expect("the request", lambda d: d["event"] == "queued")["id"]
        first.expect("the pending status", lambda d: d.get("status") == "pending")
        second = cli("terminal", "cross", "--dir", str(tdir), "--card", str(next_child.card), "--scan",
                     str(next_child.scans[0]), "--direction", "exit", "--destination", "RO", "--json")
        assert second.returncode == 0, second.stdout + second.stderr
        assert json_lines(second.stdout)[-1]["status"] == "permitted"
        world.submit_all([world.net.txs.decide(waiting_child.guardians[0], bytes.fromhex(rid),
                                               waiting_child.identity, "approve")])
        assert first.expect("the decision", lambda d: d["event"] == "closed")["status"] == "permitted"
        assert first.proc.wait(15) == 0
    finally:
        first.stop()
    outbox = json_lines(cli("terminal", "queue", "--dir", str(tdir), "--json", check=True).stdout)[0]
    assert outbox == {"waiting": [], "sent": [], "refused": []}
