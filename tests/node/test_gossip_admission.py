"""A peer's gossip is admitted off the event loop: signatures checked, rules left to the proposal,
never handed back to the gossip (no echo), and a forged signature refused."""

from __future__ import annotations

import asyncio

from ledger.encoding import decode, encode
from ledger.errors import BadSignature
from node.app import NodeApp, Submitted
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
