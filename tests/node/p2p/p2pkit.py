"""Peer networks on 127.0.0.1 for tests: members with inboxes, links, bounded waits, raw peers.

Every wait is bounded in time and raises with what it was waiting for; every network is
stopped when the cluster closes.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from ledger.crypto.keys import SigningKey
from node.p2p import Limits, PeerNetwork
from node.p2p.handshake import Handshake
from node.p2p.network import PATH
from node.p2p.peer import perform_handshake
from node.p2p.session import Session

CHAIN_ID = "custos-p2p-test"
GENESIS = hashlib.sha256(b"custos p2p test genesis").digest()

#: quick timings for tests: short handshake, close and stop bounds
FAST = Limits(handshake_timeout_s=2.0, close_timeout_s=0.5, stop_timeout_s=3.0, heartbeat_s=5.0)


def async_test(timeout: float = 15.0):
    """Run an ``async def`` test in a fresh event loop, bounded by ``timeout`` seconds."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def runner(*args: Any, **kwargs: Any) -> Any:
            return asyncio.run(asyncio.wait_for(fn(*args, **kwargs), timeout))

        return runner

    return wrap


async def wait_until(what: str, predicate: Callable[[], bool], timeout: float = 5.0, step: float = 0.01) -> float:
    """Poll ``predicate`` until true; return the seconds it took. Raise after ``timeout``."""
    start = time.monotonic()
    for _ in range(int(timeout / step) + 1):
        if predicate():
            return time.monotonic() - start
        await asyncio.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Member:
    """One node of a test cluster: its network, key and everything it received."""

    def __init__(self, name: str, key: SigningKey) -> None:
        self.name = name
        self.key = key
        self.net: PeerNetwork | None = None
        #: (sender key, channel, payload) in arrival order
        self.inbox: list[tuple[bytes, int, bytes]] = []
        #: (peer key, connected) in order
        self.peer_events: list[tuple[bytes, bool]] = []
        #: what ``on_message`` answers for gossip: False delivers without relaying
        self.relay = True

    @property
    def public(self) -> bytes:
        return self.key.public

    @property
    def address(self) -> str:
        assert self.net is not None
        return self.net.listen_address

    def on_message(self, peer: bytes, channel: int, payload: bytes) -> bool | None:
        self.inbox.append((peer, channel, payload))
        return None if self.relay else False

    def on_peer(self, peer: bytes, connected: bool) -> None:
        self.peer_events.append((peer, connected))

    def payloads(self, channel: int | None = None) -> list[bytes]:
        return [p for _, c, p in self.inbox if channel is None or c == channel]

    def connected_to(self, *others: Member) -> bool:
        assert self.net is not None
        peers = set(self.net.connected_peers())
        return all(o.public in peers for o in others)

    def settled(self) -> bool:
        """No dial, handshake or retiring duplicate in flight: one open connection per peer.

        Checked for every member in one synchronous pass, this means no connection is about to
        change anywhere in the cluster.
        """
        assert self.net is not None
        m = self.net.metrics()
        return m["p2p_handshakes_in_progress"] == 0 and m["p2p_connections_open"] == m["p2p_peers_connected"]

    def __repr__(self) -> str:
        return f"<Member {self.name}>"


class Cluster:
    """``async with Cluster() as c``: members on 127.0.0.1 with kernel-assigned ports."""

    def __init__(self) -> None:
        self.members: list[Member] = []
        #: keys every member permits (impostors are left out)
        self.permitted: set[bytes] = set()

    async def __aenter__(self) -> Cluster:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.gather(*(m.net.stop() for m in self.members if m.net is not None), return_exceptions=True)

    def allowed(self, key: bytes) -> bool:
        return key in self.permitted

    def member(self, name: str, key: SigningKey | None = None, *, impostor: bool = False) -> Member:
        m = Member(name, key or SigningKey.generate())
        if not impostor:
            self.permitted.add(m.public)
        self.members.append(m)
        return m

    async def start(self, m: Member, *, listen: str = "127.0.0.1:0", peers: list[tuple[str, bytes]] = (),
                    **kwargs: Any) -> Member:
        kwargs.setdefault("limits", FAST)
        kwargs.setdefault("reconnect_min_ms", 20)
        kwargs.setdefault("reconnect_max_ms", 200)
        m.net = PeerNetwork(m.key, CHAIN_ID, GENESIS, listen, list(peers), on_message=m.on_message,
                            allowed=self.allowed, on_peer=m.on_peer, **kwargs)
        await m.net.start()
        return m

    async def add(self, name: str, *, impostor: bool = False, **kwargs: Any) -> Member:
        return await self.start(self.member(name, impostor=impostor), **kwargs)

    @staticmethod
    def link(a: Member, b: Member) -> None:
        """Each of ``a`` and ``b`` dials the other (as a devnet's configs do)."""
        assert a.net is not None and b.net is not None
        a.net.add_peer(b.address, b.public)
        b.net.add_peer(a.address, a.public)

    async def mesh(self, *members: Member, timeout: float = 5.0) -> None:
        for i, a in enumerate(members):
            for b in members[i + 1:]:
                self.link(a, b)
        await wait_until("a settled full mesh",
                         lambda: all(m.connected_to(*(o for o in members if o is not m)) and m.settled()
                                     for m in members), timeout)


async def raw_peer(address: str, key: SigningKey, *, expected_key: bytes | None = None,
                   chain_id: str = CHAIN_ID, genesis: bytes = GENESIS):
    """A hand-driven peer: dial ``address`` and authenticate; returns (http session, ws, Session).

    Lets a test send what a correct node never would (malformed or unsealed frames).
    """
    http = aiohttp.ClientSession()
    ws = await http.ws_connect(f"http://{address}{PATH}", max_msg_size=0, compress=0)
    handshake = Handshake(key, chain_id, genesis, initiator=True, permitted=lambda _: True,
                          expected_key=expected_key)
    session: Session = await asyncio.wait_for(perform_handshake(ws, handshake), 5)
    return http, ws, session
