"""Signed reads bind their node and state a purpose; a captured read cannot be replayed.

Through real node processes (a validator and an observer that serves the same chain): a read
without a purpose, or with one its role may not state, is refused; a read captured on its way to
one node is refused by another (the signature binds the target node), and by the same node
after a restart within the validity window (the replay cache is on disk); one key that signs
too fast is slowed down without locking out the others.
"""

from __future__ import annotations

import signal

import pytest

from ledger.crypto.keys import DOMAIN_SUBSCRIBE
from tests.node.clientkit import World, raw_get, signed_get, signed_headers
from tests.node.netkit import Net

PROBLEM = "https://custos.dev/problems/"
QUOTA = 10


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    net = Net(tmp_path_factory.mktemp("binding"), validators=1, observers=1, heartbeat_ms=300)
    config = net.dir / "obs-0" / "node.toml"  # a small per-key quota on the observer
    config.write_text(config.read_text().replace("[api]\n", f"[api]\nreplay_per_key = {QUOTA}\n"))
    net.start()
    yield net
    net.stop()


@pytest.fixture(scope="module")
def world(net, tmp_path_factory):
    w = World(net, tmp_path_factory.mktemp("keys"))
    w.child = w.enrol("ana")
    net.wait_until("the observer to hold the enrolment", lambda: net.height("obs-0") >= net.height("val-0"))
    return w


def path_of(world) -> str:
    return f"/v1/identities/{world.child.identity.hex()}"


def test_rejects_read_without_a_purpose(world, net):
    guardian = world.child.guardians[0]
    status, doc, _ = signed_get(net.url(), path_of(world), guardian, net.chain_id, purpose=None)
    assert status == 400 and doc["type"] == PROBLEM + "purpose-required"
    assert "Custos-Purpose" in doc["detail"]
    status, doc, _ = signed_get(net.url(), "/v1/alerts", world.authority, net.chain_id, purpose=None)
    assert status == 400 and doc["type"] == PROBLEM + "purpose-required"
    status, doc, _ = signed_get(net.url(), "/v1/events", guardian, net.chain_id, purpose=None,
                                domain=DOMAIN_SUBSCRIBE)
    assert status == 400 and doc["type"] == PROBLEM + "purpose-required"
    assert signed_get(net.url(), path_of(world), guardian, net.chain_id, purpose="guardian-review")[0] == 200


def test_rejects_purpose_the_role_may_not_state(world, net):
    guardian = world.child.guardians[0]
    status, doc, _ = signed_get(net.url(), path_of(world), guardian, net.chain_id, purpose="case-work")
    assert status == 403 and doc["type"] == PROBLEM + "purpose-not-allowed"
    status, doc, _ = signed_get(net.url(), path_of(world), world.authority, net.chain_id, purpose="audit")
    assert status == 403 and doc["type"] == PROBLEM + "purpose-not-allowed"
    status, doc, _ = signed_get(net.url(), path_of(world), world.authority, net.chain_id, purpose="bored")
    assert status == 400 and doc["type"] == PROBLEM + "bad-purpose"


def test_rejects_read_replayed_to_another_node(world, net):
    guardian = world.child.guardians[0]
    captured = signed_headers(net.url("val-0"), path_of(world), guardian, net.chain_id)
    status, doc, _ = raw_get(net.url("obs-0"), path_of(world), captured)  # replayed before delivery
    assert status == 401 and doc["type"] == PROBLEM + "bad-request-signature"
    assert raw_get(net.url("val-0"), path_of(world), captured)[0] == 200
    status, doc, _ = raw_get(net.url("obs-0"), path_of(world), captured)  # and after
    assert status == 401 and doc["type"] == PROBLEM + "bad-request-signature"
    # signed for the observer, the same read is served there
    assert signed_get(net.url("obs-0"), path_of(world), guardian, net.chain_id)[0] == 200


def test_rejects_read_replayed_after_a_restart(world, net):
    guardian = world.child.guardians[1]
    captured = signed_headers(net.url("val-0"), path_of(world), guardian, net.chain_id)
    assert raw_get(net.url("val-0"), path_of(world), captured)[0] == 200
    net.kill("val-0", signal.SIGKILL)  # a crash: nothing is flushed on the way down
    net.start("val-0")
    status, doc, _ = raw_get(net.url("val-0"), path_of(world), captured)
    assert status == 401 and doc["type"] == PROBLEM + "replayed-request"
    assert signed_get(net.url("val-0"), path_of(world), guardian, net.chain_id)[0] == 200  # fresh: served


def test_rejects_key_over_its_quota_and_serves_the_others(world, net):
    """One key cannot fill the node's replay cache: past its quota it is told to slow down (429)
    while every other key is served."""
    terminal, authority = world.terminal, world.authority
    path = f"/v1/terminals/{terminal.public.hex()}/requests"
    statuses = [signed_get(net.url("obs-0"), path, terminal, net.chain_id, purpose="border-check")[0]
                for _ in range(QUOTA + 3)]
    assert statuses[:QUOTA] == [200] * QUOTA
    assert set(statuses[QUOTA:]) == {429}
    status, doc, _ = signed_get(net.url("obs-0"), path, terminal, net.chain_id, purpose="border-check")
    assert doc["type"] == PROBLEM + "too-many-requests"
    assert signed_get(net.url("obs-0"), path, authority, net.chain_id, purpose="case-work")[0] == 200
