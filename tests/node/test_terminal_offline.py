"""A border post without network: crossings recorded while every node is down are delivered,
each exactly once, when the nodes are back, even though the terminal process was killed."""

from __future__ import annotations

import time

from tests.node.clientkit import Background, World, cli, crossings_by, json_lines, signed_get
from tests.node.netkit import Net


def test_five_crossings_while_every_node_is_down_commit_exactly_once(tmp_path):
    net = Net(tmp_path / "net", validators=1, heartbeat_ms=300)
    net.start()
    runner = None
    try:
        world = World(net, tmp_path / "keys")
        child = world.enrol("dana", adult=True)  # every crossing is permitted: the count is what matters
        tdir = world.init_terminal(tmp_path / "terminal")

        net.stop()  # the post loses its network: no node answers
        queued = []
        for i in range(5):
            proc = cli("terminal", "cross", "--dir", str(tdir), "--card", str(child.card),
                       "--scan", str(child.scans[i % len(child.scans)]), "--direction", "exit",
                       "--destination", "RO", "--json", timeout_s=60)
            assert proc.returncode == 3, proc.stdout + proc.stderr  # 3: cannot reach a node
            events = {d["event"]: d for d in json_lines(proc.stdout)}
            assert "offline" in events and events["offline"]["waiting"] == i + 1
            queued.append(events["queued"]["id"])
        outbox = json_lines(cli("terminal", "queue", "--dir", str(tdir), "--json", check=True).stdout)[0]
        assert [w["id"] for w in outbox["waiting"]] == queued

        # the terminal's process starts, finds no node, and is killed
        runner = Background("terminal", "run", "--dir", str(tdir), "--json", "--retry", "300ms")
        started = runner.expect("the outbox count", lambda d: d["event"] == "started")
        assert started["waiting"] == 5
        runner.expect("a failed delivery attempt", lambda d: d["event"] == "offline")
        runner.kill()

        # network back; the terminal restarts and delivers
        net.start()
        runner = Background("terminal", "run", "--dir", str(tdir), "--json", "--retry", "300ms")
        delivered = {runner.expect(f"delivery {i}", lambda d: d["event"] == "delivered")["id"] for i in range(5)}
        assert delivered == set(queued)
        closed = {runner.expect(f"decision {i}", lambda d: d["event"] == "closed")["id"] for i in range(5)}
        assert closed == set(queued)
        runner.stop()

        on_chain = crossings_by(net, world.terminal.public)
        assert sorted(x.hex() for x in on_chain) == sorted(queued)  # all five, each once
        status, doc, _ = signed_get(net.url(), f"/v1/terminals/{world.terminal.public.hex()}/requests",
                                    world.terminal, net.chain_id)
        assert status == 200 and sorted(r["id"] for r in doc["requests"]) == sorted(queued)
        assert all(r["status"] == "permitted" for r in doc["requests"])
        outbox = json_lines(cli("terminal", "queue", "--dir", str(tdir), "--json", check=True).stdout)[0]
        assert outbox == {"waiting": [], "sent": [], "refused": []}
    finally:
        if runner is not None:
            runner.stop()
        net.stop()


def test_flush_keeps_retrying_until_a_node_is_back(tmp_path):
    net = Net(tmp_path / "net", validators=1, heartbeat_ms=300)
    net.start()
    flusher = None
    try:
        world = World(net, tmp_path / "keys")
        child = world.enrol("emil", adult=True)
        tdir = world.init_terminal(tmp_path / "terminal")
        net.stop()
        proc = cli("terminal", "cross", "--dir", str(tdir), "--card", str(child.card), "--scan", str(child.scans[0]),
                   "--direction", "entry", "--destination", "MD", "--json")
        assert proc.returncode == 3
        flusher = Background("terminal", "queue", "--dir", str(tdir), "--flush", "--retry-for", "60s", "--json")
        time.sleep(1.5)  # a few failed rounds against the dead node
        net.start()
        assert flusher.proc.wait(60) == 0
        outbox = json_lines(cli("terminal", "queue", "--dir", str(tdir), "--json", check=True).stdout)[0]
        assert outbox["waiting"] == [] and outbox["refused"] == []
        assert len(crossings_by(net, world.terminal.public)) == 1
    finally:
        if flusher is not None:
            flusher.stop()
        net.stop()
