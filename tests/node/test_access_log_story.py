"""The access log through real processes: every read recorded with its purpose, committed to the
chain, queried with proofs by an oversight body and by guardians; nothing else for oversight;
an entry edited on disk is found by the node and by the client.
"""

from __future__ import annotations

import json
import signal
import time
from dataclasses import replace

import pytest

from ledger.crypto.keys import DOMAIN_SUBSCRIBE
from ledger.storage.kv import LevelKV
from node.access.entry import decode_entry
from node.access.log import AccessLog
from node.access.purpose import Purpose, reference_hash
from node.client.signed import SignedClient
from tests.node.access.test_access_log import edit_on_disk
from tests.node.clientkit import World, cli, key_file, now_ms, raw_get, signed_get
from tests.node.netkit import Net, run

PROBLEM = "https://custos.dev/problems/"


def oversight_log(net: Net, key_path, identity: bytes, *extra: str):
    proc = cli("oversight", "access-log", "--identity", identity.hex(), "--key", str(key_path),
               "--devnet", str(net.dir), "--json", *extra)
    doc = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else None
    return proc.returncode, doc, proc.stderr


def wait_anchored(net: Net, name: str = "val-0", timeout_s: float = 20.0) -> int:
    """Wait until the chain holds a checkpoint of the node's whole log as it is now; its size."""
    status = net.get(name, "/v1/status")
    node, size = status["node_id"], status["access_log"]["size"]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        code, doc, _ = raw_get(net.url(name), f"/v1/access-log/checkpoints/{node}", {})
        if code == 200 and doc["size"] >= size:
            return doc["size"]
        time.sleep(0.2)
    raise TimeoutError(f"no checkpoint of {size} entries of {name}'s access log within {timeout_s:.0f} s")


@pytest.fixture(scope="module")
def world(net, tmp_path_factory):
    w = World(net, tmp_path_factory.mktemp("keys"))
    w.oversight_file, w.oversight = key_file(w.dir, "oversight")
    cli("council", "register-oversight", "--public", w.oversight.public.hex(), "--label", "data protection authority",
        "--devnet", str(net.dir), check=True)
    w.child = w.enrol("ina", guardians=2, approvals=2)
    w.other = w.enrol("ion", guardians=1, approvals=1)
    w.crossing = net.txs.crossing(w.terminal, w.child.biometric, w.child.identity, post=w.post, direction="exit",
                                  event_time=now_ms(), destination="RO")
    w.submit_all([w.crossing])
    return w


def test_every_permitted_read_appears_in_the_access_log_with_its_purpose(world, net):
    child, guardian, authority, terminal = world.child, world.child.guardians[0], world.authority, world.terminal
    identity = child.identity.hex()
    ref_hash = reference_hash(authority, "CASE-2026/17")[0]
    reads = [
        (guardian, f"/v1/identities/{identity}", "guardian-review", "identity"),
        (authority, f"/v1/identities/{identity}", Purpose("case-work", ref_hash).header(), "identity"),
        (authority, f"/v1/identities/{identity}/requests", "case-work", "requests"),
        (terminal, f"/v1/requests/{world.crossing.id.hex()}", "border-check", "request"),
        (guardian, f"/v1/guardians/{guardian.public.hex()}/pending", "guardian-review", "pending"),
        (authority, f"/v1/txs/{world.crossing.id.hex()}", "audit", "tx"),
    ]
    for key, path, purpose, _ in reads:
        assert signed_get(net.url(), path, key, net.chain_id, purpose=purpose)[0] == 200, path
    # a read of another child is logged under that child, not this one
    assert signed_get(net.url(), f"/v1/identities/{world.other.identity.hex()}", world.other.guardians[0],
                      net.chain_id)[0] == 200

    async def subscribe():
        async with SignedClient(net.url(), guardian, purpose=Purpose("guardian-review")) as c:
            async for ev in c.events(heartbeat_ms=500, max_reconnects=0):
                if ev.type == "sync":
                    return

    run(subscribe())
    wait_anchored(net)
    code, doc, err = oversight_log(net, world.oversight_file, child.identity)
    assert code == 0 and doc["ok"], (err, doc)
    [node] = doc["nodes"]
    assert node["failures"] == [] and any("proven in block" in n for n in node["notes"])
    seen = [(e["reader"], e["role"], e["kind"], e["purpose"], e["ref"], e["record"], e["anchored"])
            for e in node["entries"]]
    expected = [(key.public.hex(), role, kind, purpose.split(";")[0], ref_hash.hex() if ";" in purpose else None)
                for (key, _, purpose, kind), role in zip(reads, ["guardian", "enrolment-authority",
                                                                 "enrolment-authority", "terminal", "guardian",
                                                                 "enrolment-authority"], strict=True)]
    assert [s[:5] for s in seen[:len(reads)]] == expected
    assert seen[3][5] == seen[5][5] == world.crossing.id.hex()  # the request and the transaction named
    assert seen[len(reads)][:4] == (guardian.public.hex(), "guardian", "events", "guardian-review")
    assert all(s[6] for s in seen[:len(reads) + 1])  # all committed to the chain
    assert not any(e["reader"] == world.other.guardians[0].public.hex() for e in node["entries"])


def test_proven_reads_are_recorded_like_the_others(world, net):
    """The proof routes a light client reads reveal the same records: each read lands in the log."""
    child, guardian, terminal = world.child, world.child.guardians[0], world.terminal
    before = net.get("val-0", "/v1/status")["access_log"]["size"]
    reads = [(guardian, f"/v1/identities/{child.identity.hex()}/proof", "guardian-review"),
             (terminal, f"/v1/requests/{world.crossing.id.hex()}/proof", "border-check")]
    for key, path, purpose in reads:
        assert signed_get(net.url(), path, key, net.chain_id, purpose=purpose)[0] == 200, path
    assert net.get("val-0", "/v1/status")["access_log"]["size"] == before + 2
    wait_anchored(net)
    code, doc, err = oversight_log(net, world.oversight_file, child.identity)
    assert code == 0 and doc["ok"], (err, doc)
    proofs = [(e["reader"], e["purpose"], e["record"]) for e in doc["nodes"][0]["entries"] if e["kind"] == "proof"]
    assert proofs == [(guardian.public.hex(), "guardian-review", None),
                      (terminal.public.hex(), "border-check", world.crossing.id.hex())]


def test_the_oversight_role_reads_the_log_and_nothing_else(world, net):
    dpa, identity = world.oversight, world.child.identity.hex()
    for path in (f"/v1/identities/{identity}", f"/v1/identities/{identity}/requests",
                 f"/v1/requests/{world.crossing.id.hex()}", "/v1/alerts",
                 f"/v1/guardians/{world.child.guardians[0].public.hex()}/pending",
                 f"/v1/terminals/{world.terminal.public.hex()}/requests", "/v1/blocks?from=1&limit=5"):
        status, doc, _ = signed_get(net.url(), path, dpa, net.chain_id, purpose="oversight")
        assert status == 403 and doc["type"] == PROBLEM + "forbidden", (path, doc)
    status, doc, _ = signed_get(net.url(), "/v1/events", dpa, net.chain_id, purpose="oversight",
                                domain=DOMAIN_SUBSCRIBE)
    assert status == 403
    status, doc, _ = signed_get(net.url(), f"/v1/txs/{world.crossing.id.hex()}", dpa, net.chain_id,
                                purpose="oversight")
    assert status == 200 and "tx" not in doc and "crossing" not in doc  # the public view
    status, doc, _ = signed_get(net.url(), "/v1/blocks/1", dpa, net.chain_id, purpose="oversight")
    assert status == 200 and doc["view"] == "public"
    status, doc, _ = signed_get(net.url(), f"/v1/access-log?identity={identity}", dpa, net.chain_id,
                                purpose="oversight")
    assert status == 200 and doc["entries"]


def test_guardians_query_their_childs_log_and_no_one_elses(world, net):
    code, doc, err = oversight_log(net, world.child.guardian_files[1], world.child.identity)
    assert code == 0 and doc["ok"] and doc["nodes"][0]["entries"], err
    code, doc, err = oversight_log(net, world.other.guardian_files[0], world.child.identity)
    assert code == 1 and "forbidden" in doc["nodes"][0]["failures"][0], err
    status, doc, _ = signed_get(net.url(), f"/v1/access-log?identity={world.child.identity.hex()}",
                                world.other.guardians[0], net.chain_id, purpose="guardian-review")
    assert status == 403
    status, doc, _ = signed_get(net.url(), "/v1/access-log/entries?from=0", world.child.guardians[0], net.chain_id,
                                purpose="guardian-review")
    assert status == 403  # the whole log is for oversight bodies


def test_complete_audit_rebuilds_the_whole_log(world, net):
    # a read of the child's record, so that the log holds one whichever tests ran before
    path = f"/v1/identities/{world.child.identity.hex()}"
    assert signed_get(net.url(), path, world.authority, net.chain_id, purpose="case-work")[0] == 200
    wait_anchored(net)
    code, doc, err = oversight_log(net, world.oversight_file, world.child.identity, "--complete")
    assert code == 0 and doc["ok"], err
    assert any("nothing about the child left out" in n for n in doc["nodes"][0]["notes"])


def test_an_access_log_entry_edited_on_disk_is_detected(tmp_path):
    net = Net(tmp_path / "net", validators=1, heartbeat_ms=300)
    net.start()
    try:
        world = World(net, tmp_path / "keys")
        dpa_file, _ = key_file(world.dir, "oversight")
        cli("council", "register-oversight", "--public", str(dpa_file), "--devnet", str(net.dir), check=True)
        child = world.enrol("ana", guardians=1, approvals=1)
        path = f"/v1/identities/{child.identity.hex()}"
        for _ in range(3):
            assert signed_get(net.url(), path, world.authority, net.chain_id, purpose="case-work")[0] == 200
        wait_anchored(net)
        net.kill("val-0", signal.SIGTERM)
        # the operator turns the first read's purpose into another, and rebuilds the stored tree
        # so that the store agrees with itself: only the chain's checkpoint disagrees
        store = AccessLog(LevelKV(net.dir / "val-0" / "access-log"))
        first = decode_entry(store.entry(0))
        assert first.purpose == "case-work"
        edit_on_disk(store, 0, replace(first, purpose="enrolment"), rebuild_tree=True)
        store.close()
        net.start("val-0", wait=False)  # it starts (the chain goes on), but is not healthy
        net.wait_until("val-0 to answer", lambda: raw_get(net.url(), "/v1/status", {})[0] == 200)
        status, doc, _ = raw_get(net.url(), "/healthz", {})
        assert status == 503 and "access log is damaged" in doc["detail"]
        status, doc, _ = raw_get(f"http://{net.nodes['val-0'].metrics}", "/healthz", {})
        assert status == 503
        status, doc, _ = signed_get(net.url(), path, world.authority, net.chain_id, purpose="case-work")
        assert status == 503 and doc["type"] == PROBLEM + "access-log-unavailable"
        code, report, err = oversight_log(net, dpa_file, child.identity)
        assert code == 1 and not report["ok"]
        failures = report["nodes"][0]["failures"]
        assert "entry 0 is not in the log it claims (the checkpoint on the chain): it was altered" in failures, err
    finally:
        net.stop()


def test_a_key_of_another_role_is_refused_in_one_line(world, net):
    for key_path in (world.auditor_file, world.authority_file):
        code, doc, err = oversight_log(net, key_path, world.child.identity)
        assert code == 2 and doc is None and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1 and "is registered as" in err and "NOT VERIFIED" not in err
