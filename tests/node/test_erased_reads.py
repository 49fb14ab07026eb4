"""Reads of an erased child answer 410 with a problem whose type ends in ``/erased``.

Through a real node: a child with a crossing and a consent is erased by council order; its
record, its request list, the request and the consent (named by their ids) then answer 410 to
its former guardians and to enrolment authorities alike, while unknown ids still answer 404.
"""

from __future__ import annotations

from ledger.privacy.tags import child_tag
from tests.node.clientkit import World, now_ms, signed_get
from tests.node.netkit import Net


def test_reads_of_an_erased_child_answer_410(tmp_path):
    net = Net(tmp_path / "net", validators=1, heartbeat_ms=300)
    net.start()
    try:
        world = World(net, tmp_path / "keys")
        child = world.enrol("eva", guardians=1, approvals=1)
        t = net.txs
        consent = t.grant_consent(child.guardians, child.identity, not_before=now_ms(),
                                  not_after=now_ms() + 86_400_000, direction="exit", destination="RO")
        crossing = t.crossing(world.terminal, child.biometric, child.identity, post=world.post, direction="exit",
                              event_time=now_ms(), destination="UA")
        world.submit_all([consent, crossing])
        identity = child.identity.hex()
        paths = [f"/v1/identities/{identity}", f"/v1/identities/{identity}/requests",
                 f"/v1/requests/{crossing.id.hex()}", f"/v1/consents/{consent.id.hex()}"]
        for key in (child.guardians[0], world.authority):
            assert [signed_get(net.url(), p, key, net.chain_id)[0] for p in paths] == [200] * 4
        world.submit_all([t.erase(net.council[:2], child_tag(child.identity), bytes(32), "court-order")])
        for key in (child.guardians[0], world.authority):
            for path in paths:
                status, doc, _ = signed_get(net.url(), path, key, net.chain_id)
                assert status == 410 and doc["type"].endswith("/erased"), (path, doc)
        assert signed_get(net.url(), "/v1/identities/" + "00" * 16, world.authority, net.chain_id)[0] == 404
        assert signed_get(net.url(), "/v1/requests/" + "00" * 32, world.authority, net.chain_id)[0] == 404
    finally:
        net.stop()
