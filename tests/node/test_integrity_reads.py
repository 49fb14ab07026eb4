"""Integrity data is public, a child's records are not: blocks and transactions through a real node.

Anonymous callers (and signed keys without a role for it) get what checks every hash, root and
certificate (headers, transaction ids, leaf hashes, commits, inclusion proofs), never the
transactions' bytes. Integrity readers (auditors, enrolment authorities, council members, node
keys) get the whole block and the block feed through signed requests; the parties of a crossing
(the terminal that submitted it, the child's guardians) get its bytes and its record.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import msgpack
import pytest

from ledger.block import BLOCK, COMMIT, HEADER, header_hash
from ledger.crypto.keys import SigningKey
from ledger.merkle import leaf_hash, root_of, verify_inclusion
from tests.node.clientkit import World, now_ms, raw_get, signed_get, signed_headers
from tests.node.netkit import Net

PROBLEM = "https://custos.dev/problems/"


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    # one observer in the config: val-0 names its key in [p2p] allow (it need not run)
    net = Net(tmp_path_factory.mktemp("integrity"), validators=1, observers=1, heartbeat_ms=300)
    net.start("val-0")
    yield net
    net.stop()


@pytest.fixture(scope="module")
def world(net, tmp_path_factory):
    w = World(net, tmp_path_factory.mktemp("keys"))
    w.alice = w.enrol("alice")
    w.other_terminal = SigningKey.generate()
    w.submit_all([net.txs.register_post(net.council[:2], "MD-SCU", "Sculeni"),
                  net.txs.register_terminal(net.council[:2], w.other_terminal.public, "MD-SCU", "booth 9")])
    w.crossing = net.txs.crossing(w.terminal, w.alice.biometric, w.alice.identity, post=w.post, direction="exit",
                                  event_time=now_ms(), destination="RO", companion=bytes(range(16)))
    w.crossing_height = w.submit_all([w.crossing])[0]["height"]
    return w


def get(world, path, key, **kw):
    return signed_get(world.net.url(), path, key, world.net.chain_id, **kw)


def get_msgpack(world, path, key=None):
    """GET ``path`` asking for msgpack (signed by ``key`` if given): (status, body)."""
    headers = {"Accept": "application/msgpack"}
    if key is not None:
        headers.update(signed_headers(world.net.url(), path, key, world.net.chain_id))
    req = urllib.request.Request(world.net.url() + path, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, msgpack.unpackb(r.read(), raw=False)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def readers(world) -> dict[str, SigningKey]:
    return {"auditor": world.auditor, "authority": world.authority, "council": world.net.council[2],
            "validator": world.net.node_key("val-0"), "observer": world.net.node_key("obs-0")}


def secrets_of(world) -> list[str]:
    """What a block with the crossing must not show an anonymous caller: the child's id, the
    companion, the transaction's bytes, the guardians' keys."""
    return [world.alice.identity.hex(), bytes(range(16)).hex(), world.crossing.raw.hex()[:200],
            *(g.public.hex() for g in world.alice.guardians)]


# --------------------------------------------------------------------------- blocks


def test_anonymous_block_checks_out_without_the_transactions(world):
    h = world.crossing_height
    status, doc, _ = raw_get(world.net.url(), f"/v1/blocks/{h}", {})
    assert status == 200 and doc["view"] == "public"
    assert "txs" not in doc
    assert world.crossing.id.hex() in doc["tx_ids"]
    assert doc["tx_count"] == len(doc["tx_ids"]) == len(doc["leaf_hashes"]) == doc["header"]["tx_count"]
    header_wire = {k: v for k, v in doc["header"].items() if k != "hash"}
    header = HEADER.check({k: bytes.fromhex(v) if isinstance(v, str) and k != "chain_id" else v
                           for k, v in header_wire.items()}, "header")
    assert header_hash(header).hex() == doc["hash"] == doc["header"]["hash"]
    assert root_of([bytes.fromhex(x) for x in doc["leaf_hashes"]]) == header.tx_root
    i = doc["tx_ids"].index(world.crossing.id.hex())
    assert doc["leaf_hashes"][i] == leaf_hash(world.crossing.raw).hex()
    assert doc["commit"]["height"] == h and doc["commit"]["block"] == doc["hash"]
    text = json.dumps(doc)
    for secret in secrets_of(world):
        assert secret not in text


def test_anonymous_msgpack_block_checks_out_without_the_transactions(world):
    h = world.crossing_height
    status, doc = get_msgpack(world, f"/v1/blocks/{h}")
    assert status == 200 and doc["view"] == "public" and "block" not in doc
    header = HEADER.decode(doc["header"])
    assert header_hash(header) == doc["hash"]
    assert root_of(doc["leaf_hashes"]) == header.tx_root
    assert world.crossing.id in doc["tx_ids"]
    assert COMMIT.decode(doc["commit"]).block == doc["hash"]


def test_integrity_readers_get_the_whole_block(world):
    h = world.crossing_height
    _, public, _ = raw_get(world.net.url(), f"/v1/blocks/{h}", {})
    for name, key in readers(world).items():
        status, doc, _ = get(world, f"/v1/blocks/{h}", key)
        assert status == 200 and doc["view"] == "full", name
        assert world.crossing.raw.hex() in doc["txs"], name
        assert [leaf_hash(bytes.fromhex(t)).hex() for t in doc["txs"]] == public["leaf_hashes"]
        assert doc["hash"] == public["hash"]
    status, doc = get_msgpack(world, f"/v1/blocks/{h}", world.auditor)
    assert status == 200 and world.crossing.raw in BLOCK.decode(doc["block"]).txs


def test_keys_without_an_integrity_role_get_the_public_block(world):
    h = world.crossing_height
    for key in (world.terminal, world.alice.guardians[0], SigningKey.generate()):
        status, doc, _ = get(world, f"/v1/blocks/{h}", key)
        assert status == 200 and doc["view"] == "public" and "txs" not in doc


def test_a_bad_signature_is_refused_not_served_as_anonymous(world):
    path = f"/v1/blocks/{world.crossing_height}"
    headers = signed_headers(world.net.url(), path, world.auditor, "another-chain", purpose="audit")
    status, doc, _ = raw_get(world.net.url(), path, headers)
    assert status == 401 and doc["type"] == PROBLEM + "bad-request-signature"


# --------------------------------------------------------------------------- the block feed


def test_block_feed_is_for_integrity_readers_only(world):
    path = "/v1/blocks?from=1&limit=5"
    status, doc, headers = raw_get(world.net.url(), path, {})
    assert status == 401 and doc["type"] == PROBLEM + "unsigned-request"
    assert "integrity readers" in doc["detail"] and "--key" in doc["detail"]
    assert headers.get("WWW-Authenticate", "").startswith("Custos-Signature")
    for key in (world.terminal, world.alice.guardians[0], SigningKey.generate()):
        status, doc, _ = get(world, path, key)
        assert status == 403 and doc["type"] == PROBLEM + "forbidden"
        assert "integrity readers" in doc["detail"]
    for name, key in readers(world).items():
        status, doc = get_msgpack(world, path, key)
        assert status == 200, (name, doc)
        assert [BLOCK.decode(b["block"]).height for b in doc["blocks"]] == [1, 2, 3, 4, 5]


def test_block_feed_signature_covers_the_query(world):
    headers = signed_headers(world.net.url(), "/v1/blocks?from=1&limit=5", world.auditor, world.net.chain_id)
    status, doc, _ = raw_get(world.net.url(), "/v1/blocks?from=1&limit=50", headers)
    assert status == 401 and doc["type"] == PROBLEM + "bad-request-signature"


# --------------------------------------------------------------------------- transactions


def test_anonymous_transaction_status_has_a_verifying_proof_and_no_bytes(world):
    status, doc, _ = raw_get(world.net.url(), f"/v1/txs/{world.crossing.id.hex()}", {})
    assert status == 200 and doc["view"] == "public"
    assert "tx" not in doc and "crossing" not in doc
    assert doc["status"] == "committed" and doc["height"] == world.crossing_height
    assert doc["result"]["status"] == "pending"
    proof = doc["proof"]
    assert proof["leaf_hash"] == leaf_hash(world.crossing.raw).hex()
    assert verify_inclusion(bytes.fromhex(proof["leaf_hash"]), proof["log_index"], proof["log_size"],
                            [bytes.fromhex(p) for p in proof["path"]], bytes.fromhex(proof["header"]["log_root"]))
    assert proof["commit"]["block"] == proof["header"]["hash"]
    text = json.dumps(doc)
    for secret in secrets_of(world):
        assert secret not in text


def test_transaction_bytes_go_to_integrity_readers_and_parties(world):
    path = f"/v1/txs/{world.crossing.id.hex()}"
    for name, key in readers(world).items():
        status, doc, _ = get(world, path, key)
        assert status == 200 and doc["tx"] == world.crossing.raw.hex(), name
    # the crossing record only to those who may read the request (not to auditors)
    assert "crossing" not in get(world, path, world.auditor)[1]
    assert get(world, path, world.authority)[1]["crossing"]["status"] == "pending"
    for party in (world.terminal, world.alice.guardians[1]):
        doc = get(world, path, party)[1]
        assert doc["tx"] == world.crossing.raw.hex() and doc["crossing"]["status"] == "pending"
    for outsider in (world.other_terminal, SigningKey.generate()):
        status, doc, _ = get(world, path, outsider)
        assert status == 200 and "tx" not in doc and "crossing" not in doc


def test_a_signer_gets_its_own_transaction(world):
    """A guardian's decision (one approval of two: the crossing stays pending) goes back to its signer."""
    g = world.alice.guardians[0]
    decision = world.net.txs.decide(g, world.crossing.id, world.alice.identity, "approve")
    world.submit_all([decision])
    path = f"/v1/txs/{decision.id.hex()}"
    assert get(world, path, g)[1]["tx"] == decision.raw.hex()
    assert "tx" not in get(world, path, world.other_terminal)[1]
    assert "tx" not in raw_get(world.net.url(), path, {})[1]


def test_anonymous_crossing_route_is_gone(world):
    status, doc, _ = raw_get(world.net.url(), f"/v1/crossings/{world.crossing.id.hex()}", {})
    assert status == 404 and doc["type"] == PROBLEM + "not-found"


def test_whoami_names_integrity_readers(world):
    for name, key in readers(world).items():
        assert get(world, "/v1/access/whoami", key)[1]["integrity_reader"] is True, name
    assert get(world, "/v1/access/whoami", world.net.council[0])[1]["role"] == "council"
    assert get(world, "/v1/access/whoami", world.net.node_key("obs-0"))[1]["role"] == "node"
    for key in (world.terminal, world.alice.guardians[0], SigningKey.generate()):
        assert get(world, "/v1/access/whoami", key)[1]["integrity_reader"] is False
