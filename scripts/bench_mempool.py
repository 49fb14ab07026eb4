#!/usr/bin/env python3
"""What carrying a backlog over a block costs the mempool: re-running every pending client
transaction's rules (the old way, ``update(..., written=None)``) against carrying over by
footprint (only those whose reads the block wrote run again), in the same run on the same
transactions.

A chain with enrolled adults, a backlog of ``--backlog`` crossings admitted by one node, then
``--blocks`` blocks of ``--block-txs`` each taken from the front of the backlog, as a busy
network commits them. Reports CPU ms per block for both, the ratio, and how many transactions
each ran the rules for. JSON to stdout or ``--out``::

    python scripts/bench_mempool.py --backlog 4000 --block-txs 500 --blocks 6
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

from benchkit import T0, BenchWorld, Proposer, write_result

from ledger.storage.chainstore import ChainStore
from node.mempool import Mempool


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backlog", type=int, default=4000)
    ap.add_argument("--block-txs", type=int, default=500)
    ap.add_argument("--blocks", type=int, default=6)
    ap.add_argument("--children", type=int, default=1000)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    world = BenchWorld()
    children = world.children(args.children)
    store = ChainStore.memory(world.genesis)
    proposer = Proposer(world, store)
    now = [T0 + 1000]

    def commit(txs):
        executed = proposer.commit(txs, now[0])
        now[0] += 1000
        return executed

    commit(world.registrations() + [world.enrol(c, own_guardian=True) for c in children])
    backlog = [world.crossing(children[k % len(children)], k, event_time=T0 + 500,
                              direction="exit" if k % 2 else "entry") for k in range(args.backlog)]
    full, footprint = Mempool(store, lambda: now[0]), Mempool(store, lambda: now[0])
    for tx in backlog:
        full.add(tx)
        footprint.add(tx)
    full_s = fp_s = 0.0
    full_runs = fp_runs = 0
    for b in range(args.blocks):
        txs = backlog[b * args.block_txs:(b + 1) * args.block_txs]
        executed = commit(txs)
        ids = [tx.id for tx in txs]
        t = time.process_time()
        dropped_full = full.update(ids)
        full_s += time.process_time() - t
        full_runs += full.last_update[0]
        t = time.process_time()
        dropped_fp = footprint.update(ids, [key for key, _ in executed.changes.writes])
        fp_s += time.process_time() - t
        fp_runs += footprint.last_update[0]
        assert [tx.id for tx, _ in dropped_full] == [tx.id for tx, _ in dropped_fp]
        assert len(full) == len(footprint)
    result = {
        "benchmark": "mempool-update",
        "backlog": args.backlog,
        "block_txs": args.block_txs,
        "blocks": args.blocks,
        "full_recheck_cpu_ms_per_block": round(1000 * full_s / args.blocks, 2),
        "footprint_cpu_ms_per_block": round(1000 * fp_s / args.blocks, 2),
        "ratio_full_to_footprint": round(full_s / max(fp_s, 1e-9), 1),
        "rules_run_full": full_runs,
        "rules_run_footprint": fp_runs,
        "machine": {"python": platform.python_version(), "load_average": os.getloadavg()},
    }
    write_result(result, args.out)


if __name__ == "__main__":
    main()
