"""A lying node, through real processes: a proxy in front of a real node reports an expired
request as permitted, or hides a pending request from a guardian. The terminal and guardian
commands catch it, say which node lied, and take the proven answer of another node; with only
the liar to ask they exit 1."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from node.devnet import free_ports
from tests.node.clientkit import cli, cli_env, json_lines, now_ms


class Liar:
    def __init__(self, upstream: str, mode: str) -> None:
        port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.node.lying_proxy", "--listen", f"127.0.0.1:{port}", "--upstream", upstream,
             "--lie", mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(),
            stdin=subprocess.DEVNULL)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("listening"), line + self.proc.stderr.read() if self.proc.stderr else ""

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def liar(request, net):
    proxy = Liar(net.url(), request.param)
    yield proxy
    proxy.stop()


def crossing(world, child):
    tx = world.net.txs.crossing(world.terminal, child.biometric, child.identity, post=world.post, direction="exit",
                                event_time=now_ms(), destination="RO")
    world.submit_all([tx])
    return tx.id.hex()


def terminal_status(directory, rid: str, *urls: str):
    args = []
    for url in urls:
        args += ["--node", url]
    return cli("terminal", "status", rid, "--dir", str(directory), "--json", *args)


@pytest.mark.parametrize("liar", ["permit"], indirect=True)
def test_a_terminal_is_not_shown_an_expired_request_as_permitted(world, net, liar, tmp_path):
    terminal = world.init_terminal(tmp_path / "terminal")
    child = world.enrol("ada", guardians=2, approvals=2, deadline_ms=1_000)
    rid = crossing(world, child)
    deadline = time.monotonic() + 30
    while True:  # nobody decides: the request expires with the next blocks
        proc = terminal_status(terminal, rid, net.url())
        assert proc.returncode == 0, proc.stderr
        if json_lines(proc.stdout)[0]["status"] == "expired":
            break
        assert time.monotonic() < deadline, proc.stdout
        time.sleep(0.5)
    caught = terminal_status(terminal, rid, liar.url, net.url())
    assert caught.returncode == 0, caught.stderr
    doc = json_lines(caught.stdout)[0]
    assert doc["status"] == "expired" and doc["proven"]["node"] == net.url()
    assert liar.url in caught.stderr and "without a valid proof" in caught.stderr
    alone = terminal_status(terminal, rid, liar.url)
    assert alone.returncode == 1, alone.stdout + alone.stderr
    assert "no node could prove" in alone.stderr and "permitted" not in alone.stdout.lower()
    # a guardian asking the liar about the same request is not fooled either
    shown = cli("guardian", "show", rid, "--json", "--key", str(child.guardian_files[0]), "--node", liar.url,
                "--node", net.url())
    assert shown.returncode == 0 and json_lines(shown.stdout)[0]["status"] == "expired"
    assert liar.url in shown.stderr


@pytest.mark.parametrize("liar", ["hide"], indirect=True)
def test_a_guardian_is_not_kept_from_a_pending_request(world, net, liar):
    child = world.enrol("bea", guardians=1, approvals=1, deadline_ms=600_000)
    rid = crossing(world, child)
    proc = cli("guardian", "pending", "--json", "--key", str(child.guardian_files[0]), "--node", liar.url,
               "--node", net.url())
    assert proc.returncode == 0, proc.stderr
    pending = json_lines(proc.stdout)[0]["pending"]
    assert [d["id"] for d in pending] == [rid]
    assert pending[0]["proven"]["node"] == net.url()
    assert f"{liar.url} hid pending request {rid}" in proc.stderr


def test_proofs_keep_the_reads_access_rules_and_recent_heights(world, net):
    from ledger.block import HEADER
    from ledger.crypto.keys import SigningKey
    from ledger.state.proof import RecordProof
    from ledger.state.records import K_COUNCIL, k_identity, k_ward
    from tests.node.clientkit import signed_get

    child = world.enrol("cleo", guardians=1, approvals=1)
    tip = net.height()

    def state_proof(key: bytes, signer=None, height: int | None = None):
        path = f"/v1/state/proof?key={key.hex()}" + ("" if height is None else f"&height={height}")
        return signed_get(net.url(), path, signer, net.chain_id)

    status, doc, _ = state_proof(K_COUNCIL)  # a record of the chain: anyone
    assert status == 200
    RecordProof.decode(bytes.fromhex(doc["proof"])).check(HEADER.decode(bytes.fromhex(doc["header"])).state_root)
    identity_key = k_identity(child.identity)
    assert state_proof(identity_key)[0] == 401
    assert state_proof(identity_key, SigningKey.generate())[0] == 403
    assert state_proof(identity_key, world.terminal)[0] == 403
    status, doc, _ = state_proof(identity_key, child.guardians[0])
    assert status == 200 and RecordProof.decode(bytes.fromhex(doc["proof"])).value is not None
    assert state_proof(k_ward(child.guardians[0].public, child.identity), world.authority)[0] == 400
    net.wait_height(max(tip + 2, 20))
    status, doc, _ = state_proof(K_COUNCIL, height=tip + 1)  # an older height still held
    assert status == 200 and doc["height"] == tip + 1
    assert state_proof(K_COUNCIL, height=1)[0] == 404  # long pruned
