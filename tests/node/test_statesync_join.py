"""The joining side of state sync against peers played in-process, each lie made every time:
a peer that offers a height beyond the chain, and one that sends headers its certificates do
not sign. (``test_state_sync.py`` joins through real processes; there the order in which
peers answer is the network's.)"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import pytest

from ledger.snapshot.make import chunk_bytes, plan
from ledger.storage.chainstore import ChainStore
from node.statesync.join import Joiner
from node.statesync.messages import (
    ChunkReply,
    GetChunk,
    GetHeaders,
    GetManifest,
    GetOffer,
    Headers,
    ManifestReply,
    Offer,
)
from node.statesync.server import headers_reply
from tests.ledger.chainkit import Chain

HONEST = [bytes([i]) * 32 for i in (0x51, 0x62)]
LIAR = bytes(32)  # the lowest key: asked first wherever peers are taken in key order


@pytest.fixture(scope="module")
def chain() -> Chain:
    chain = Chain()
    authority, terminal = chain.open_border()
    for _ in range(3):
        child = chain.enrol_child(authority)
        chain.pending_crossing(terminal, child)
    return chain


class Peers:
    """Every peer answers from ``chain``'s store and its snapshot at the tip; the liar lies
    in the way named."""

    def __init__(self, chain: Chain, lie: str) -> None:
        self.store = chain.store
        self.view = chain.store.raw_view()
        self.plan = plan(self.view, chain.store.header(chain.store.height))
        self.lie = lie
        self.joiner: Joiner | None = None
        self.asked: dict[bytes, list[object]] = {}

    def send(self, peer: bytes, msg: object) -> None:
        reply = self.answer(peer, msg)
        if reply is not None:
            assert self.joiner is not None
            asyncio.get_running_loop().call_soon(self.joiner.on_message, peer, reply)

    def answer(self, peer: bytes, msg: object) -> object | None:
        p, liar = self.plan, peer == LIAR
        self.asked.setdefault(peer, []).append(msg)
        if isinstance(msg, GetOffer):
            if peer == HONEST[0] and self.lie == "behind" and len(self.asked[peer]) == 1:
                # asked just before it planned the snapshot at the tip: it offers the one before
                return Offer(p.manifest.height - 1, bytes(range(32)), len(p.encoded), p.chunk_count)
            height = p.manifest.height + (1000 if liar and self.lie == "offer" else 0)
            return Offer(height, p.hash, len(p.encoded), p.chunk_count)
        if isinstance(msg, GetHeaders):
            headers = headers_reply(self.store, msg)
            if liar and self.lie == "headers" and len(headers.items) > 1:
                # each header carried with its predecessor's certificate
                items = headers.items
                headers = Headers(msg.start, tuple(replace(item, commit=items[i - 1].commit) if i else item
                                                   for i, item in enumerate(items)))
            return headers
        if isinstance(msg, GetManifest):
            return ManifestReply(msg.height, msg.hash, p.encoded if msg.hash == p.hash else b"")
        if isinstance(msg, GetChunk):
            return ChunkReply(msg.height, msg.hash, msg.index, chunk_bytes(self.view, p, msg.index))
        return None


@contextmanager
def joined(chain: Chain, lie: str, tmp_path) -> Iterator[tuple[ChainStore, Peers]]:
    """The store a node joined into from the peers, open while the block runs."""
    peers = Peers(chain, lie)
    joiner = Joiner(chain.genesis, peers.send, lambda: [LIAR, *HONEST], request_timeout_s=2, wait_s=20)
    peers.joiner = joiner

    async def go() -> ChainStore:
        return await asyncio.wait_for(joiner.run(tmp_path / "joined"), 30)

    try:
        store = asyncio.run(go())
        try:
            assert store.height == chain.store.height
            assert store.tip.state_root == chain.store.header(chain.store.height).state_root
            yield store, peers
        finally:
            store.close()
    finally:
        peers.view.close()


def test_an_offer_beyond_the_chain_is_given_up_and_the_honest_one_taken(chain, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="custos.statesync")
    with joined(chain, "offer", tmp_path) as (_store, peers):
        lie = peers.plan.manifest.height + 1000
        assert f"no peer gave headers up to {lie} that certify from genesis" in caplog.text
        assert f"snapshot at height {lie} failed" in caplog.text


def test_a_peer_a_snapshot_behind_is_asked_again_and_the_snapshot_fetched_from_every_peer(chain, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="custos.statesync")
    with joined(chain, "behind", tmp_path) as (_store, peers):
        assert f"snapshot at height {peers.plan.manifest.height} " in caplog.text
        assert "offered by 3 peers" in caplog.text
        late = peers.asked[HONEST[0]]
        assert sum(isinstance(m, GetOffer) for m in late) >= 2
        assert any(isinstance(m, GetChunk) for m in late), "the peer that caught up is asked for chunks too"


def test_headers_their_certificates_do_not_sign_are_refused_and_asked_of_another_peer(chain, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="custos.statesync")
    with joined(chain, "headers", tmp_path) as (store, _peers):
        assert f"headers from {LIAR.hex()[:12]} do not hold" in caplog.text
        for height in range(1, chain.store.height + 1):  # every header kept is the chain's
            assert store.header(height) == chain.store.header(height)
