"""The peer network heals itself and keeps its door for the chain's own nodes.

Faults are named for what they are: a read that fails on a closing socket (what aiohttp raises
when a paused peer's ping is answered after the peer gave up), a bug in serving a connection,
strangers that hold connections open without a hello, and strangers that claim a configured
node's key without being able to prove it.
"""

from __future__ import annotations

import asyncio
import os

import aiohttp
import pytest

from ledger.crypto.keys import SigningKey
from node.p2p import TRANSACTIONS, Limits, Reason
from node.p2p.admission import Admission
from node.p2p.handshake import HELLO, VERSION, Hello
from node.p2p.network import PATH, PeerNetwork
from node.p2p.peer import CLOSE_REJECTED
from tests.node.p2p.p2pkit import CHAIN_ID, GENESIS, Cluster, async_test, wait_until

# ---------------------------------------------------------------- self-healing links


def fail_next_reads(monkeypatch, n: int) -> list[int]:
    """The next ``n`` websocket reads of dialled connections raise ClientConnectionResetError."""
    left = [n]
    real = aiohttp.ClientWebSocketResponse.receive

    async def receive(self, *args, **kwargs):
        msg = await real(self, *args, **kwargs)
        if left[0] > 0 and msg.type is aiohttp.WSMsgType.BINARY:
            left[0] -= 1
            raise aiohttp.ClientConnectionResetError("Cannot write to closing transport")
        return msg

    monkeypatch.setattr(aiohttp.ClientWebSocketResponse, "receive", receive)
    return left


@async_test(timeout=20)
async def test_a_connection_reset_in_a_read_ends_only_that_connection_and_both_ends_redial(monkeypatch):
    async with Cluster() as c:
        a, b = await c.add("a"), await c.add("b")
        await c.mesh(a, b)
        left = fail_next_reads(monkeypatch, 3)  # several in a row: the redials fail too
        for i in range(20):
            a.net.broadcast(TRANSACTIONS, b"x%d" % i)
            b.net.broadcast(TRANSACTIONS, b"y%d" % i)
            await asyncio.sleep(0.02)
        await wait_until("every injected failure happened", lambda: left[0] == 0, timeout=10)
        await wait_until("a and b connected again", lambda: a.connected_to(b) and b.connected_to(a), timeout=5)
        for m in (a, b):
            metrics = m.net.metrics()
            assert metrics["p2p_dialers_running"] == metrics["p2p_peers_configured"] == 1
        a.net.broadcast(TRANSACTIONS, b"after")
        await wait_until("messages flow again", lambda: b"after" in b.payloads())


@async_test(timeout=20)
async def test_a_bug_while_serving_a_connection_is_counted_and_the_peer_redialled(monkeypatch):
    async with Cluster() as c:
        a, b = await c.add("a"), await c.add("b")
        broken = [2]
        real = PeerNetwork._serve

        async def serve(self, conn):
            if self is a.net and broken[0] > 0:
                broken[0] -= 1
                await conn.close()
                raise RuntimeError("a bug in serving a connection")
            return await real(self, conn)

        monkeypatch.setattr(PeerNetwork, "_serve", serve)
        await c.mesh(a, b, timeout=10)
        assert broken[0] == 0
        assert a.net.counters.task_failures >= 1
        assert a.net.metrics()["p2p_dialers_running"] == 1


class Escaped(BaseException):
    pass


@async_test(timeout=20)
async def test_a_dialer_that_ends_unexpectedly_is_restarted(monkeypatch):
    async with Cluster() as c:
        a = await c.add("a")
        b = c.member("b")
        real = PeerNetwork._dial_once
        calls = [0]

        async def dial_once(self, public, attempt):
            calls[0] += 1
            if calls[0] == 1:
                raise Escaped("not an Exception: the loop lets it through, its supervisor catches it")
            return await real(self, public, attempt)

        monkeypatch.setattr(PeerNetwork, "_dial_once", dial_once)
        await c.start(b)
        a.net.add_peer(b.address, b.public)
        await wait_until("a reaches b after its dialer was restarted", lambda: a.connected_to(b), timeout=5)
        assert a.net.counters.task_failures == 1


# ---------------------------------------------------------------- the dialler speaks first


async def _hello_as(address: str, key: bytes, *, chain_id: str = CHAIN_ID) -> aiohttp.WSMessage:
    """Send a hello claiming ``key``; return the first thing the listener answers."""
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"http://{address}{PATH}")
        hello = Hello(VERSION, key, chain_id, GENESIS, os.urandom(32), os.urandom(32))
        await ws.send_bytes(HELLO.encode(hello))
        return await asyncio.wait_for(ws.receive(), 3)


@pytest.mark.parametrize("case", ["unknown-key", "wrong-chain"])
@async_test()
async def test_rejects_a_stranger_without_telling_it_who_answered(case):
    async with Cluster() as c:
        a = await c.add("a")
        stranger = SigningKey.generate().public
        if case == "unknown-key":
            reply = await _hello_as(a.address, stranger)
        else:
            reply = await _hello_as(a.address, c.member("b").public, chain_id="another-chain")
        # no hello (no key, chain id or genesis of a), only a refusal that names no reason
        assert reply.type is aiohttp.WSMsgType.CLOSE
        assert reply.data == CLOSE_REJECTED and reply.extra == Reason.REFUSED


# ---------------------------------------------------------------- handshake slots


async def _silent_callers(address: str, n: int, http: aiohttp.ClientSession) -> list:
    """``n`` websocket connections that never say hello (each waits out the handshake timeout)."""
    out = []
    for _ in range(n):
        try:
            out.append(await http.ws_connect(f"http://{address}{PATH}"))
        except aiohttp.ClientError:
            pass
    return out


@async_test(timeout=30)
async def test_strangers_holding_every_handshake_slot_do_not_keep_a_configured_peer_out():
    # slow handshakes allowed: without eviction the strangers would hold their slots for 20 s
    limits = Limits(handshake_timeout_s=20.0, close_timeout_s=0.3, stop_timeout_s=3.0,
                    max_handshakes=8, max_handshakes_per_ip=8)
    async with Cluster() as c:
        a = await c.add("a", limits=limits)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            flood = asyncio.create_task(_flood(a.address, http, seconds=4.0))
            await asyncio.sleep(0.5)
            assert a.net.metrics()["p2p_handshakes_in_progress"] >= 8
            b = c.member("b")
            await c.start(b, peers=[(a.address, a.public)])  # b dials a through the flood
            took = await wait_until("b gets through", lambda: a.connected_to(b) and b.connected_to(a), timeout=3)
            assert took < 2.0
            await flood
        assert a.net.counters.handshakes_evicted > 0


async def _flood(address: str, http: aiohttp.ClientSession, seconds: float) -> None:
    """Open silent connections again and again for ``seconds``."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    held: list = []
    while loop.time() < end:
        held += await _silent_callers(address, 4, http)
        await asyncio.sleep(0.01)
    for ws in held:
        await ws.close()


@async_test(timeout=30)
async def test_strangers_claiming_a_configured_key_do_not_keep_its_owner_out():
    limits = Limits(handshake_timeout_s=20.0, close_timeout_s=0.3, stop_timeout_s=3.0)
    async with Cluster() as c:
        a = await c.add("a", limits=limits)
        b = c.member("b")
        claims = []
        async with aiohttp.ClientSession() as http:
            for _ in range(limits.max_handshakes_per_key + 2):
                ws = await http.ws_connect(f"http://{a.address}{PATH}")
                hello = Hello(VERSION, b.public, CHAIN_ID, GENESIS, os.urandom(32), os.urandom(32))
                await ws.send_bytes(HELLO.encode(hello))  # a claims b's key; it cannot sign for it
                claims.append(ws)
            await wait_until("a holds the claims", lambda: a.net.metrics()["p2p_handshakes_in_progress"] >= 2)
            await c.start(b, peers=[(a.address, a.public)])
            await wait_until("the real b gets through", lambda: a.connected_to(b), timeout=3)
            for ws in claims:
                await ws.close()
        assert a.net.counters.handshakes_evicted >= 2


def test_admission_evicts_the_oldest_stranger_of_the_same_address_first():
    adm = Admission(total=4, per_ip=2, per_key=1)
    t1, ev = adm.open("10.0.0.1", "s1", 0.0)
    t2, ev2 = adm.open("10.0.0.1", "s2", 0.1)
    assert ev == ev2 == []
    t3, ev3 = adm.open("10.0.0.1", "s3", 0.2)
    assert [t.handle for t in ev3] == ["s1"]  # its own oldest, not another address's
    p1, _ = adm.open("10.0.0.2", "p1", 0.3)
    p2, _ = adm.open("10.0.0.3", "p2", 0.4)
    assert adm.anonymous == 4
    p3, ev4 = adm.open("10.0.0.4", "p3", 0.5)
    assert [t.handle for t in ev4] == ["s2"]  # the total is reached: the oldest of all goes
    assert adm.anonymous == 4


def test_admission_reserves_claimed_slots_and_bounds_claims_per_key():
    adm = Admission(total=2, per_ip=2, per_key=2)
    key = b"k" * 32
    t1, _ = adm.open("ip", "h1", 0)
    assert adm.claim(t1, key) == []
    assert adm.anonymous == 0  # a claimed handshake leaves the strangers' pool
    t2, _ = adm.open("ip", "h2", 1)
    t3, _ = adm.open("ip", "h3", 2)
    assert adm.anonymous == 2 and adm.in_progress == 3
    assert adm.claim(t2, key) == []
    t4, _ = adm.open("ip", "h4", 3)
    assert [t.handle for t in adm.claim(t4, key)] == ["h1"]  # a third claim evicts the oldest
    for t in (t1, t2, t3, t4):
        adm.close(t)
        adm.close(t)  # idempotent
    assert adm.in_progress == 0


@async_test(timeout=20)
async def test_sockets_that_never_ask_for_the_websocket_are_closed():
    limits = Limits(handshake_timeout_s=0.5, close_timeout_s=0.3, stop_timeout_s=3.0)
    async with Cluster() as c:
        a = await c.add("a", limits=limits)
        host, port = a.address.rsplit(":", 1)
        silent = [await asyncio.open_connection(host, int(port)) for _ in range(5)]
        half = await asyncio.open_connection(host, int(port))
        half[1].write(b"GET /p2p HTTP/1.1\r\nHo")  # half a request, never finished
        for reader, _ in [*silent, half]:
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by a
        for _, writer in [*silent, half]:
            writer.close()
        m = a.net.metrics()
        assert m["p2p_listener_connections_idle_timeouts_total"] == 5
        assert m["p2p_listener_connections_header_timeouts_total"] == 1
