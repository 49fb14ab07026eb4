"""Joining by state sync: a new node fetches a recent snapshot from its peers, checks it against a
header it certified from genesis, and installs it as its store; block sync takes it from there.

The steps (docs/adr/0007-state-sync.md):

1. **Offers.** Ask every connected peer for the newest snapshot it holds; take the highest
   height, from the peers that offer the same manifest (honest nodes at one height offer the
   same bytes). A peer a snapshot behind (it had not yet planned the newest) is asked again for
   up to a second, so that the snapshot can be fetched from it too.
2. **Header.** Fetch the headers from genesis to that height and certify the last one as the
   light client does (:mod:`ledger.light`): links, validator sets followed from the pinned
   genesis, each set change and the target certified by more than 2/3 of the stake of the set
   in force. Headers that do not hold are refused and asked of another peer. An offer that no
   peer's headers certify (a height beyond the chain) is given up, its offerers are asked for
   nothing more, and the join goes back to step 1.
3. **Manifest.** Fetch it; its hash must be the one offered, and it must hold against the
   certified header (:class:`ledger.snapshot.verify.Assembly`).
4. **Chunks.** Fetch them from the offering peers, a few at a time from each; check each on
   arrival against the manifest. A chunk that does not hold is refused, the peer that sent it
   is named in the log and not asked for it again, and the chunk is asked of another peer; a
   peer that sends three bad chunks is asked for nothing more.
5. **Install.** Everything is written to a store beside the node's (``chain.statesync``), the
   tip last; then that store takes the place of the node's store. A crash before that leaves
   the node's store absent, and the next start begins again.

Every wait is bounded; :class:`JoinFailed` says why the node could not join.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from ledger.block import COMMIT, HEADER, Commit, Header
from ledger.encoding import decode
from ledger.errors import CustosError, DecodeError
from ledger.genesis import Genesis
from ledger.light import LightError, Step, Trusted, advance
from ledger.snapshot.verify import Assembly, NotCovered, SnapshotError
from ledger.storage.chainstore import DEFAULT_TREE_BLOCKS, ChainStore
from ledger.storage.kv import LevelKV
from ledger.validators import ValidatorSet
from node.statesync.messages import (
    MAX_HEADERS,
    ChunkReply,
    GetChunk,
    GetHeaders,
    GetManifest,
    GetOffer,
    Headers,
    ManifestReply,
    Message,
    Offer,
)

log = logging.getLogger("custos.statesync")

#: chunk requests outstanding to one peer at a time
IN_FLIGHT_PER_PEER = 2
#: bad chunks after which a peer is asked for nothing more
MAX_BAD_CHUNKS = 3
#: how long after the first offer the other connected peers have to offer theirs, or to catch
#: up with the highest one
OFFER_GRACE_S = 1.0
#: how often a peer whose offer is below the highest is asked again during the grace
BEHIND_ASK_S = 0.2


class JoinFailed(CustosError):
    """The node could not join by state sync (the message says why and what to do)."""

    code = "state-sync-failed"


class NoOffers(JoinFailed):
    """No peer answered with a snapshot in time (none reachable, or none serving)."""

    code = "no-snapshot-offered"


@dataclass
class JoinReport:
    """What a join took: for the log, ``/v1/status`` and the benchmark."""

    height: int = 0
    chunks: int = 0
    bytes: int = 0
    refused_chunks: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"height": self.height, "chunks": self.chunks, "bytes": self.bytes,
                "refused_chunks": self.refused_chunks, "seconds": {k: round(v, 3) for k, v in self.seconds.items()}}


class Joiner:
    """One join. ``send(peer, message)`` and ``peers()`` are the transport's; feed every
    state-sync message that arrives to :meth:`on_message`."""

    def __init__(self, genesis: Genesis, send: Callable[[bytes, Message], object],
                 peers: Callable[[], list[bytes]], *, request_timeout_s: float = 20.0,
                 wait_s: float = 120.0, expected_peers: int = 0) -> None:
        self.genesis = genesis
        self.send = send
        self.peers = peers
        self.request_timeout_s = request_timeout_s
        self.wait_s = wait_s
        self.expected_peers = expected_peers  # the configured ones: offers are awaited from them a while
        self.report = JoinReport()
        self._waiting: dict[tuple, asyncio.Future] = {}
        self._offers: dict[bytes, Offer] = {}
        self._offer_event = asyncio.Event()
        self._bad: dict[bytes, int] = {}  # peer -> bad answers

    # ------------------------------------------------------------------ messages in
    def on_message(self, peer: bytes, msg: Message) -> None:
        if isinstance(msg, Offer):
            self._offers[peer] = msg
            self._offer_event.set()
            return
        if isinstance(msg, Headers):
            key: tuple = ("headers", peer, msg.start)
        elif isinstance(msg, ManifestReply):
            key = ("manifest", peer, msg.height, msg.hash)
        elif isinstance(msg, ChunkReply):
            key = ("chunk", peer, msg.height, msg.hash, msg.index)
        else:
            return
        future = self._waiting.pop(key, None)
        if future is not None and not future.done():
            future.set_result(msg)

    async def _ask(self, peer: bytes, key: tuple, msg: Message):
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._waiting[key] = future
        self.send(peer, msg)
        try:
            return await asyncio.wait_for(future, self.request_timeout_s)
        except TimeoutError:
            return None
        finally:
            self._waiting.pop(key, None)

    # ------------------------------------------------------------------ the join
    async def run(self, directory: Path, *, keep_trying: Callable[[], bool] = lambda: True) -> ChainStore:
        """Join into a new store at ``directory`` (anything there is removed) and return it, open.

        An offer that cannot be completed (its peers went away, or lied about the manifest) is
        given up with everything fetched for it, and the join begins again from the offers."""
        started = time.monotonic()
        while True:
            offer, peers = await self._choose_offer()
            shutil.rmtree(directory, ignore_errors=True)
            kv = LevelKV(directory)
            try:
                t0 = time.monotonic()
                header, commit = await self._certify(offer.height, peers, kv)
                self.report.seconds["headers"] = time.monotonic() - t0
                store = await self._fetch(offer, header, commit, peers, kv)
            except _OfferFailed as exc:
                kv.close()
                log.warning("state sync: the snapshot at height %d failed (%s); asking for offers again",
                            offer.height, exc)
                for peer in peers:
                    self._offers.pop(peer, None)
                if not keep_trying():
                    shutil.rmtree(directory, ignore_errors=True)
                    raise JoinFailed(str(exc)) from None
                continue
            except BaseException:
                kv.close()
                shutil.rmtree(directory, ignore_errors=True)
                raise
            self.report.height = offer.height
            self.report.seconds["total"] = time.monotonic() - started
            return store

    async def _choose_offer(self) -> tuple[Offer, list[bytes]]:
        """The highest offer, once every peer (connected, and configured) offered it, or a second
        went by since the first offer. Peers plan a snapshot each as it commits the height, so a
        join that asks just then finds some a snapshot behind: those are asked again meanwhile,
        and the snapshot is fetched from every peer that caught up (more peers to fetch from in
        parallel, and to turn to when one sends a false chunk)."""
        deadline = time.monotonic() + self.wait_s
        asked: dict[bytes, float] = {}
        first: float | None = None
        behind: set[bytes] = set()  # peers whose offer is below the highest
        while True:
            now = time.monotonic()
            for peer in self.peers():
                again = BEHIND_ASK_S if peer in behind else 2.0
                if self._bad.get(peer, 0) < MAX_BAD_CHUNKS and now - asked.get(peer, 0) > again:
                    asked[peer] = now
                    self.send(peer, GetOffer())
            # an offer may have been taken back meanwhile (the peer dropped its snapshots)
            offers = self._usable_offers()
            if offers:
                first = now if first is None else first
                best = max(offers.values(), key=lambda o: (o.height, sum(1 for x in offers.values() if x == o)))
                connected = [p for p in self.peers() if self._bad.get(p, 0) < MAX_BAD_CHUNKS]
                silent = max(sum(1 for p in connected if p not in offers), self.expected_peers - len(offers))
                behind = {p for p, o in offers.items() if o != best}
                if (silent <= 0 and not behind) or now - first > OFFER_GRACE_S:
                    peers = sorted(p for p, o in offers.items() if o == best)
                    log.info("state sync: snapshot at height %d (%d chunks, manifest %d bytes) offered by %d peers",
                             best.height, best.chunks, best.size, len(peers))
                    return best, peers
            if now > deadline:
                raise NoOffers(f"no peer offered a snapshot within {self.wait_s:.0f} s (peers connected: "
                               f"{len(self.peers())}); check [p2p] peers, or start without state sync to replay "
                               "from genesis")
            self._offer_event.clear()
            try:
                await asyncio.wait_for(self._offer_event.wait(), 0.1)  # peers connect meanwhile: ask them soon
            except TimeoutError:
                pass

    def _usable_offers(self) -> dict[bytes, Offer]:
        return {p: o for p, o in self._offers.items() if o.height > 0 and self._bad.get(p, 0) < MAX_BAD_CHUNKS}

    async def _certify(self, height: int, peers: list[bytes], kv: LevelKV) -> tuple[Header, Commit]:
        """Header ``height`` and its certificate, certified from genesis (:mod:`ledger.light`).
        Every header on the way is kept in ``kv`` with its certificate: the node serves them to
        light clients and to the nodes that join after it."""
        trusted = Trusted.from_genesis(self.genesis)
        candidates = list(peers) + [p for p in self.peers() if p not in peers]
        turn = 0
        found: tuple[Header, Commit] | None = None
        failures = 0
        while found is None:
            if failures > 4 * len(candidates):
                # the offer names a height no peer can certify (beyond the chain, or a fork):
                # its offerers are not asked again, and the other offers are tried
                for p in peers:
                    self._bad[p] = MAX_BAD_CHUNKS
                raise _OfferFailed(f"no peer gave headers up to {height} that certify from genesis")
            peer = candidates[turn % len(candidates)]
            turn += 1
            start = trusted.height + 1
            limit = min(MAX_HEADERS, height - trusted.height)
            reply = await self._ask(peer, ("headers", peer, start), GetHeaders(start, limit))
            if not isinstance(reply, Headers) or not reply.items:
                failures += 1
                continue
            try:
                steps, commits = [], {}
                for item in reply.items:
                    header, commit = HEADER.decode(item.header), COMMIT.decode(item.commit)
                    nxt = None if item.next_validators is None else ValidatorSet.from_wire(decode(item.next_validators))
                    steps.append(Step(header, commit, nxt))
                    commits[header.height] = (header, commit)
                trusted, target = advance(trusted, steps, target=height)
            except (DecodeError, LightError) as exc:
                log.warning("state sync: headers from %s do not hold: %s", peer.hex()[:12], exc)
                self._bad[peer] = self._bad.get(peer, 0) + 1
                failures += 1
                continue
            writes: dict[bytes, bytes] = {}
            for h, (header, commit) in commits.items():
                if h <= trusted.height:  # certified, or linked to a certified header
                    writes.update(ChainStore.header_writes(header, commit))
            await asyncio.get_running_loop().run_in_executor(None, partial(kv.write, writes, sync=False))
            if target is not None:
                found = (target, commits[height][1])
        return found

    async def _fetch(self, offer: Offer, header: Header, commit: Commit, peers: list[bytes],
                     kv: LevelKV) -> ChainStore:
        t0 = time.monotonic()
        assembly = None
        for peer in peers:
            reply = await self._ask(peer, ("manifest", peer, offer.height, offer.hash),
                                    GetManifest(offer.height, offer.hash))
            if not isinstance(reply, ManifestReply) or not reply.data:
                continue
            if hashlib.sha256(reply.data).digest() != offer.hash:
                log.warning("state sync: %s sent a manifest that is not the one it offered", peer.hex()[:12])
                self._bad[peer] = self._bad.get(peer, 0) + 1
                continue
            try:
                assembly = Assembly(header, reply.data)
            except NotCovered as exc:
                raise JoinFailed(str(exc)) from None
            except SnapshotError as exc:
                # every peer that offered these bytes offers the same lie
                for p in peers:
                    self._bad[p] = MAX_BAD_CHUNKS
                raise _OfferFailed(f"its manifest does not hold against the certified header: {exc}") from None
            break
        if assembly is None:
            raise _OfferFailed("no peer sent its manifest")
        self.report.seconds["manifest"] = time.monotonic() - t0
        t0 = time.monotonic()
        await self._chunks(offer, assembly, peers, kv)
        loop = asyncio.get_running_loop()
        first, tip = ChainStore.anchor_writes(self.genesis, header, commit)
        await loop.run_in_executor(None, partial(kv.write, {**assembly.finish(), **first}, sync=True))
        await loop.run_in_executor(None, partial(kv.write, tip, sync=True))
        self.report.seconds["chunks"] = time.monotonic() - t0
        return ChainStore(kv, tree_blocks=DEFAULT_TREE_BLOCKS)

    async def _chunks(self, offer: Offer, assembly: Assembly, peers: list[bytes], kv: LevelKV) -> None:
        loop = asyncio.get_running_loop()
        pending = sorted(assembly.missing)
        refused: dict[int, set[bytes]] = {}  # chunk -> peers that sent a bad copy
        in_flight: dict[bytes, int] = {p: 0 for p in peers}
        done = asyncio.Event()
        errors: list[BaseException] = []

        def usable(peer: bytes, index: int) -> bool:
            return (self._bad.get(peer, 0) < MAX_BAD_CHUNKS and peer in self.peers()
                    and peer not in refused.get(index, set()))

        async def fetch(peer: bytes, index: int) -> None:
            try:
                reply = await self._ask(peer, ("chunk", peer, offer.height, offer.hash, index),
                                        GetChunk(offer.height, offer.hash, index))
                if not isinstance(reply, ChunkReply) or not reply.data:
                    refused.setdefault(index, set()).add(peer)  # gone, or not answering: try another
                    pending.append(index)
                    return
                try:
                    writes = await loop.run_in_executor(None, assembly.chunk, index, reply.data)
                except SnapshotError as exc:
                    log.warning("state sync: chunk %d from %s refused: %s", index, peer.hex()[:12], exc)
                    self.report.refused_chunks += 1
                    self._bad[peer] = self._bad.get(peer, 0) + 1
                    refused.setdefault(index, set()).add(peer)
                    pending.append(index)
                    return
                await loop.run_in_executor(None, partial(kv.write, writes, sync=False))
                self.report.chunks += 1
                self.report.bytes += len(reply.data)
            except BaseException as exc:
                errors.append(exc)
            finally:
                in_flight[peer] -= 1
                done.set()

        tasks: set[asyncio.Task] = set()
        last_progress = time.monotonic()
        while assembly.missing:
            if errors:
                raise errors[0]
            progress = False
            for index in list(pending):
                choices = [p for p in peers if usable(p, index) and in_flight[p] < IN_FLIGHT_PER_PEER]
                if not choices:
                    if not any(usable(p, index) for p in peers):
                        raise _OfferFailed(f"no peer left that sends a true chunk {index}")
                    continue
                # the least busy peer; among equals, chunk i prefers peer i: the load spreads
                peer = min(choices, key=lambda p: (in_flight[p], (peers.index(p) - index) % len(peers)))
                pending.remove(index)
                in_flight[peer] += 1
                task = asyncio.ensure_future(fetch(peer, index))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                progress = True
            if progress:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > self.wait_s:
                raise _OfferFailed("the chunks stopped coming")
            done.clear()
            try:
                await asyncio.wait_for(done.wait(), 1.0)
            except TimeoutError:
                pass
        while any(in_flight.values()):
            done.clear()
            await asyncio.wait_for(done.wait(), self.request_timeout_s + 1)


class _OfferFailed(Exception):
    """This offer cannot be completed; ask for offers again."""


__all__ = ["JoinFailed", "JoinReport", "Joiner", "NoOffers"]
