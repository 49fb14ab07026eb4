"""A guardian removed by a court order is refused everything about the child from then on.

Through a real node: before the order the guardian reads the child's record, requests, consent
and transaction bytes, has a pending list and hears the child's events; after the order (which
names a new guardian instead) every one of those reads is refused, the stream ends, and the
child's next crossing reaches only the guardians the order names.
"""

from __future__ import annotations

import asyncio

import pytest

from ledger.crypto.keys import SigningKey
from node.access.purpose import Purpose
from node.client.http import ProblemError
from node.client.signed import SignedClient
from tests.node.clientkit import World, now_ms, signed_get
from tests.node.netkit import run

PROBLEM = "https://custos.dev/problems/"


def cross(world, child, destination="UA"):
    return world.net.txs.crossing(world.terminal, child.biometric, child.identity, post=world.post,
                                  direction="exit", event_time=now_ms(), destination=destination)


def test_removed_guardian_is_refused_everything_about_the_child(net, tmp_path):
    world = World(net, tmp_path / "keys")
    child = world.enrol("dan", guardians=2, approvals=1, veto=True)
    old, kept = child.guardians
    new = SigningKey.generate()
    t = net.txs
    consent = t.grant_consent([old], child.identity, not_before=now_ms(), not_after=now_ms() + 86_400_000,
                              direction="exit", destination="RO")
    first = cross(world, child)
    world.submit_all([consent, first])
    decision = t.decide(old, first.id, child.identity, "deny", "safety-concern")
    second = cross(world, child)
    world.submit_all([decision, second])  # the first is denied; the second waits
    identity = child.identity.hex()
    reads = {
        "record": f"/v1/identities/{identity}",
        "history": f"/v1/identities/{identity}/requests",
        "request": f"/v1/requests/{first.id.hex()}",
        "consent": f"/v1/consents/{consent.id.hex()}",
        "pending": f"/v1/guardians/{old.public.hex()}/pending",
    }

    def read(key, path):
        return signed_get(net.url(), path, key, net.chain_id, purpose="guardian-review")

    before = {name: read(old, path) for name, path in reads.items()}
    assert {name: status for name, (status, _, _) in before.items()} == dict.fromkeys(reads, 200)
    assert [p["id"] for p in before["pending"][1]["pending"]] == [second.id.hex()]
    for tx in (first, decision, consent):
        assert "tx" in read(old, f"/v1/txs/{tx.id.hex()}")[1]  # a party's (or signer's) view: the bytes

    async def watch_across_the_order():
        async with SignedClient(net.url(), old, chain_id=net.chain_id, purpose=Purpose("guardian-review")) as c:
            seen = []

            async def follow():
                async for ev in c.events(heartbeat_ms=500, max_reconnects=1, reconnect_delay_s=0.1):
                    seen.append(ev)

            task = asyncio.create_task(follow())
            while not any(ev.type == "sync" for ev in seen):
                await asyncio.sleep(0.05)
            order = t.update_guardians(world.authority, child.identity, guardians=[kept.public, new.public],
                                       approvals=1, deadline_ms=60_000, veto=True, order=bytes(32))
            await world.asubmit([order])
            third = cross(world, child)
            await world.asubmit([third])
            with pytest.raises(ProblemError) as refused:  # the stream ends; reconnecting is refused
                await asyncio.wait_for(task, 20)
            return seen, third, refused.value

    seen, third, refused = run(watch_across_the_order())
    assert seen[-1].type == "forbidden"
    assert third.id.hex() not in [ev.data.get("id") for ev in seen]
    assert refused.status == 403

    after = {name: read(old, path) for name, path in reads.items()}
    assert {name: (status, doc.get("type")) for name, (status, doc, _) in after.items()} == \
        dict.fromkeys(reads, (403, PROBLEM + "forbidden"))
    for tx in (first, decision, consent, third):
        status, doc, _ = read(old, f"/v1/txs/{tx.id.hex()}")
        assert status == 200 and "tx" not in doc and "crossing" not in doc  # the public view only
    # the guardians the order names read on
    assert read(new, reads["record"])[0] == 200
    pending = read(new, f"/v1/guardians/{new.public.hex()}/pending")[1]["pending"]
    assert sorted(p["id"] for p in pending) == sorted([second.id.hex(), third.id.hex()])
