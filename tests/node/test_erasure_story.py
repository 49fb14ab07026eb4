"""Erasure by council order, through real processes: nothing of the child is left on any node.

Four validators on 127.0.0.1. A child is enrolled with two guardians (both must approve, a
denial vetoes); a crossing is approved by one guardian and denied by the other; the guardians
grant a consent naming a companion, and a crossing under it is permitted. The council then
orders the child erased with ``custos council erase``. Every node purges the child; the test
scans the raw bytes of every file under every node's directory (LevelDB tables, logs and
MANIFEST, the request index, the consensus write-ahead log, the node's log) for everything the
chain held about the child, in raw, hex and LevelDB-escaped spelling. Each value is first shown
to be there before the erasure, so the scan cannot pass by looking in the wrong place.

After the erasure, headers, roots, certificates and the log still verify (an inclusion proof of
an erased crossing is checked here); a fresh node syncs the whole chain, re-executing everything
but the stubs and following the erased child's state from the recorded slot changes, and ends
at the same state root without ever holding the child's records; and an audit of an auditor's
copy of a node's directory passes, names the erasure (height, child tag, order hash, basis) and
says which checks the erasure made impossible.
"""

from __future__ import annotations

import json
import os
import shutil

import msgpack

from ledger.merkle import verify_inclusion
from ledger.privacy.tags import child_tag, companion_tag
from ledger.tx.bodies import ENROL
from ledger.tx.envelope import decode_tx
from tests.node.clientkit import World, cli, full_block, now_ms, raw_get, signed_get
from tests.node.netkit import Net
from tests.scankit import files_holding

ORDER_REF = "Chisinau court 2026/0417 erasure"
VALIDATORS = ("val-0", "val-1", "val-2", "val-3")


def field(name: str, value: int) -> bytes:
    """An integer field as msgpack encodes it in a record or a transaction body."""
    return msgpack.packb(name) + msgpack.packb(value)


def json_field(name: str, value: int) -> bytes:
    """The same field as JSON (logs, event frames) would write it."""
    return f'"{name}":{value}'.encode()


def test_a_council_erasure_leaves_nothing_of_the_child_on_any_node(tmp_path):
    net = Net(tmp_path / "net", validators=4, heartbeat_ms=400, observers=1)
    net.start(*VALIDATORS)
    try:
        world = World(net, tmp_path / "keys")
        child = world.enrol("ana", guardians=2, approvals=2, veto=True)
        g0, g1 = child.guardians
        t = net.txs
        companion = companion_tag(os.urandom(32), "MDA AB123456")
        now = now_ms()
        first = t.crossing(world.terminal, child.biometric, child.identity, post=world.post, direction="exit",
                           event_time=now, destination="RO", companion=companion)
        world.submit_all([first])
        approved, denied = world.submit_all([t.decide(g0, first.id, child.identity, "approve"),
                                             t.decide(g1, first.id, child.identity, "deny", "destination-not-agreed")])
        assert (approved["result"]["status"], denied["result"]["status"]) == ("pending", "denied")
        consent = t.grant_consent([g0, g1], child.identity, not_before=now - 3_600_000, not_after=now + 86_400_000,
                                  direction="exit", destination="RO", companion=companion, uses=2)
        world.submit_all([consent])
        second = t.crossing(world.terminal, child.biometric, child.identity, post=world.post, direction="exit",
                            event_time=now_ms(), destination="RO", companion=companion)
        (committed,) = world.submit_all([second])
        assert committed["result"]["status"] == "permitted"

        enrol_height, enrol = _enrolment(net, child.identity)
        txs = [first, consent, second]
        needles = {"identity id": child.identity, "biometric commitment": child.biometric.public,
                   "guardian 0": g0.public, "guardian 1": g1.public, "companion tag": companion,
                   "order reference": ORDER_REF.encode()}
        needles["majority day"] = field("majority_day", enrol.body.majority_day)
        for n, tx in enumerate((first, second)):
            needles[f"event time {n}"] = field("event_time", tx.body.event_time)
        for i, tx in enumerate([enrol, *txs]):
            needles[f"envelope {i} ({tx.kind})"] = tx.raw
            for n, sig in enumerate(tx.sigs):
                needles[f"signature {n} of {tx.kind} {i}"] = sig.sig
        height = net.height()
        net.wait_height(height, *VALIDATORS)
        before = set()
        for name in VALIDATORS:
            before.update(found.split(" in ")[0] for found in files_holding(net.dir / name, needles))
        # every value the scan looks for is on the nodes before the erasure, but the reference
        # of an order not yet given
        assert before == set(needles) - {"order reference"}, set(needles) - before
        needles["majority day (JSON)"] = json_field("majority_day", enrol.body.majority_day)
        for n, tx in enumerate((first, second)):
            needles[f"event time {n} (JSON)"] = json_field("event_time", tx.body.event_time)

        # -- the council orders the erasure
        out = cli("council", "erase", "--identity", child.identity.hex(), "--order", ORDER_REF, "--devnet",
                  str(net.dir), "--node", net.url("val-1"), check=True).stdout
        assert "gov.erase" in out and "committed" in out
        erase_height = int(out.split("at height ")[1].split()[0])
        for name in VALIDATORS:
            net.wait_until(f"{name} to purge the erased child", lambda name=name: _purged(net, name), timeout_s=60)
        net.wait_height(erase_height + 2, *VALIDATORS)  # later heights replace the consensus log
        running = {name: files_holding(net.dir / name, needles) for name in VALIDATORS}
        assert running == {name: [] for name in VALIDATORS}
        # the proof routes gave up their snapshots for the purge (they would have pinned the
        # erased bytes through compaction, and died with the store's old handle) and serve from
        # fresh ones: at every height still held a record is proven, at the others the node says
        # it holds no snapshot, never 500; and one compaction sufficed
        for name in VALIDATORS:
            tip = net.height(name)
            answers = [raw_get(net.url(name), f"/v1/state/proof?key={b'council'.hex()}&height={h}", {})[0]
                       for h in range(erase_height, tip + 1)]
            assert set(answers) <= {200, 404} and answers[-1] == 200, answers
            assert "still name an erased child" not in net.log(name)

        # headers, roots and the log still verify: an erased crossing's inclusion proof
        status, doc, _ = signed_get(net.url("val-2"), f"/v1/txs/{first.id.hex()}", net.council[0], net.chain_id)
        assert status == 200 and doc["erased"] is True and "tx" not in doc
        proof = doc["proof"]
        assert verify_inclusion(bytes.fromhex(proof["leaf_hash"]), proof["log_index"], proof["log_size"],
                                [bytes.fromhex(p) for p in proof["path"]], bytes.fromhex(proof["header"]["log_root"]))
        block = net.get("val-3", f"/v1/blocks/{enrol_height}")
        assert block["erased"] and block["view"] == "public"

        # a fresh node syncs through the stubs to the same state, without the child's records
        net.start("obs-0")
        target = net.height("val-0")
        net.wait_height(target, "obs-0", timeout_s=90)
        mine = net.get("obs-0", f"/v1/blocks/{target}")
        assert mine["hash"] == net.get("val-0", f"/v1/blocks/{target}")["hash"]
        assert (net.get("obs-0", "/v1/status").get("sync") or {}).get("blocked_at") is None
    finally:
        net.stop()

    # stopped: every file again, then an auditor's copy of a node's directory
    stopped = {name: files_holding(net.dir / name, needles) for name in (*VALIDATORS, "obs-0")}
    assert stopped == {name: [] for name in (*VALIDATORS, "obs-0")}
    copy = tmp_path / "auditor-copy"
    shutil.copytree(net.dir / "val-0", copy)
    audit = cli("audit", "verify", "--data-dir", str(copy), "--json", timeout_s=120)
    report = json.loads(audit.stdout)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert report["checked_height"] >= erase_height
    assert [(e["height"], e["child"], e["basis"]) for e in report["erasures"]] == [
        (erase_height, child_tag(child.identity).hex(), "court-order")]
    assert {"erased-transactions", "erased-children-state"} <= {n["check"] for n in report["not_checked"]}
    assert files_holding(copy, needles) == []


def _purged(net: Net, name: str) -> bool:
    erasure = net.get(name, "/v1/status")["erasure"]
    return erasure["purged"] >= 1 and erasure["pending"] == 0


def _enrolment(net: Net, identity: bytes):
    """(height, transaction) of the child's enrolment, read from the blocks as an integrity reader."""
    for height in range(1, net.height() + 1):
        for raw in full_block(net, height)["txs"]:
            tx = decode_tx(bytes.fromhex(raw))
            if tx.kind == ENROL and tx.body.identity == identity:
                return height, tx
    raise AssertionError("the child's enrolment is not on the chain")
