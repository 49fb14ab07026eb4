"""A peer's gossip is admitted off the event loop: signatures checked, rules left to the proposal,
never handed back to the gossip (no echo), a forged signature refused, and batches that arrive
together checked together, up to a bound."""

from __future__ import annotations

import asyncio

import node.consensus.driver as driver_module
from ledger.crypto.keys import SigningKey
from ledger.encoding import decode, encode, pack
from ledger.errors import BadSignature
from node.app import NodeApp, Submitted
from node.config import ConsensusSection
from node.consensus.driver import ConsensusDriver
from node.p2p.frames import TRANSACTIONS
from tests.ledger.chainkit import Chain


def _crossings(n: int) -> tuple[Chain, list[bytes]]:
    chain = Chain()
    authority, terminal = chain.open_border()
    adult = chain.enrol_child(authority, minor=False)
    return chain, [chain.crossing(terminal, adult).raw for _ in range(n)]


def _forge(raw: bytes) -> bytes:
    envelope = decode(raw)
    envelope["sigs"][1]["sig"] = bytes(64)
    return encode(envelope)


def test_gossip_enters_the_mempool_and_a_forged_signature_does_not():
    chain, raws = _crossings(300)
    app = NodeApp(chain.store, clock_ms=lambda: chain.store.tip.time + 500)
    echoed: list[bytes] = []
    app.on_new_tx(lambda tx: echoed.append(tx.raw))
    forged = _forge(raws[150])
    batch = [*raws[:150], forged, *raws[151:]]
    try:
        outcomes = asyncio.run(app.submit_many(batch, from_peer=True))
    finally:
        app.close()
    assert isinstance(outcomes[150], BadSignature)
    good = [o for i, o in enumerate(outcomes) if i != 150]
    assert all(isinstance(o, Submitted) and o.status == "accepted" for o in good)
    assert len(app.mempool) == 299 and forged not in [tx.raw for tx in app.mempool.reap()]
    assert echoed == []  # a peer's transactions are not gossiped on by this node


def test_gossip_of_transactions_already_held_answers_as_before():
    chain, raws = _crossings(40)
    app = NodeApp(chain.store, clock_ms=lambda: chain.store.tip.time + 500)
    try:
        first = asyncio.run(app.submit_many(raws, from_peer=True))
        again = asyncio.run(app.submit_many([*raws, _forge(raws[0])], from_peer=True))
    finally:
        app.close()
    assert [o.tx_id for o in again[:40]] == [o.tx_id for o in first]  # type: ignore[union-attr]
    assert len(app.mempool) == 40
    # the forged copy differs from the held bytes only in a signature: it is checked, and refused
    assert isinstance(again[40], BadSignature)


class _Silent:
    """The transport of a driver under test: nothing goes out."""

    def send(self, peer_key: bytes, channel: int, payload: bytes) -> bool:
        return True

    def broadcast(self, channel: int, payload: bytes) -> int:
        return 0

    def gossip(self, channel: int, payload: bytes) -> int:
        return 0

    def connected_peers(self) -> list[bytes]:
        return []


def _observer(app: NodeApp, tmp_path) -> ConsensusDriver:
    return ConsensusDriver(app, SigningKey(bytes(32)), ConsensusSection(), tmp_path, _Silent(), observer=True)


async def _until_held(app: NodeApp, n: int) -> None:
    for _ in range(500):
        await asyncio.sleep(0.01)
        if len(app.mempool) == n:
            return


def test_batches_from_several_peers_are_checked_together(tmp_path):
    """Batches that arrive while a check is under way wait and then share one check (one hand-off
    to the checking thread), not one check each."""
    chain, raws = _crossings(60)
    app = NodeApp(chain.store, clock_ms=lambda: chain.store.tip.time + 500)
    checks: list[int] = []
    real = app.submit_many

    async def counted(batch, *, from_peer=False):
        checks.append(len(batch))
        return await real(batch, from_peer=from_peer)

    app.submit_many = counted  # type: ignore[method-assign]
    driver = _observer(app, tmp_path)

    async def deliver() -> None:
        for peer, part in ((b"a", raws[:20]), (b"b", raws[20:40]), (b"c", raws[40:])):
            driver.on_message(peer * 32, TRANSACTIONS, pack(part))
        await _until_held(app, 60)

    try:
        asyncio.run(deliver())
    finally:
        app.close()
    assert len(app.mempool) == 60
    assert checks == [60]


def test_gossip_beyond_the_waiting_bound_is_dropped_and_counted(tmp_path, monkeypatch):
    monkeypatch.setattr(driver_module, "MAX_GOSSIP_QUEUED", 30)
    chain, raws = _crossings(50)
    app = NodeApp(chain.store, clock_ms=lambda: chain.store.tip.time + 500)
    driver = _observer(app, tmp_path)

    async def deliver() -> None:
        driver.on_message(b"a" * 32, TRANSACTIONS, pack(raws[:20]))
        driver.on_message(b"b" * 32, TRANSACTIONS, pack(raws[20:40]))  # 40 would wait: dropped
        driver.on_message(b"c" * 32, TRANSACTIONS, pack(raws[40:]))
        await _until_held(app, 30)

    try:
        asyncio.run(deliver())
    finally:
        app.close()
    held = {tx.raw for tx in app.mempool.reap()}
    assert held == set(raws[:20]) | set(raws[40:])
    assert app.metrics.counters["tx_gossip_dropped"] == 1
