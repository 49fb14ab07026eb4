"""A validator killed with SIGKILL in the middle of a stream of submissions loses nothing it
acknowledged (it dies holding the last blocks' tree nodes in memory, and rebuilds them from its
tree journal), and its chain still verifies block by block from genesis."""

from __future__ import annotations

import asyncio
import random
import signal
import time

from ledger.chain import execute_block
from ledger.storage.chainstore import ChainStore
from ledger.storage.kv import LevelKV
from ledger.storage.treejournal import JOURNAL_NAME, TreeJournal
from node.client.http import NodeClient, NodeUnreachable
from node.genesis_file import load_genesis
from tests.node.netkit import Net, adult_traveller, run


def replay_from_genesis(net: Net, name: str) -> int:
    """Re-execute every stored block in a fresh store: each header field and certificate checks."""
    genesis = load_genesis(net.dir / "genesis.toml")
    stored = ChainStore.open(net.dir / name / "chain")
    fresh = ChainStore.memory(genesis)
    try:
        for height in range(1, stored.height + 1):
            block = stored.block(height)
            commit = stored.commit(height)
            executed = execute_block(fresh, block)
            commit.check(fresh.chain.chain_id, executed.changes.validators, height=height, block=block.hash)
            fresh.commit_block(executed, commit)
        assert fresh.tip == stored.tip
        return stored.height
    finally:
        stored.close()


def held_blocks(net: Net, name: str) -> tuple[int | None, list[int]]:
    """What a stopped node's store says of the tree nodes it held in memory: the height the
    nodes on disk are at (None: all written) and the heights in its tree journal."""
    directory = net.dir / name / "chain"
    kv = LevelKV(directory, create=False)
    try:
        raw = kv.get(b"J")
    finally:
        kv.close()
    entries = TreeJournal(directory / JOURNAL_NAME).read()
    return (None if raw is None else int.from_bytes(raw, "big")), [height for height, _, _ in entries]


def test_sigkill_mid_stream_loses_no_acknowledged_transaction(tmp_path):
    net = Net(tmp_path / "net", validators=1, heartbeat_ms=300)
    net.start()
    try:
        t = net.txs
        traveller = adult_traveller(net, "MD-01")
        acknowledged: list[bytes] = []

        async def stream(stop_after_s: float) -> None:
            async with NodeClient(net.url(), timeout_s=2) as c:
                for tx in traveller.setup:
                    await c.submit(tx.raw, wait=True)
                deadline = time.monotonic() + stop_after_s
                while time.monotonic() < deadline:
                    tx = traveller.crossing(t)
                    try:
                        r = await c.submit(tx.raw)
                    except NodeUnreachable:
                        return  # the node is dead: whatever it acknowledged must survive
                    assert r["status"] in ("accepted", "committed")
                    acknowledged.append(tx.id)

        async def kill_later(delay: float) -> None:
            await asyncio.sleep(delay)
            net.kill("val-0", signal.SIGKILL)

        async def both():
            await asyncio.gather(stream(30), kill_later(random.uniform(2.0, 4.0)))

        run(both())
        assert len(acknowledged) > 50, "the stream should have been running when the node died"
        base, journalled = held_blocks(net, "val-0")
        assert base is not None and journalled, "the node should have died holding blocks' tree nodes"
        net.start("val-0")  # rebuilds them from the tree journal

        async def all_committed() -> list[bytes]:
            async with NodeClient(net.url()) as c:
                missing = list(acknowledged)
                deadline = time.monotonic() + 60
                while missing and time.monotonic() < deadline:
                    still = []
                    for tx_id in missing:
                        doc = await c.tx(tx_id)
                        if doc["status"] != "committed":
                            still.append(tx_id)
                    missing = still
                    if missing:
                        await asyncio.sleep(0.5)
                return missing

        missing = run(all_committed())
        assert missing == [], f"{len(missing)} acknowledged transactions were lost"
    finally:
        net.stop()
    height = replay_from_genesis(net, "val-0")
    assert height >= 2
