"""Reads of a child's records through a real node: signed requests, roles, and every refusal.

A child's record, requests and alerts go only to keys with a role that needs them: the child's
guardians, enrolment authorities, the terminal that submitted a request (and its post's alerts).
Anonymous callers, unrelated keys, guardians of other children and auditors are refused, and so
are stale, replayed, re-targeted and cross-domain signatures.
"""

from __future__ import annotations

import pytest

from ledger.crypto.keys import DOMAIN_SUBSCRIBE, SigningKey
from node.access.purpose import Purpose
from tests.node.clientkit import World, now_ms, raw_get, signed_get, signed_headers

PROBLEM = "https://custos.dev/problems/"


@pytest.fixture(scope="module")
def world(net, tmp_path_factory):
    w = World(net, tmp_path_factory.mktemp("keys"))
    w.alice = w.enrol("alice", deadline_ms=1_500)  # short deadline: her crossing expires into an alert
    w.bob = w.enrol("bob")
    w.other_terminal = SigningKey.generate()
    w.submit_all([net.txs.register_post(net.council[:2], "MD-SCU", "Sculeni"),
                  net.txs.register_terminal(net.council[:2], w.other_terminal.public, "MD-SCU", "booth 9")])
    crossing = net.txs.crossing(w.terminal, w.alice.biometric, w.alice.identity, post=w.post, direction="exit",
                                event_time=now_ms(), destination="RO")
    w.alice_request = crossing.id
    w.submit_all([crossing])
    net.wait_until("alice's crossing to expire into an alert",
                   lambda: get(w, f"/v1/requests/{crossing.id.hex()}", w.authority)[1]["status"] == "expired")
    return w


def get(world, path, key, **kw):
    return signed_get(world.net.url(), path, key, world.net.chain_id, **kw)


def child_paths(world) -> list[str]:
    identity = world.alice.identity.hex()
    return [f"/v1/identities/{identity}", f"/v1/identities/{identity}/requests",
            f"/v1/requests/{world.alice_request.hex()}"]


# --------------------------------------------------------------------------- who may read


def test_guardian_reads_own_wards_records(world):
    g = world.alice.guardians[0]
    status, doc, _ = get(world, f"/v1/identities/{world.alice.identity.hex()}", g)
    assert status == 200
    assert doc["guardians"] == sorted(k.public.hex() for k in world.alice.guardians)
    status, doc, _ = get(world, f"/v1/identities/{world.alice.identity.hex()}/requests", g)
    assert status == 200 and [r["id"] for r in doc["requests"]] == [world.alice_request.hex()]
    status, doc, _ = get(world, f"/v1/requests/{world.alice_request.hex()}", g)
    assert status == 200 and doc["post_label"] == "Leuseni" and doc["status"] == "expired"


def test_enrolment_authority_reads_every_child_and_all_alerts(world):
    for path in child_paths(world):
        assert get(world, path, world.authority)[0] == 200
    status, doc, _ = get(world, "/v1/alerts", world.authority)
    assert status == 200
    assert [a["request"] for a in doc["alerts"]] == [world.alice_request.hex()]
    assert doc["alerts"][0]["kind"] == "expired"


def test_terminal_reads_its_own_request_and_its_posts_alerts_only(world):
    assert get(world, f"/v1/requests/{world.alice_request.hex()}", world.terminal)[0] == 200
    status, doc, _ = get(world, "/v1/alerts", world.terminal)
    assert status == 200 and len(doc["alerts"]) == 1
    status, doc, _ = get(world, "/v1/alerts?post=MD-SCU", world.terminal)
    assert status == 403 and doc["type"] == PROBLEM + "forbidden"
    # the terminal of another post sees neither the request nor the alert
    assert get(world, f"/v1/requests/{world.alice_request.hex()}", world.other_terminal)[0] == 403
    status, doc, _ = get(world, "/v1/alerts", world.other_terminal)
    assert status == 200 and doc["alerts"] == []
    # and a terminal reads no child's record
    assert get(world, f"/v1/identities/{world.alice.identity.hex()}", world.terminal)[0] == 403


def test_alerts_filter_by_post_and_time(world):
    status, doc, _ = get(world, f"/v1/alerts?post={world.post}&since={now_ms() - 600_000}", world.authority)
    assert status == 200 and len(doc["alerts"]) == 1
    alert_time = doc["alerts"][0]["time"]
    assert get(world, "/v1/alerts?post=MD-SCU", world.authority)[1]["alerts"] == []
    assert get(world, f"/v1/alerts?since={alert_time + 1}", world.authority)[1]["alerts"] == []
    assert get(world, f"/v1/alerts?until={alert_time - 1}", world.authority)[1]["alerts"] == []
    assert len(get(world, f"/v1/alerts?since={alert_time}&until={alert_time}", world.authority)[1]["alerts"]) == 1


def test_guardian_reads_only_their_own_pending_list(world):
    g = world.alice.guardians[0]
    status, doc, _ = get(world, f"/v1/guardians/{g.public.hex()}/pending", g)
    assert status == 200 and doc["pending"] == []
    other = world.bob.guardians[0]
    status, doc, _ = get(world, f"/v1/guardians/{g.public.hex()}/pending", other)
    assert status == 403


def test_whoami_names_the_callers_role(world):
    assert get(world, "/v1/access/whoami", world.terminal)[1]["post"] == world.post
    doc = get(world, "/v1/access/whoami", world.alice.guardians[1])[1]
    assert doc["role"] == "guardian" and doc["wards"] == [world.alice.identity.hex()]
    assert get(world, "/v1/access/whoami", SigningKey.generate())[1]["role"] is None


# --------------------------------------------------------------------------- who may not


def test_rejects_anonymous_caller(world):
    for path in [*child_paths(world), "/v1/alerts", "/v1/events"]:
        status, doc, headers = raw_get(world.net.url(), path, {})
        assert status == 401, path
        assert doc["type"] == PROBLEM + "unsigned-request"
        assert headers.get("WWW-Authenticate", "").startswith("Custos-Signature")


def test_rejects_unrelated_key(world):
    stranger = SigningKey.generate()
    for path in [*child_paths(world), "/v1/alerts"]:
        status, doc, _ = get(world, path, stranger)
        assert status == 403, path
        assert doc["type"] == PROBLEM + "forbidden"
    status, doc, _ = get(world, "/v1/events", stranger, domain=DOMAIN_SUBSCRIBE)
    assert status == 403


def test_rejects_guardian_of_another_child(world):
    bobs_guardian = world.bob.guardians[0]
    for path in child_paths(world):
        status, doc, _ = get(world, path, bobs_guardian)
        assert status == 403, path
        assert doc["type"] == PROBLEM + "forbidden"
    assert get(world, "/v1/alerts", bobs_guardian)[0] == 403


def test_rejects_auditor_for_child_records(world):
    for path in [*child_paths(world), "/v1/alerts"]:
        assert get(world, path, world.auditor)[0] == 403, path
    assert get(world, "/v1/events", world.auditor, domain=DOMAIN_SUBSCRIBE)[0] == 403
    # integrity data stays open to auditors (and anyone): blocks, proofs, consistency
    status, doc, _ = raw_get(world.net.url(), f"/v1/txs/{world.alice_request.hex()}", {})
    assert status == 200 and doc["proof"]["log_size"] >= 1


def test_refusal_does_not_reveal_whether_a_child_exists(world):
    stranger = SigningKey.generate()
    status, _, _ = get(world, "/v1/identities/" + "00" * 16, stranger)
    assert status == 403  # the same answer as for an enrolled child
    status, _, _ = get(world, "/v1/identities/" + "00" * 16, world.authority)
    assert status == 404


# --------------------------------------------------------------------------- hostile signatures


def test_rejects_stale_request(world):
    g = world.alice.guardians[0]
    path = f"/v1/identities/{world.alice.identity.hex()}"
    status, doc, _ = get(world, path, g, time_ms=now_ms() - 120_000)
    assert status == 401 and doc["type"] == PROBLEM + "stale-request"
    assert abs(doc["server_time_ms"] - now_ms()) < 5_000
    status, doc, _ = get(world, path, g, time_ms=now_ms() + 120_000)
    assert status == 401 and doc["type"] == PROBLEM + "stale-request"


def test_rejects_replayed_request(world):
    g = world.alice.guardians[0]
    path = f"/v1/identities/{world.alice.identity.hex()}"
    headers = signed_headers(world.net.url(), path, g, world.net.chain_id)
    assert raw_get(world.net.url(), path, headers)[0] == 200
    status, doc, _ = raw_get(world.net.url(), path, headers)
    assert status == 401 and doc["type"] == PROBLEM + "replayed-request"


def test_rejects_signature_moved_to_another_path(world):
    g = world.bob.guardians[0]
    headers = signed_headers(world.net.url(), f"/v1/identities/{world.bob.identity.hex()}", g, world.net.chain_id)
    status, doc, _ = raw_get(world.net.url(), f"/v1/identities/{world.alice.identity.hex()}", headers)
    assert status == 401 and doc["type"] == PROBLEM + "bad-request-signature"


def test_rejects_read_signature_used_to_subscribe(world):
    g = world.alice.guardians[0]
    headers = signed_headers(world.net.url(), "/v1/events", g, world.net.chain_id)  # DOMAIN_READ
    status, doc, _ = raw_get(world.net.url(), "/v1/events", headers)
    assert status == 401 and doc["type"] == PROBLEM + "bad-request-signature"


def test_rejects_signature_for_another_chain(world):
    g = world.alice.guardians[0]
    path = f"/v1/identities/{world.alice.identity.hex()}"
    status, doc, _ = raw_get(world.net.url(), path, signed_headers(world.net.url(), path, g, "another-chain",
                                                                   purpose="guardian-review"))
    assert status == 401 and doc["type"] == PROBLEM + "bad-request-signature"


def test_rejects_malformed_signature_headers(world):
    headers = signed_headers(world.net.url(), "/v1/alerts", world.authority, world.net.chain_id)
    headers["Custos-Signature"] = "zz"
    status, doc, _ = raw_get(world.net.url(), "/v1/alerts", headers)
    assert status == 400 and doc["type"] == PROBLEM + "malformed-signed-request"
    del headers["Custos-Nonce"]
    assert raw_get(world.net.url(), "/v1/alerts", headers)[0] == 400


def test_rejects_revoked_key(world, net):
    carol = world.enrol("carol", guardians=1, approvals=1)
    g = carol.guardians[0]
    path = f"/v1/identities/{carol.identity.hex()}"
    assert get(world, path, g)[0] == 200
    world.submit_all([net.txs.revoke_key(net.council[:2], g.public, "compromised")])
    status, doc, _ = get(world, path, g)
    assert status == 403 and doc["type"] == PROBLEM + "revoked-key"
    status, doc, _ = get(world, "/v1/events", g, domain=DOMAIN_SUBSCRIBE)
    assert status == 403 and doc["type"] == PROBLEM + "revoked-key"


def test_client_corrects_its_clock_from_a_stale_answer(world):
    from node.client.signed import SignedClient
    from tests.node.netkit import run

    async def go():
        async with SignedClient(world.net.url(), world.authority, purpose=Purpose("case-work")) as client:
            client.clock_offset_ms = -300_000  # five minutes slow
            doc = await client.get(f"/v1/identities/{world.alice.identity.hex()}")
            return doc, client.clock_offset_ms

    doc, offset = run(go())
    assert doc["id"] == world.alice.identity.hex()
    assert abs(offset) < 5_000


def test_signed_query_strings_survive_the_trip(world):
    """The signature covers the path and query exactly as sent, odd characters included."""
    from node.client.signed import SignedClient
    from tests.node.netkit import run

    async def go():
        async with SignedClient(world.net.url(), world.authority, purpose=Purpose("case-work")) as client:
            return await client.get("/v1/alerts", {"post": "Ţ MD/LEU+1 & ?", "since": 0, "limit": 5})

    assert run(go())["alerts"] == []


@pytest.mark.parametrize("stamp", ["179\u00b2", "\u0661\u0667\u0669", "1_000", "-5", "+5"])
def test_rejects_a_signed_request_time_that_is_not_ascii_digits(world, stamp):
    headers = signed_headers(world.net.url(), "/v1/alerts", world.authority, world.net.chain_id)
    headers["Custos-Time"] = stamp.encode().decode("latin-1")  # sent as its UTF-8 bytes
    status, doc, _ = raw_get(world.net.url(), "/v1/alerts", headers)
    assert status == 400 and doc["type"] == PROBLEM + "malformed-signed-request", (status, doc)
