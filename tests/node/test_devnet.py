"""``custos devnet up`` supervises its validators: a node that dies is reported and restarted
with backoff while the others keep committing; ``status``, ``kill`` and ``restart`` act on a
running devnet; a used directory is refused unless ``--reuse``.

Everything runs as real processes on 127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import json
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from node import devnet
from tests.node.clientkit import cli, cli_env


class Supervised:
    """``custos devnet up`` in the background, its output lines collected as they come."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "node.cli", "devnet", "up", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=cli_env(),
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def expect(self, fragment: str, timeout_s: float = 60.0) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    break
                continue
            self.seen.append(line)
            if fragment in line:
                return line
        raise AssertionError(f"no line with {fragment!r} within {timeout_s:.0f} s; output:\n" + "\n".join(self.seen))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def test_free_ports_are_below_the_ephemeral_range_and_each_test_worker_has_its_own(monkeypatch):
    """A client connection's source port never takes a node's port before the node binds it, and
    two test workers creating devnets side by side never hand out the same port."""
    ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    taken: dict[str, set[int]] = {}
    for worker in ("gw0", "gw1"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        ports = devnet.free_ports(40)
        assert len(set(ports)) == 40 and max(ports) < ephemeral_low
        taken[worker] = set(ports)
    assert not taken["gw0"] & taken["gw1"]
    # a devnet or benchmark process never takes a test worker's ports
    monkeypatch.delenv("PYTEST_XDIST_WORKER")
    outside = devnet._port_stretch()
    workers = range(devnet.PORT_RANGE[0], devnet.PORT_RANGE[0] + len(outside) * devnet.PORT_STRETCHES // 2)
    assert outside.start >= workers.stop and set(devnet.free_ports(5)) <= set(outside)
    # a port someone holds is passed over
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    stretch = devnet._port_stretch()
    with socket.socket() as held:
        nxt = devnet.free_ports(1)[0]
        held.bind(("127.0.0.1", nxt + 1 if nxt + 1 in stretch else stretch.start))
        held_port = held.getsockname()[1]
        assert held_port not in devnet.free_ports(5)


def status(directory) -> dict:
    proc = cli("devnet", "status", "--dir", str(directory), "--json", check=True)
    return {n["name"]: n for n in json.loads(proc.stdout)["nodes"]}


def wait_for(what: str, predicate, timeout_s: float = 30.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"waited {timeout_s:.0f} s for {what}")


@pytest.fixture(scope="module")
def four(tmp_path_factory):
    directory = tmp_path_factory.mktemp("devnet") / "net"
    up = Supervised("--validators", "4", "--dir", str(directory), "--heartbeat", "300ms")
    try:
        up.expect("devnet running")
        yield directory, up
    finally:
        code = up.stop()
        assert code == 0, "\n".join(up.seen)


def test_devnet_up_prints_each_nodes_addresses(four):
    directory, up = four
    for node in devnet.load(directory):
        line = next(s for s in up.seen if s.startswith(node.name + " "))
        assert node.url in line and f"p2p {node.p2p}" in line
        assert f"api https://{node.api}" in line  # its API speaks TLS, certified by the devnet's CA
    assert any(f"--ca {directory / devnet.CA_FILE}" in s for s in up.seen)


def test_clients_trust_the_devnet_ca_when_told_and_refuse_the_nodes_otherwise(four, tmp_path):
    """``--devnet DIR`` and ``--ca FILE`` trust the devnet's CA; a client told neither refuses
    the nodes' certificates (exit 3, naming the reason), and a CA file that is not one is a
    usage error."""
    directory, _ = four
    url = devnet.load(directory)[0].url
    council = [str(directory / "council" / f"member-{i}.key") for i in range(2)]
    secret = ["--passphrase-file", str(directory / "passphrase")]

    def register(post: str, *where: str):
        return cli("council", "register-post", "--post", post, "--key", council[0], "--key", council[1],
                   *secret, *where, timeout_s=60)

    proc = register("MD-TLS-1", "--devnet", str(directory))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = register("MD-TLS-2", "--node", url, "--ca", str(directory / devnet.CA_FILE))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = register("MD-TLS-3", "--node", url)
    assert proc.returncode == 3 and "CERTIFICATE_VERIFY_FAILED" in proc.stderr, proc.stderr
    not_a_ca = tmp_path / "not-a-ca.pem"
    not_a_ca.write_text("hello\n")
    proc = register("MD-TLS-4", "--node", url, "--ca", str(not_a_ca))
    assert proc.returncode == 2 and "cannot use" in proc.stderr and "Traceback" not in proc.stderr


def test_a_killed_validator_is_restarted_while_the_others_keep_committing_and_it_catches_up(four):
    directory, up = four
    nodes = devnet.load(directory)
    victim = min(nodes, key=lambda n: n.stake).name  # the rest hold more than 2/3 of the stake
    others = [n.name for n in nodes if n.name != victim]
    before = status(directory)
    proc = cli("devnet", "kill", victim, "--dir", str(directory), check=True)
    assert "SIGKILL" in proc.stdout
    up.expect(f"node {victim} killed by SIGKILL; restarting in")
    # the others go on committing while it is away
    start = max(before[n]["height"] for n in others)
    wait_for("the others to commit 3 more blocks",
             lambda: all((status(directory)[n]["height"] or 0) >= start + 3 for n in others))
    up.expect(f"node {victim} is back (restart 1)")
    target = max(status(directory)[n]["height"] for n in others)
    wait_for(f"{victim} to catch up to height {target}",
             lambda: (status(directory)[victim]["height"] or 0) >= target)
    after = status(directory)[victim]
    assert after["state"] == "running" and after["restarts"] == 1 and after["pid"] != before[victim]["pid"]


def test_a_held_node_stays_down_until_restarted(four):
    directory, up = four
    victim = "val-2"
    cli("devnet", "kill", victim, "--hold", "--signal", "TERM", "--dir", str(directory), check=True)
    wait_for(f"{victim} held", lambda: status(directory)[victim]["state"] == "held")
    time.sleep(2)  # longer than the first backoff step: no restart comes
    assert status(directory)[victim]["state"] == "held"
    proc = cli("devnet", "restart", victim, "--dir", str(directory), check=True)
    assert "running again" in proc.stdout
    assert status(directory)[victim]["state"] == "running"


def test_rejects_a_second_supervisor_on_a_running_devnet(four):
    directory, _ = four
    proc = cli("devnet", "up", "--dir", str(directory), "--reuse")
    assert proc.returncode == 2
    assert "already runs" in proc.stderr and "Traceback" not in proc.stderr


def test_rejects_a_used_directory_without_reuse(tmp_path):
    devnet.create(tmp_path / "net", 1)
    proc = cli("devnet", "up", "--dir", str(tmp_path / "net"))
    assert proc.returncode == 2
    assert "--reuse" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_rejects_kill_of_an_unknown_node_and_without_a_supervisor(tmp_path):
    devnet.create(tmp_path / "net", 1)
    proc = cli("devnet", "kill", "val-9", "--dir", str(tmp_path / "net"))
    assert proc.returncode == 2 and "no node 'val-9'" in proc.stderr
    proc = cli("devnet", "kill", "val-0", "--dir", str(tmp_path / "net"))
    assert proc.returncode == 2 and "no devnet supervisor runs" in proc.stderr


def test_no_restart_leaves_a_dead_node_down_and_the_other_running(tmp_path):
    directory = tmp_path / "net"
    up = Supervised("--validators", "2", "--dir", str(directory), "--heartbeat", "300ms", "--no-restart")
    try:
        up.expect("devnet running")
        cli("devnet", "kill", "val-1", "--dir", str(directory), check=True)
        up.expect("node val-1 killed by SIGKILL; left down (--no-restart)")
        time.sleep(1.5)
        nodes = status(directory)
        assert nodes["val-1"]["state"] == "down" and nodes["val-1"]["height"] is None
        assert nodes["val-0"]["state"] == "running" and nodes["val-0"]["height"] is not None
    finally:
        assert up.stop() == 0, "\n".join(up.seen)
    # used again with --reuse: the same network comes back
    up = Supervised("--dir", str(directory), "--reuse")
    try:
        up.expect("restarting the devnet")
        up.expect("devnet running")
    finally:
        assert up.stop() == 0, "\n".join(up.seen)
