"""Benchmark the erasure of one child on a long chain: its cost, and bytes on disk per crossing.

    python scripts/bench_erasure.py [--txs 100000] [--block-txs 500] [--child-crossings 20]
                                    [--chain-dir DIR] [--out FILE]

Builds (or reuses, with ``--chain-dir``) one node's LevelDB store holding ``--txs`` crossings by
adult travellers, among which a child is enrolled, gives a consent, crosses
``--child-crossings`` times spread over the whole chain, and has one crossing approved by one
guardian and denied by the other. The built store is copied, and on the copy the node's own
code erases the child: the council's order is executed and committed as a block
(:class:`node.app.NodeApp`), and :class:`node.erasure.Purger` purges the child (stubs written
in one batch, the store compacted and reopened, every file checked).

Measured in the same run, as baselines: committing one block of ``--block-txs`` crossings, and a
full compaction of the store without any erasure. Reported: the time from the order's commit to
the end of the purge, by step (only the reopen holds the event loop), and the bytes on disk per
crossing before and after (both after a full compaction, so LevelDB's unmerged tables do not
count).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchkit import write_result

from ledger.block import PRECOMMIT, Commit, is_stub, sign_vote
from ledger.chain import build_block
from ledger.crypto.keys import SigningKey
from ledger.genesis import Genesis, GenesisValidator
from ledger.privacy.tags import child_tag
from ledger.state.records import DEFAULT_PARAMS, Council
from ledger.state.view import prefix_end
from ledger.storage.chainstore import ChainStore, subject_key
from ledger.storage.kv import LevelKV
from ledger.tx import bodies as b
from ledger.tx.envelope import make_tx
from node.api.index import RequestIndex
from node.app import NodeApp
from node.erasure import Purger

CHAIN_ID = "custos-bench-erasure"
T0 = 1_700_000_000_000
DAY_MS = 86_400_000
COUNCIL = [SigningKey(bytes([i + 1]) * 32) for i in range(3)]
VALIDATOR = SigningKey(b"\x07" * 32)
GENESIS = Genesis(chain_id=CHAIN_ID, genesis_time=T0,
                  council=Council(threshold=2, members=tuple(sorted(k.public for k in COUNCIL))),
                  validators=(GenesisValidator(VALIDATOR.public, 100, "bench"),), params=DEFAULT_PARAMS)


def key(name: str) -> SigningKey:
    """A key derived from its name: a reused chain and a new run sign with the same keys."""
    return SigningKey(hashlib.sha256(b"custos-bench-erasure/" + name.encode()).digest())


TERMINALS = [key(f"terminal {i}") for i in range(4)]
ADULTS = [(key(f"adult {i}"), hashlib.sha256(f"adult {i}".encode()).digest()[:16]) for i in range(50)]


def crossings_block(store: ChainStore, first: int, n: int, nonce) -> list:
    """``n`` adults' crossings (permitted at once), at the next block's time."""
    when = store.tip.time + 1_000
    out = []
    for i in range(first, first + n):
        bio, identity = ADULTS[i % len(ADULTS)]
        terminal = TERMINALS[i % len(TERMINALS)]
        body = b.CrossingRequest(terminal.public, identity, "MD-LEU", b.EXIT if i % 2 else b.ENTRY, when, "RO", None)
        out.append(make_tx(b.CROSSING, body, next(nonce), [terminal, bio], CHAIN_ID))
    return out


def commit(store: ChainStore, txs: list, time_ms: int | None = None):
    """Propose, execute and store one block with one validator's certificate."""
    last = store.commit(store.height) if store.height else None
    executed, rejected = build_block(store, txs, time=time_ms or store.tip.time + 1_000, proposer=VALIDATOR.public,
                                     last_commit=last)
    assert not rejected, [(tx.kind, str(e)) for tx, e in rejected]
    vote = sign_vote(VALIDATOR, CHAIN_ID, PRECOMMIT, executed.height, 0, executed.hash)
    return executed, Commit.from_votes([vote])


def build(directory: Path, crossings: int, block_txs: int, child_crossings: int) -> dict:
    store = ChainStore.open(directory / "chain", GENESIS)
    nonce = iter(range(1, 10**9))

    def tx(kind, body, signers):
        return make_tx(kind, body, next(nonce), signers, CHAIN_ID)

    def store_block(txs):
        executed, certificate = commit(store, txs)
        store.commit_block(executed, certificate)

    authority, terminals = key("authority"), TERMINALS
    store_block([tx(b.GOV_REGISTER_AUTHORITY, b.RegisterAuthority(authority.public, "registry"), COUNCIL[:2]),
                 tx(b.GOV_REGISTER_POST, b.RegisterPost("MD-LEU", "Leuseni"), COUNCIL[:2])]
                + [tx(b.GOV_REGISTER_TERMINAL, b.RegisterTerminal(t.public, "MD-LEU", f"lane {i}"), COUNCIL[:2])
                   for i, t in enumerate(terminals)])
    store_block([tx(b.ENROL, b.Enrol(authority.public, identity, bio.public, 0, (SigningKey.generate().public,),
                                     b.Policy(1, 3_600_000, False)), [authority, bio]) for bio, identity in ADULTS])
    # the child: a minor with two guardians, a consent for every planned crossing
    child_bio, child_id = SigningKey.generate(), os.urandom(16)
    guardians = sorted([SigningKey.generate(), SigningKey.generate()], key=lambda k: k.public)
    majority_day = T0 // DAY_MS + 10 * 365
    store_block([tx(b.ENROL, b.Enrol(authority.public, child_id, child_bio.public, majority_day,
                                     tuple(g.public for g in guardians), b.Policy(2, 3_600_000, True)),
                    [authority, child_bio])])
    store_block([tx(b.GRANT_CONSENT, b.GrantConsent(child_id, T0, T0 + 30 * DAY_MS, b.EXIT, "RO", None,
                                                    min(100, max(1, child_crossings))), guardians)])
    blocks = -(-crossings // block_txs)
    child_every = max(1, blocks // max(1, child_crossings))
    made, block_no, child_made = 0, 0, 0
    started = time.perf_counter()
    while made < crossings:
        n = min(block_txs, crossings - made)
        batch = crossings_block(store, made, n, nonce)
        if block_no % child_every == 0 and child_made < child_crossings:
            body = b.CrossingRequest(terminals[0].public, child_id, "MD-LEU", b.EXIT, batch[0].body.event_time, "RO",
                                     None)
            batch[-1] = tx(b.CROSSING, body, [terminals[0], child_bio])  # under the consent: permitted
            child_made += 1
        store_block(batch)
        made += n
        block_no += 1
        print(f"\rbuilding: {made:,}/{crossings:,} crossings ({time.perf_counter() - started:.0f} s)", end="",
              file=sys.stderr)
    print(file=sys.stderr)
    # one more crossing, outside the consent (an entry): pending, approved by one, denied by the other
    pending = tx(b.CROSSING, b.CrossingRequest(terminals[1].public, child_id, "MD-LEU", b.ENTRY,
                                               store.tip.time + 1_000, "MD", None), [terminals[1], child_bio])
    store_block([pending])
    store_block([tx(b.DECISION, b.GuardianDecision(guardians[0].public, pending.id, child_id, b.APPROVE, 0),
                    [guardians[0]]),
                 tx(b.DECISION, b.GuardianDecision(guardians[1].public, pending.id, child_id, b.DENY, 1),
                    [guardians[1]])])
    info = {"height": store.height, "crossings": crossings + 1, "child_identity": child_id.hex(),
            "child_txs": 2 + child_made + 3, "next_nonce": next(nonce)}
    store.close()
    return info


def disk_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


async def erase(directory: Path, identity: bytes) -> dict:
    """The node's own path: the order executed and committed by NodeApp, purged by Purger."""
    store = ChainStore.open(directory / "chain", GENESIS)
    app = NodeApp(store, clock_ms=lambda: store.tip.time + 500)
    purger = Purger(app)
    index = RequestIndex.open(directory / "reads-index", store)
    index.catch_up()
    app.on_commit(index.on_commit)
    worker = asyncio.create_task(purger.run())
    try:
        order = make_tx(b.GOV_ERASE, b.EraseIdentity(child_tag(identity), os.urandom(32), 0), 1, COUNCIL[:2],
                        CHAIN_ID)
        started = time.perf_counter()
        executed, certificate = commit(store, [order])
        app.commit(executed.hash, certificate, executed.block)
        committed_ms = (time.perf_counter() - started) * 1000
        while purger.purged < 1 or purger.pending:
            if worker.done():
                worker.result()
            await asyncio.sleep(0.005)
        total_ms = (time.perf_counter() - started) * 1000
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        await purger.close()
        app.close()
    stats = purger.last
    assert stats is not None
    stubs = 0
    for height in range(1, store.height + 1):
        block = store.block(height)
        assert block is not None
        stubs += sum(1 for entry in block.txs if is_stub(entry))
    left = list(store.kv.iterate(subject_key(identity), prefix_end(subject_key(identity))))
    index.close()
    store.close()
    assert stubs == stats.stubs and not left
    return {"order_committed_ms": round(committed_ms, 1), "total_ms": round(total_ms, 1), **stats.to_json(),
            "check_ms": round(total_ms - committed_ms - stats.batch_ms - stats.compact_ms - stats.reopen_ms, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--txs", type=int, default=100_000, help="crossings in the chain (default 100000)")
    parser.add_argument("--block-txs", type=int, default=500, help="crossings per block (default 500)")
    parser.add_argument("--child-crossings", type=int, default=20, help="the child's crossings, spread (default 20)")
    parser.add_argument("--chain-dir", type=Path, help="build the chain here once and reuse it on later runs")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()

    built = args.chain_dir or Path(f"/tmp/custos-bench-erasure-{args.txs}-{args.block_txs}-{args.child_crossings}")
    marker = built / "bench.json"
    info = json.loads(marker.read_text()) if marker.exists() else {}
    if info.get("genesis") != GENESIS.hash.hex():  # none yet, or built by another version
        shutil.rmtree(built, ignore_errors=True)
        built.mkdir(parents=True)
        info = build(built, args.txs, args.block_txs, args.child_crossings)
        info["genesis"] = GENESIS.hash.hex()
        marker.write_text(json.dumps(info))
    work = built.with_name(built.name + ".run")
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(built, work, ignore=shutil.ignore_patterns("bench.json", "LOCK"))
    try:
        store = ChainStore.open(work / "chain", GENESIS)
        index = RequestIndex.open(work / "reads-index", store)
        index.catch_up()
        # baseline 1: one more block of crossings, executed and stored synchronously
        batch = crossings_block(store, 0, args.block_txs, iter(range(info["next_nonce"], 10**9)))
        started = time.perf_counter()
        executed, certificate = commit(store, batch)
        store.commit_block(executed, certificate)
        index.on_commit(executed)
        block_ms = (time.perf_counter() - started) * 1000
        # baseline 2: a full compaction, which also brings the store to its compacted size
        started = time.perf_counter()
        store.compact_files()
        compaction_ms = (time.perf_counter() - started) * 1000
        index.close()
        derived = LevelKV(work / "reads-index")  # derived data beside the chain, compacted too
        derived.compact()
        derived.close()
        store.close()
        before = disk_bytes(work)
        erasure = asyncio.run(erase(work, bytes.fromhex(info["child_identity"])))
        after = disk_bytes(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    crossings = info["crossings"] + args.block_txs
    result = {
        "chain": {"dir": str(built), "height": info["height"], "crossings": crossings, "child_txs": info["child_txs"]},
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "load_average": os.getloadavg()},
        "bytes_on_disk": {"before": before, "after": after, "per_crossing_before": round(before / crossings, 1),
                          "per_crossing_after": round(after / crossings, 1)},
        "erasure": erasure,
        "baselines": {"block_of_crossings": args.block_txs, "commit_block_ms": round(block_ms, 1),
                      "full_compaction_ms": round(compaction_ms, 1)},
        "ratios": {"erasure_total_to_block_commit": round(erasure["total_ms"] / block_ms, 2),
                   "erasure_compaction_to_full_compaction": round(erasure["compact_ms"] / compaction_ms, 2)},
        "event_loop_held_ms": erasure["reopen_ms"],
    }
    write_result(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
