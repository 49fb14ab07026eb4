"""The signed event stream: who hears what, resuming after a gap, slow and revoked subscribers,
and a node that restarts under its watchers."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from ledger.crypto.keys import SigningKey
from node.access.purpose import Purpose
from node.api.events import Subscriber
from node.client.guardian import GuardianClient
from node.client.http import NodeUnreachable, ProblemError
from node.client.signed import SignedClient
from tests.node.clientkit import World, now_ms
from tests.node.netkit import Net, run

GUARDIAN_REVIEW = Purpose("guardian-review")


async def crossing(world, child, terminal=None, post=None):
    tx = world.net.txs.crossing(terminal or world.terminal, child.biometric, child.identity, post=post or world.post,
                                direction="exit", event_time=now_ms(), destination="RO")
    await world.asubmit([tx])
    return tx


async def collect(client: SignedClient, *, until, cursor=None, timeout_s: float = 15.0) -> list:
    """Events of one stream until ``until(events)`` holds (bounded in time)."""
    got = []

    async def go():
        async for ev in client.events(cursor=cursor, heartbeat_ms=1000, max_reconnects=0):
            got.append(ev)
            if until(got):
                return

    await asyncio.wait_for(go(), timeout_s)
    return got


def test_each_subscriber_hears_only_what_concerns_it(world, net):
    ann, ben = world.enrol("ann", guardians=1, approvals=1), world.enrol("ben", guardians=1, approvals=1)
    other_terminal = SigningKey.generate()
    world.submit_all([net.txs.register_post(net.council[:2], "MD-OCN", "Ocnita"),
                      net.txs.register_terminal(net.council[:2], other_terminal.public, "MD-OCN")])

    async def go():
        clients = {name: SignedClient(net.url(), key, chain_id=net.chain_id, purpose=Purpose(purpose))
                   for name, key, purpose in
                   (("ann", ann.guardians[0], "guardian-review"), ("ben", ben.guardians[0], "guardian-review"),
                    ("terminal", world.terminal, "border-check"), ("other", other_terminal, "border-check"),
                    ("authority", world.authority, "alert-follow-up"))}
        queues = {name: asyncio.Queue() for name in clients}

        async def pump(name):
            async for ev in clients[name].events(heartbeat_ms=1000, max_reconnects=0):
                queues[name].put_nowait(ev)

        tasks = [asyncio.create_task(pump(n)) for n in clients]
        try:
            for q in queues.values():
                assert (await asyncio.wait_for(q.get(), 10)).type == "sync"
            a = await crossing(world, ann)
            b = await crossing(world, ben, terminal=other_terminal, post="MD-OCN")
            await world.asubmit([net.txs.decide(ben.guardians[0], b.id, ben.identity, "deny", "not-informed")])
            await asyncio.sleep(1.0)
            seen = {}
            for name, q in queues.items():
                seen[name] = []
                while not q.empty():
                    ev = q.get_nowait()
                    seen[name].append((ev.type, ev.data.get("id")))
            return a.id.hex(), b.id.hex(), seen
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for c in clients.values():
                await c.close()

    a, b, seen = run(go())
    assert seen["ann"] == [("pending", a)]
    assert seen["ben"] == [("pending", b), ("closed", b)]
    assert seen["terminal"] == [("pending", a)]
    assert seen["other"] == [("pending", b), ("closed", b)]
    assert seen["authority"] == [("closed", b)]  # the alert only (a veto denial)


def test_reconnect_with_the_last_event_id_replays_what_was_missed(world, net):
    cleo = world.enrol("cleo", guardians=2, approvals=2)

    async def go():
        async with SignedClient(net.url(), cleo.guardians[0], chain_id=net.chain_id, purpose=GUARDIAN_REVIEW) as c:
            first = await collect(c, until=lambda evs: evs[-1].type == "sync")
            cursor = first[-1].id
            tx = await crossing(world, cleo)  # while this guardian is away
            await world.asubmit([net.txs.decide(cleo.guardians[1], tx.id, cleo.identity, "approve")])
            again = await collect(c, cursor=cursor, until=lambda evs: evs[-1].type == "sync")
            return tx.id.hex(), again

    rid, again = run(go())
    assert [(e.type, e.data.get("id")) for e in again[:-1]] == [("pending", rid), ("decision", rid)]
    assert not any(e.data.get("replayed") for e in again)
    assert again[-1].data["complete"] is True


def test_slow_subscriber_is_dropped_with_a_final_event():
    async def go():
        sub = Subscriber("guardian", b"k" * 32, (0, 0), limit=3)
        for i in range(3):
            sub.offer(b"event %d" % i)
        assert sub.finished is None
        sub.offer(b"one too many")
        assert sub.finished == "dropped"
        frames = [sub.queue.get_nowait() for _ in range(sub.queue.qsize())]
        assert len(frames) == 1 and frames[0].startswith(b"event: dropped")
        sub.offer(b"later")  # nothing more is queued after the end
        assert sub.queue.empty()

    run(go())


def test_revoking_a_key_ends_its_stream(world, net):
    dora = world.enrol("dora", guardians=1, approvals=1)

    async def go():
        async with SignedClient(net.url(), dora.guardians[0], chain_id=net.chain_id, purpose=GUARDIAN_REVIEW) as c:
            got = []

            async def follow():
                async for ev in c.events(heartbeat_ms=1000, max_reconnects=3, reconnect_delay_s=0.1):
                    got.append(ev)
                    if ev.type == "sync" and len(got) == 1:
                        await world.asubmit([net.txs.revoke_key(net.council[:2], dora.guardians[0].public,
                                                                "compromised")])

            with pytest.raises(ProblemError) as info:
                await asyncio.wait_for(follow(), 20)
            return info.value

    refusal = run(go())
    assert refusal.status == 403 and refusal.rule == "revoked-key"


def test_watch_survives_a_node_restart_and_sees_what_is_pending(world, net):
    eve = world.enrol("eve", guardians=1, approvals=1)

    async def go():
        async with GuardianClient(net.url(), eve.guardians[0], chain_id=net.chain_id) as g:
            events, states = [], []

            async def follow():
                async for ev in g.watch(heartbeat_ms=500, on_state=states.append):
                    events.append(ev)
                    if ev.type == "pending":
                        return ev

            task = asyncio.create_task(follow())
            await asyncio.sleep(1.0)
            net.kill("val-0", signal.SIGKILL)
            net.start("val-0")
            tx = await crossing(world, eve)
            alert = await asyncio.wait_for(task, 30)
            return tx.id.hex(), alert, states

    rid, alert, states = run(go())
    assert alert.data["id"] == rid
    assert any(s.startswith("reconnecting") for s in states)


def test_a_cursor_older_than_the_kept_events_gets_the_current_pending_state(world, net):
    fin = world.enrol("fin", guardians=1, approvals=1)

    async def go():
        async with SignedClient(net.url(), fin.guardians[0], chain_id=net.chain_id, purpose=GUARDIAN_REVIEW) as c:
            old = (await collect(c, until=lambda evs: evs[-1].type == "sync"))[-1].id
            tx = await crossing(world, fin)
            net.kill("val-0", signal.SIGTERM)  # a restart forgets the kept events
            net.start("val-0")
            again = await collect(c, cursor=old, until=lambda evs: evs[-1].type == "sync")
            return tx.id.hex(), again

    rid, again = run(go())
    pending = [e for e in again if e.type == "pending"]
    assert [e.data["id"] for e in pending] == [rid] and pending[0].data["replayed"] is True
    assert again[-1].data["complete"] is False  # closed events may have been missed: reconcile


def test_stopping_a_node_ends_open_streams_promptly(world, net):
    gus = world.enrol("gus", guardians=1, approvals=1)

    async def go():
        async with SignedClient(net.url(), gus.guardians[0], chain_id=net.chain_id, purpose=GUARDIAN_REVIEW) as c:
            got = []

            async def follow():
                async for ev in c.events(heartbeat_ms=30_000, max_reconnects=0):
                    got.append(ev)

            task = asyncio.create_task(follow())
            await asyncio.sleep(1.0)
            started = time.monotonic()
            net.kill("val-0", signal.SIGTERM)  # a clean stop: must not wait for the watchers
            stopped = time.monotonic() - started
            with pytest.raises(NodeUnreachable):  # the stream ends: the node is gone
                await asyncio.wait_for(task, 10)
            return stopped

    assert run(go()) < 5.0
    net.start("val-0")


def test_reconnecting_often_does_not_exhaust_the_keys_stream_slots(world, net):
    hal = world.enrol("hal", guardians=1, approvals=1)

    async def go():
        for _ in range(12):  # more than the 8 concurrent streams a key may hold
            async with SignedClient(net.url(), hal.guardians[0], chain_id=net.chain_id, purpose=GUARDIAN_REVIEW) as c:
                await collect(c, until=lambda evs: evs[-1].type == "sync")
            await asyncio.sleep(0.05)

    run(go())


def test_watch_fails_over_to_another_validator(tmp_path):
    """Four validators; the one a guardian watches through dies; the alert still arrives."""
    net4 = Net(tmp_path / "net4", validators=4, heartbeat_ms=500)
    net4.start()
    try:
        w = World(net4, tmp_path / "keys")
        ivy = w.enrol("ivy", guardians=1, approvals=1)
        # stakes 300/270/230/200: without the smallest validator the rest still hold more than 2/3
        first, *others = ["val-3", "val-0", "val-1", "val-2"]
        # the first node must know the enrolment, or it rightly refuses the guardian (403)
        net4.wait_height(max(net4.height(n) for n in others), first, timeout_s=30)

        async def go():
            urls = [net4.url(first)] + [net4.url(n) for n in others]
            async with GuardianClient(urls, ivy.guardians[0], chain_id=net4.chain_id) as g:
                states, inbox = [], asyncio.Queue()

                async def follow():
                    async for ev in g.watch(heartbeat_ms=500, on_state=states.append):
                        inbox.put_nowait(ev)

                task = asyncio.create_task(follow())
                try:
                    assert (await asyncio.wait_for(inbox.get(), 15)).type == "sync"
                    net4.kill(first, signal.SIGKILL)
                    tx = w.net.txs.crossing(w.terminal, ivy.biometric, ivy.identity, post=w.post, direction="exit",
                                            event_time=now_ms(), destination="RO")
                    await w.asubmit([tx])
                    while True:
                        ev = await asyncio.wait_for(inbox.get(), 30)
                        if ev.type == "pending" and ev.data["id"] == tx.id.hex():
                            return states
                finally:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)

        states = run(go())
        assert states[0] == f"connected to {net4.url(first)}"
        assert any(s.startswith("connected to") and net4.url(first) not in s for s in states[1:])
    finally:
        net4.stop()


def test_a_cursor_beyond_the_nodes_chain_is_refused_not_silently_skipped(world, net):
    """A cursor names a height this node has not reached (made up, or from a node further on):
    resuming after it would drop, unseen, the events of every block in between."""
    ivy = world.enrol("ivy", guardians=1, approvals=1)

    async def refusal(cursor: str) -> Exception:
        async with SignedClient(net.url(), ivy.guardians[0], chain_id=net.chain_id, purpose=GUARDIAN_REVIEW) as c:
            with pytest.raises((ProblemError, NodeUnreachable)) as caught:
                await collect(c, cursor=cursor, until=lambda evs: True, timeout_s=10)
            return caught.value

    async def go():
        async with SignedClient(net.url(), ivy.guardians[0], chain_id=net.chain_id, purpose=GUARDIAN_REVIEW) as c:
            tip = int((await collect(c, until=lambda evs: evs[-1].type == "sync"))[-1].id.split(".")[0])
        ahead = [await refusal(f"{height}.0") for height in (tip + 1000, 999_999_999)]
        malformed = [await refusal(text) for text in ("-5.-3", "1_0.x", "7", "7.x.1", "7.0123456789")]
        return ahead, malformed

    ahead, malformed = run(go())
    # the client moves to another node on a 503 and gives up after max_reconnects=0
    assert all(isinstance(e, NodeUnreachable) and "behind-cursor" in str(e) for e in ahead), ahead
    assert {(e.status, e.rule) for e in malformed if isinstance(e, ProblemError)} == {(400, "bad-cursor")}
    assert all(isinstance(e, ProblemError) for e in malformed), malformed
