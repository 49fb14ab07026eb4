"""A node purges an erased child from every copy it keeps: blocks, indexes, mempool, events, files.

In one process, over real LevelDB stores: the chain (built with the ledger's chain kit), the
request index, the mempool and the event streams of a :class:`node.app.NodeApp`, with the
:class:`node.erasure.Purger` the node runs. The real-process story is in test_erasure_story.py.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from ledger.block import is_stub
from ledger.crypto.keys import SigningKey
from ledger.errors import Erased
from ledger.privacy.tags import child_tag
from ledger.storage.chainstore import ChainStore
from ledger.storage.erasure import apply_purge, plan_purge
from node.api.events import GUARDIAN, TERMINAL, EventStreams, Subscriber
from node.api.identify import Identify
from node.api.index import RequestIndex
from node.api.policy import Policy
from node.api.proofs import Snapshots
from node.app import NodeApp
from node.client.cards import enrol_scans, new_pseudonym_key, synthetic_eye
from node.client.gallery_file import GalleryFile
from node.erasure import Purger
from tests.ledger.chainkit import Chain
from tests.scankit import files_holding


def needles_of(child, txs) -> dict[str, bytes]:
    """The child's plaintext as the chain held it: identity, commitment, guardians, companion,
    and every signature of its transactions (each proves its envelope is still somewhere)."""
    out = {"identity": child.identity, "commitment": child.biometric.public, "companion": b"\x42" * 16}
    out.update({f"guardian {i}": g.public for i, g in enumerate(child.guardians)})
    for tx in txs:
        for n, sig in enumerate(tx.sigs):
            out[f"{tx.kind} signature {n}"] = sig.sig
    return out


class Node:
    """What the node process wires together, minus the network: store, app, index, events, purger."""

    def __init__(self, directory: Path, chain: Chain) -> None:
        self.chain = chain
        self.app = NodeApp(chain.store, clock_ms=lambda: chain.store.tip.time + 500)
        self.purger = Purger(self.app)
        self.index = RequestIndex.open(directory / "reads-index", chain.store)
        self.index.catch_up()
        self.app.on_commit(self.index.on_commit)
        self.events = EventStreams(self.app, None, Policy(self.app), None)  # type: ignore[arg-type]
        self.snapshots = Snapshots(self.app)  # proofs at recent heights: held from the start
        self.app.on_commit(self.snapshots.take)
        self.purger.release_snapshots.append(self.snapshots.release)
        self.purger.retake_snapshots.append(self.snapshots.take)
        self.wal_cuts = 0

        def cut() -> bool:
            self.wal_cuts += 1
            return True

        self.purger.forget_decided_inputs = cut

    def commit(self, *txs):
        executed, rejected = self.chain.propose(list(txs))
        assert not rejected, rejected
        return self.app.commit(executed.hash, self.chain.precommits(executed), executed.block)

    async def purged(self, count: int, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.purger.purged < count or self.purger.pending:
            assert time.monotonic() < deadline, "the purge did not finish"
            await asyncio.sleep(0.02)

    def close(self) -> None:
        self.snapshots.close()
        self.app.close()
        self.index.close()
        self.chain.store.close()


def test_the_purger_removes_the_child_from_blocks_indexes_mempool_events_and_every_file(tmp_path):
    chain = Chain(path=tmp_path / "chain")
    authority, terminal = chain.open_border()
    child, history = chain.child_with_history(authority, terminal)
    other, _ = chain.child_with_history(authority, terminal)

    async def story() -> None:
        node = Node(tmp_path, chain)
        worker = asyncio.create_task(node.purger.run())
        try:
            # the terminal and a guardian watching, slow to read: the child's events wait in queues
            watcher = Subscriber(TERMINAL, terminal.public, (chain.height, 0), 100)
            guardian = Subscriber(GUARDIAN, child.guardians[0].public, (chain.height, 0), 100)
            for sub in (watcher, guardian):
                node.events._add(sub)
            pending = chain.crossing(terminal, child)
            node.commit(pending)
            mine = [*history, pending]
            assert watcher.queue.qsize() == guardian.queue.qsize() == 1
            # one pending transaction checked here (durably accepted), one gossiped by a peer
            checked = chain.approve(child.guardians[0], pending, child)
            gossiped = chain.crossing(terminal, child, direction="entry")
            node.app.submit(checked.raw)
            node.app.submit(gossiped.raw, from_peer=True)
            await node.app.durable()
            waiting = asyncio.create_task(node.app.wait_commit(gossiped.id, 30))
            mine += [checked, gossiped]
            assert [seq for seq, _ in chain.store.accepted()]
            chain.store.kv.reopen()  # what is written so far sits in tables, not just LevelDB's log
            node.index.kv.reopen()
            needles = needles_of(child, mine)
            assert files_holding(tmp_path, needles)

            node.commit(chain.erase(child))
            await node.purged(1)
            with pytest.raises(Erased):
                await waiting
            assert len(node.app.mempool) == 0 and list(chain.store.accepted()) == []
            assert watcher.queue.empty() and watcher.finished is None
            assert guardian.finished == "forbidden"  # its only ward is gone
            assert b"identity" not in b"".join(guardian.queue.get_nowait() for _ in range(guardian.queue.qsize()))
            assert all(n.identity != child.identity for _, ns in node.events._ring for n in ns)
            assert list(node.index.by_identity(child.identity)) == []
            assert list(node.index.by_identity(other.identity))  # nobody else is touched
            assert not chain.store.pending_erasures() and not chain.store.compaction_due
            assert node.wal_cuts == 1
            stubs = [(h, p) for h in range(1, chain.height + 1)
                     for p, entry in enumerate(chain.store.block(h).txs) if is_stub(entry)]
            assert len(stubs) == len(mine) - 2  # the two pending ones never committed
            status = node.purger.status()["erasure"]
            assert status["pending"] == 0 and status["purged"] == 1 and status["last"]["stubs"] == len(stubs)
            assert files_holding(tmp_path, needles) == []
            # an index rebuilt from the blocks skips the stubs
            rebuilt = RequestIndex.memory(chain.store)
            rebuilt.catch_up()
            assert list(rebuilt.by_identity(child.identity)) == []
            erased_ids = {tx.id for tx in mine}
            assert list(rebuilt.by_terminal(terminal.public)) == [
                rid for rid in node.index.by_terminal(terminal.public) if rid not in erased_ids]
            node.commit(chain.crossing(terminal, other))  # the chain goes on
        finally:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
            await node.purger.close()
            node.close()

    asyncio.run(story())


def test_a_purge_a_crash_interrupted_finishes_at_the_next_start(tmp_path):
    chain = Chain(path=tmp_path / "chain")
    authority, terminal = chain.open_border()
    child, history = chain.child_with_history(authority, terminal)
    chain.commit(chain.erase(child))  # the node died right after storing the erasing block
    chain.store.close()
    chain.store = ChainStore.open(tmp_path / "chain", chain.genesis)
    node = Node(tmp_path, chain)
    try:
        assert chain.store.pending_erasures() == [(child_tag(child.identity), child.identity)]
        assert files_holding(tmp_path, needles_of(child, history))
        node.purger.resume()
        assert not chain.store.pending_erasures() and not chain.store.compaction_due
        assert files_holding(tmp_path, needles_of(child, history)) == []
    finally:
        node.close()


def test_a_crash_between_the_purge_batch_and_the_compaction_compacts_at_the_next_start(tmp_path):
    chain = Chain(path=tmp_path / "chain")
    authority, terminal = chain.open_border()
    child, history = chain.child_with_history(authority, terminal)
    chain.store.kv.reopen()
    chain.commit(chain.erase(child))
    tag = child_tag(child.identity)
    apply_purge(chain.store, plan_purge(chain.store, tag, child.identity))
    chain.store.close()  # the deleted values are still in LevelDB's files
    chain.store = ChainStore.open(tmp_path / "chain", chain.genesis)
    assert chain.store.compaction_due
    node = Node(tmp_path, chain)
    try:
        node.purger.resume()
        assert not chain.store.compaction_due
        assert files_holding(tmp_path / "chain", needles_of(child, history)) == []
    finally:
        node.close()


def test_an_authoritys_identification_gallery_forgets_the_erased_child(tmp_path):
    authority = SigningKey.generate()
    gallery = GalleryFile.open(tmp_path / "gallery.bin", authority)
    erased, kept = os.urandom(16), os.urandom(16)
    for n, identity in enumerate((erased, kept)):
        gallery.add(identity, enrol_scans(synthetic_eye(n, 1)[:1]), new_pseudonym_key())
    identify = Identify(None, None, None, tmp_path / "gallery.bin", authority)  # type: ignore[arg-type]
    assert identify.forget(erased) and not identify.forget(erased)
    assert list(GalleryFile.open(tmp_path / "gallery.bin", authority).gallery.ids()) == [kept]
