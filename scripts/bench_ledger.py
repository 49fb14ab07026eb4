#!/usr/bin/env python3
"""How fast one node applies blocks of crossing transactions, and what a crossing costs on disk.

Builds a chain in a real LevelDB store: council setup, one post and terminal, a population of
enrolled children (``--children``, 5,000 by default: with 500, each crossing twice a block, the
global tree stays small and the store absorbs most tree rewrites, which flatters the state
map), then blocks of crossing requests (half adults, permitted at once; half minors, pending):
``--warmup`` of them applied untimed to every store, then ``--blocks`` timed. The warm-up
makes the timed blocks those of a chain that has run for a while (children who crossed before,
trees and a store past their first growth), where the state map costs more than in a chain's
first blocks: in one run of 40 timed blocks (with the tree's Python walk), the map took 24.3 us
a crossing and 12.8% of the validator's rate after 40 blocks of warm-up, against 20.3 us and
9.5% with none. Measures, in the same run:

* raw Ed25519 verifications per second (the floor every node pays: two signatures a crossing),
  in bursts of 1,000 before each timed run, so a busy machine slows baseline and paths alike;
* the proposer's path: ``build_block`` + ``commit_block`` (signatures checked at admission);
* a validator's path: ``execute_block`` with signature checks + ``commit_block``, on one thread;
* the validator's path as a node runs it: the same, with the signatures checked in worker
  processes ahead of the execution (``node/sigcheck.py``; one fewer than the cores, the
  executing thread taking tasks too); ratios to the raw rate count signatures (two a crossing),
  and ``node_validator_cores`` says how many cores that path may use;
* the authenticated state map's share of it: the time spent in
  ``ledger.state.authenticated.commit`` (tree updates) per crossing, and the validator path's
  rate on a second store whose tree update is skipped (a benchmark-only stand-in that returns
  the header's root), each block applied to both back to back, in alternating order, so both
  see the same load; the share lost is the median over blocks of 1 - (time without the tree) /
  (time with it), with its quartiles, and the same from the totals (each run starts after a
  garbage collection, and the prebuilt blocks are frozen out of the collector's passes, so that
  a full collection does not land in one run of a pair and not the other);
* where the validator's time per crossing goes: its two signature checks and the decoding of
  the transaction, each timed alone on the block's transactions, and the rest (the rules, the
  state tree, the store) as the difference;
* bytes on disk per crossing after compaction (block, log nodes, tx index, state).

Writes JSON to stdout or ``--out``. Example::

    python scripts/bench_ledger.py --warmup 40 --blocks 40 --block-txs 1000 --out bench-results/ledger.json
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from benchkit import CHAIN, T0, BenchWorld, Proposer, apply_block, timed_tree_commit, write_result

from ledger.chain import execute_block
from ledger.crypto.keys import verify_raw
from ledger.state import machine, smt
from ledger.storage.chainstore import ChainStore
from ledger.tx.envelope import decode_tx
from node.sigcheck import SigChecker


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blocks", type=int, default=40, help="timed blocks of crossings")
    ap.add_argument("--warmup", type=int, default=40,
                    help="blocks of crossings applied untimed first, so that the timed ones meet a chain whose "
                         "children have crossed before (their trees and the store past their first growth)")
    ap.add_argument("--block-txs", type=int, default=1000)
    ap.add_argument("--children", type=int, default=5000)
    ap.add_argument("--python-tree", action="store_true",
                    help="update the state tree in Python even where its C walk is built (to compare the two)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.blocks < 2 or min(args.block_txs, args.children) < 1 or args.warmup < 0:
        ap.error("--blocks must be at least 2 (the share is taken over block pairs), --block-txs and --children "
                 "at least 1, --warmup at least 0")
    if args.python_tree:
        smt.NATIVE = None

    world = BenchWorld()
    terminal = world.terminal
    children = world.children(args.children, adults="half")

    # ---- raw Ed25519 verification rate (the baseline): measured in bursts between the blocks'
    # runs, so that a busy machine slows the baseline and the paths alike
    sample = terminal.sign_raw(b"m" * 80)
    raw = {"n": 0, "s": 0.0}

    def raw_burst(n: int = 1000) -> None:
        t = time.perf_counter()
        for _ in range(n):
            verify_raw(terminal.public, b"m" * 80, sample)
        raw["s"] += time.perf_counter() - t
        raw["n"] += n

    setup = world.setup_blocks(children)
    blocks_txs = world.crossing_blocks(children, args.warmup + args.blocks, args.block_txs)

    # The prebuilt blocks are a benchmark's own heap (tens of thousands of objects a node would
    # never hold at once): frozen, so that the collector's full passes do not scan them inside
    # whichever timed run they happen to fall in.
    gc.collect()
    gc.freeze()
    work = Path(tempfile.mkdtemp(prefix="custos-bench-"))
    try:
        proposer = ChainStore.open(work / "proposer", world.genesis)
        follower = ChainStore.open(work / "follower", world.genesis)
        bare = ChainStore.open(work / "follower-without-tree", world.genesis)
        noded = ChainStore.open(work / "follower-as-node", world.genesis)
        chain = Proposer(world, proposer)
        checker = SigChecker()
        checker.start()
        real_commit = machine.commit
        in_tree = [0.0]
        timed_commit = timed_tree_commit(in_tree)

        for i, txs in enumerate(setup):
            ex = chain.commit(txs, T0 + 1000 + i)
            c = chain.last
            for store in (follower, bare, noded):
                store.commit_block(execute_block(store, ex.block), c)
        size_before = du(work / "proposer")

        build_s = validate_s = bare_s = node_s = decode_s = verify_s = 0.0
        lost_per_block = []  # 1 - (time without the tree) / (time with it), block by block
        for b, txs in enumerate(blocks_txs):
            if b < args.warmup:
                ex = chain.commit(txs, T0 + 1000 * (b + 2))
                for store in (follower, bare, noded):
                    apply_block(store, ex.block, chain.last, signatures=False, state_map=store is not bare)
                continue
            t = time.perf_counter()
            ex = chain.commit(txs, T0 + 1000 * (b + 2))
            c = chain.last
            build_s += time.perf_counter() - t
            runs = [(follower, timed_commit), (bare, real_commit), (noded, real_commit)]
            with_tree = without_tree = 0.0
            for store, commit_fn in runs if b % 2 else reversed(runs):
                raw_burst()
                gc.collect()  # each run starts with nothing to collect, left by the one before
                machine.commit = commit_fn  # type: ignore[assignment]
                t = time.perf_counter()
                if store is noded:
                    ahead = checker.ahead(CHAIN, ex.block.txs)
                    store.commit_block(execute_block(store, ex.block, verified=ahead.verified), c)
                elif store is bare:
                    apply_block(store, ex.block, c, state_map=False)
                else:
                    store.commit_block(execute_block(store, ex.block), c)
                spent = time.perf_counter() - t
                machine.commit = real_commit
                if store is follower:
                    validate_s += spent
                    with_tree = spent
                elif store is bare:
                    bare_s += spent
                    without_tree = spent
                else:
                    node_s += spent
            lost_per_block.append(1 - without_tree / with_tree)
            t = time.perf_counter()
            decoded = [decode_tx(raw_tx) for raw_tx in ex.block.txs]
            decode_s += time.perf_counter() - t
            t = time.perf_counter()
            for tx in decoded:
                tx.bad_signatures(CHAIN)
            verify_s += time.perf_counter() - t
        raw_burst()
        raw_verify_per_s = raw["n"] / raw["s"]
        total = args.blocks * args.block_txs
        for store in (proposer, follower):
            store.kv._db.compact_range()
        proposer.close()
        follower.close()
        bare.close()
        noded.close()
        checker.close()
        size_after = du(work / "proposer")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    result = {
        "benchmark": "ledger-apply",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "crossings": total,
        "warmup_crossings": args.warmup * args.block_txs,
        "children": args.children,
        "state_tree_walk": "python" if smt.NATIVE is None else "c",
        "block_txs": args.block_txs,
        "raw_ed25519_verify_per_s": round(raw_verify_per_s),
        "proposer_build_and_commit_tx_per_s": round(total / build_s),
        "validator_execute_and_commit_tx_per_s": round(total / validate_s),
        "validator_vs_raw_verify_ratio": round(2 * (total / validate_s) / raw_verify_per_s, 3),
        "node_validator_tx_per_s": round(total / node_s),
        "node_validator_vs_raw_verify_ratio": round(2 * (total / node_s) / raw_verify_per_s, 3),
        "node_validator_cores": 1 + checker.workers,
        "state_map_us_per_crossing": round(in_tree[0] / total * 1e6, 1),
        "validator_without_state_map_tx_per_s": round(total / bare_s),
        # the median of the block-by-block pairs: one block slowed by something else (a
        # compaction, a collection, another process) moves the sums but not the median
        "validator_rate_lost_to_state_map": round(statistics.median(lost_per_block), 3),
        "validator_rate_lost_to_state_map_quartiles": [round(q, 3) for q in statistics.quantiles(lost_per_block, n=4)],
        "validator_rate_lost_to_state_map_of_totals": round(1 - bare_s / validate_s, 3),
        "validator_us_per_crossing": {
            "total": round(validate_s / total * 1e6, 1),
            "signature_checks": round(verify_s / total * 1e6, 1),
            "decoding": round(decode_s / total * 1e6, 1),
            "rules_state_tree_and_store": round((validate_s - verify_s - decode_s) / total * 1e6, 1),
        },
        "signatures_per_crossing": 2,
        # every crossing block counts here, the warm-up's too: all of them are in the store
        "bytes_on_disk_per_crossing": round((size_after - size_before) / (total + args.warmup * args.block_txs), 1),
    }
    write_result(result, args.out)


if __name__ == "__main__":
    main()
