"""One validator process on 127.0.0.1: the API a terminal, a guardian and an auditor use."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request

import pytest

from ledger.crypto.keys import SigningKey
from ledger.merkle import verify_consistency, verify_inclusion
from node.access.purpose import Purpose
from node.client.http import NodeClient, ProblemError
from node.client.signed import SignedClient
from tests.node.clientkit import full_block
from tests.node.netkit import Net, run

NOW = lambda: time.time_ns() // 1_000_000  # noqa: E731


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    net = Net(tmp_path_factory.mktemp("single"), validators=1, heartbeat_ms=500)
    net.start()
    yield net
    net.stop()


@pytest.fixture(scope="module")
def story(net):
    """A registered post and terminal, an enrolled child with two guardians (2-of-2, veto)."""
    authority, terminal, child = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
    guardians = [SigningKey.generate(), SigningKey.generate()]
    identity = os.urandom(16)
    t = net.txs
    txs = [
        t.register_authority(net.council[:2], authority.public, "enrolment office"),
        t.register_post(net.council[1:], "MD-LEU", "Leuseni"),
        t.register_terminal(net.council[:2], terminal.public, "MD-LEU", "booth 1"),
        t.enrol(authority, child, identity, majority_day=(NOW() + 10**11) // 86_400_000,
                guardians=[g.public for g in guardians], approvals=2, deadline_ms=60_000, veto=True),
    ]

    async def go():
        async with NodeClient(net.url()) as c:
            for tx in txs:
                r = await c.submit(tx.raw, wait=True)
                assert r["status"] == "committed", r

    run(go())
    return dict(authority=authority, terminal=terminal, child=child, guardians=guardians, identity=identity)


def crossing(net, story, **kw):
    return net.txs.crossing(story["terminal"], story["child"], story["identity"], post="MD-LEU", direction="exit",
                            event_time=NOW(), destination="RO", **kw)


def test_status_names_the_chain_and_the_tip(net):
    status = net.get("val-0", "/v1/status")
    assert status["chain_id"] == net.chain_id
    assert status["validator"] is True
    assert status["node_id"] == net.nodes["val-0"].key
    net.wait_height(1)
    status = net.get("val-0", "/v1/status")
    block = net.get("val-0", f"/v1/blocks/{status['height']}")
    assert block["hash"] == status["last_block_hash"]
    assert block["header"]["chain_id"] == net.chain_id


def test_submit_and_wait_returns_the_commit_and_the_decision(net, story):
    tx = crossing(net, story)

    async def go():
        async with NodeClient(net.url()) as c:
            return await c.submit(tx.raw, wait=True)

    r = run(go())
    assert r["status"] == "committed"
    assert r["crossing_status"] == "pending"  # a minor without consent waits for the guardians
    assert tx.id.hex() in net.get("val-0", f"/v1/blocks/{r['height']}")["tx_ids"]
    assert tx.raw.hex() in full_block(net, r["height"])["txs"]


def test_duplicate_submission_returns_the_original_result_and_adds_nothing(net, story):
    tx = crossing(net, story)

    async def go():
        async with NodeClient(net.url()) as c:
            first = await c.submit(tx.raw, wait=True)
            again = await c.submit(tx.raw, wait=True)
            await asyncio_sleep(0.8)  # a heartbeat block or two
            return first, again, (await c.status())["height"]

    first, again, tip = run(go())
    assert again["height"] == first["height"] and again["index"] == first["index"]
    # nothing appended to the log: the transaction is in one block, once (other transactions,
    # such as the node's access-log checkpoints, may have come meanwhile)
    copies = sum(full_block(net, h)["txs"].count(tx.raw.hex()) for h in range(first["height"], tip + 1))
    assert copies == 1


async def asyncio_sleep(s):
    import asyncio

    await asyncio.sleep(s)


def test_transaction_status_carries_a_proof_that_verifies(net, story):
    tx = crossing(net, story)

    async def go():
        async with NodeClient(net.url()) as c:
            await c.submit(tx.raw, wait=True)
            return await c.tx(tx.id)

    doc = run(go())
    proof = doc["proof"]
    header = proof["header"]
    assert header["log_size"] == proof["log_size"]
    assert verify_inclusion(bytes.fromhex(proof["leaf_hash"]), proof["log_index"], proof["log_size"],
                            [bytes.fromhex(p) for p in proof["path"]], bytes.fromhex(header["log_root"]))
    assert "tx" not in doc and "crossing" not in doc  # anonymous: the proof, not the child's record

    async def signed():
        # the terminal that submitted it
        async with SignedClient(net.url(), story["terminal"], purpose=Purpose("border-check")) as c:
            return await c.get(f"/v1/txs/{tx.id.hex()}")

    doc = run(signed())
    assert doc["crossing"]["status"] == "pending" and doc["tx"] == tx.raw.hex()


def test_consistency_proof_links_two_log_sizes(net, story):
    crossing_tx = crossing(net, story)

    async def go():
        async with NodeClient(net.url()) as c:
            first = (await c.status())["log_size"]
            await c.submit(crossing_tx.raw, wait=True)
            _, doc = await c.request("GET", "/v1/log/consistency", params={"first": first})
            return doc

    doc = run(go())
    assert doc["second"] > doc["first"] >= 1
    assert verify_consistency(doc["first"], doc["second"], bytes.fromhex(doc["first_root"]),
                              bytes.fromhex(doc["second_root"]), [bytes.fromhex(p) for p in doc["proof"]])


def _post(net, path, body: bytes, ctype="application/msgpack"):
    req = urllib.request.Request(net.url() + path, data=body, headers={"Content-Type": ctype}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers.get_content_type(), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get_content_type(), json.loads(e.read())


def test_rejects_malformed_bytes_with_a_problem_document(net):
    status, ctype, doc = _post(net, "/v1/txs", b"\x93\x01\x02")
    assert status == 400
    assert ctype == "application/problem+json"
    assert doc["type"].endswith("/malformed-transaction")


def test_rejects_a_transaction_signed_for_another_chain(net, story):
    from node.client.txs import TxFactory

    other = TxFactory("some-other-chain").crossing(story["terminal"], story["child"], story["identity"],
                                                   post="MD-LEU", direction="exit", event_time=NOW(), destination="RO")
    status, _, doc = _post(net, "/v1/txs", other.raw)
    assert status == 422
    assert doc["rule"] == "bad-signature"


def test_rejects_an_unregistered_terminal(net, story):
    rogue = SigningKey.generate()
    tx = net.txs.crossing(rogue, story["child"], story["identity"], post="MD-LEU", direction="exit",
                          event_time=NOW(), destination="RO")
    status, _, doc = _post(net, "/v1/txs", tx.raw)
    assert status == 422 and doc["rule"] == "unknown-key"


def test_rejects_an_oversized_body(net):
    status, _, doc = _post(net, "/v1/txs", b"\x00" * (200 * 1024))
    assert status == 413
    assert doc["type"].endswith("/too-large")


@pytest.mark.parametrize("query", ["wait=later", "wait=commit&timeout_ms=soon", "wait=commit&timeout_ms=0"])
def test_rejects_a_bad_wait_before_taking_the_transaction(net, story, query):
    # a 400 must mean "nothing happened": the transaction is neither in the mempool nor committed
    tx = crossing(net, story)
    status, _, doc = _post(net, f"/v1/txs?{query}", tx.raw)
    assert status == 400 and doc["status"] == 400
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{net.url()}/v1/txs/{tx.id.hex()}", timeout=5)
    assert info.value.code == 404


def test_unknown_transaction_and_block_are_404_problems(net):
    for path in ("/v1/txs/" + "ab" * 32, "/v1/blocks/999999"):
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(net.url() + path, timeout=5)
        assert info.value.code == 404
        assert json.loads(info.value.read())["status"] == 404


def test_json_submission_is_accepted_too(net, story):
    tx = crossing(net, story)
    status, _, doc = _post(net, "/v1/txs", json.dumps({"tx": tx.raw.hex()}).encode(), "application/json")
    assert status in (200, 202)
    assert doc["id"] == tx.id.hex()


def test_client_fails_over_to_a_live_node(net):
    async def go():
        async with NodeClient(["http://127.0.0.1:9", net.url()], timeout_s=3) as c:
            return await c.status()

    assert run(go())["chain_id"] == net.chain_id


def test_batch_submission_reports_each_transaction(net, story):
    good = crossing(net, story)

    async def go():
        async with NodeClient(net.url()) as c:
            return await c.submit_batch([good.raw, b"\x01garbage"])

    results = run(go())
    assert results[0]["status"] in ("accepted", "committed")
    assert results[1]["status"] == "rejected" and results[1]["rule"] == "malformed-transaction"


def test_problem_error_is_typed_in_the_client(net, story):
    rogue = SigningKey.generate()
    tx = net.txs.crossing(rogue, story["child"], story["identity"], post="MD-LEU", direction="exit",
                          event_time=NOW(), destination="RO")

    async def go():
        async with NodeClient(net.url()) as c:
            await c.submit(tx.raw)

    with pytest.raises(ProblemError) as info:
        run(go())
    assert info.value.rule == "unknown-key" and info.value.status == 422
