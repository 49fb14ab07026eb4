#!/usr/bin/env python3
"""What the authenticated state map costs a validator in CPU, LevelDB's compactions included.

    python scripts/bench_store.py [--blocks 120] [--warmup 40] [--block-txs 1000] [--children 5000]
                                  [--rounds 2] [--data FILE] [--python-tree] [--out FILE]

``bench_ledger.py`` times the validator's executing thread. A store does more work than that
thread sees: LevelDB writes each batch to a log and a memtable, and a background thread later
flushes the memtables to table files and merges those down its levels (compaction). The state
tree's node records are rewritten in place block after block (a child's tree root, the path
above it in the global tree): keys spread over the whole key space, which is the pattern that
makes compaction rewrite the most. On a machine of two cores that thread competes with the
signature workers and the other processes for CPU.

So this benchmark builds a chain once (``benchkit.ChainFile``: setup blocks, then blocks of
crossings by ``--children`` children taking turns), then applies its crossing blocks in child
processes, each on a new LevelDB store, with the state map and without it (the stand-in of
``bench_ledger.py``: no tree computed or stored), ``--rounds`` times alternately. Signatures
are taken as checked: their cost is the same with and without the map, and is added back from
the raw Ed25519 rate measured in the same child.

Compaction runs behind the writes: what a block writes is flushed when its memtable fills and
merged down later still. So each child first applies ``--warmup`` blocks untimed, then counts
over the rest: in a steady state the work left pending at the end of the window is about what
was pending at its start. The window should span several memtables (LevelDB's write buffer;
a block of 1,000 crossings writes about 2.5 MB). Each child reports, per crossing in the window:

* ``main_thread_us``: the CPU time of the thread applying the blocks;
* ``background_us``: the CPU time of every other thread (LevelDB's flushes and compactions);
* ``wall_us``: the elapsed time of the applying thread;
* ``store_bytes``: the store's files at the end.

A machine whose speed drifts between processes (by a sixth, some days) hides a difference of
that size between two runs, so one more child applies the chain to both stores in one process,
each block to one and then the other (in turns which first), and reports the median over the
counted blocks of the difference (``paired_in_one_process``): the executing thread's cost of the
map, the time computing the trees (the update walk and the hashing around it), and the
validator's rate lost with two raw verifications added, without LevelDB's background threads.
``--python-tree`` runs every child with the tree's Python walk instead of its C walk.

Derived (medians over the rounds): ``state_map_cpu_us_per_crossing`` with and without the
background threads, and the validator's CPU lost to the map, 1 - (CPU without it) / (CPU with
it), where a validator's CPU per crossing is the main thread's (or all threads') plus two raw
verifications. ``validator_cpu_lost_to_state_map_main_thread`` is the counterpart of
``bench_ledger.py``'s timed share; ``validator_cpu_lost_to_state_map`` counts the compactions too.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchkit import ChainFile, apply_block, timed_tree_commit, write_result

from ledger.state import smt

VARIANTS = ("with_state_map", "without_state_map")


def thread_cpu_seconds() -> dict[int, float]:
    """CPU time (user + system) of each of this process's threads, by native thread id."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for tid in os.listdir(f"/proc/{os.getpid()}/task"):
        try:
            fields = Path(f"/proc/{os.getpid()}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def child(data_path: Path, variant: str, warmup: int) -> None:
    """One measured run on a new store: the setup blocks and ``warmup`` crossing blocks, then
    the rest, counted; prints JSON."""
    from ledger.block import Block
    from ledger.crypto.keys import verify_raw
    from ledger.storage.chainstore import ChainStore

    data = ChainFile.load(data_path)
    blocks = [(Block.decode(raw), commit) for raw, commit in data.blocks]
    work = Path(tempfile.mkdtemp(prefix="custos-store-"))
    try:
        store = ChainStore.open(work / "store", data.genesis)
        for raw, commit in data.setup:
            apply_block(store, Block.decode(raw), commit)
        state_map = variant == "with_state_map"
        for block, commit in blocks[:warmup]:
            apply_block(store, block, commit, signatures=False, state_map=state_map)
        blocks = blocks[warmup:]
        me = threading.get_native_id()
        before = thread_cpu_seconds()
        wall, cpu = time.perf_counter(), time.thread_time()
        for block, commit in blocks:
            apply_block(store, block, commit, signatures=False, state_map=state_map)
        cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
        after = thread_cpu_seconds()
        background = sum(t - before.get(tid, 0.0) for tid, t in after.items() if tid != me)
        store_bytes = sum(f.stat().st_size for f in (work / "store").rglob("*") if f.is_file())
        store.close()
        n, t = 2000, time.perf_counter()
        for _ in range(n):
            verify_raw(*data.raw)
        verify_s = (time.perf_counter() - t) / n
    finally:
        shutil.rmtree(work, ignore_errors=True)
    crossings = sum(len(block.txs) for block, _ in blocks)
    print(json.dumps({"main_thread_us": cpu / crossings * 1e6, "background_us": background / crossings * 1e6,
                      "wall_us": wall / crossings * 1e6, "store_bytes": store_bytes,
                      "raw_verify_us": verify_s * 1e6}))


def paired_child(data_path: Path, warmup: int) -> None:
    """Both stores in one process, each block applied to one and then the other (in turns which
    first), the executing thread's CPU timed per block: the map's cost as the median of the
    block pairs after ``warmup``. Prints JSON."""
    from ledger.block import Block
    from ledger.crypto.keys import verify_raw
    from ledger.state import machine
    from ledger.storage.chainstore import ChainStore

    data = ChainFile.load(data_path)
    blocks = [(Block.decode(raw), commit) for raw, commit in data.blocks]
    work = Path(tempfile.mkdtemp(prefix="custos-store-"))
    real_commit = machine.commit
    walk = [0.0]
    timed_commit = timed_tree_commit(walk, time.thread_time)

    try:
        stores = {v: ChainStore.open(work / v, data.genesis) for v in VARIANTS}
        for store in stores.values():
            for raw, commit in data.setup:
                apply_block(store, Block.decode(raw), commit)
        gc.collect()
        gc.freeze()  # the prebuilt blocks: out of the collector's passes
        pairs: dict[str, list[float]] = {"state_map_us": [], "tree_us": [], "without_us": [], "raw_verify_us": []}
        for i, (block, commit) in enumerate(blocks):
            spent = {}
            for variant in VARIANTS if i % 2 else reversed(VARIANTS):
                gc.collect()
                walk[0] = 0.0
                machine.commit = timed_commit  # type: ignore[assignment]
                t = time.thread_time()
                apply_block(stores[variant], block, commit, signatures=False, state_map=variant == "with_state_map")
                spent[variant] = time.thread_time() - t
                machine.commit = real_commit  # type: ignore[assignment]
                if variant == "with_state_map":
                    tree = walk[0]
            if i < warmup:
                continue
            n = len(block.txs)
            pairs["state_map_us"].append((spent["with_state_map"] - spent["without_state_map"]) / n * 1e6)
            pairs["tree_us"].append(tree / n * 1e6)
            pairs["without_us"].append(spent["without_state_map"] / n * 1e6)
            t = time.perf_counter()
            for _ in range(200):
                verify_raw(*data.raw)
            pairs["raw_verify_us"].append((time.perf_counter() - t) / 200 * 1e6)
        for store in stores.values():
            store.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({k: statistics.median(v) for k, v in pairs.items()} | {"blocks": len(pairs["tree_us"])}))


def run_child(data_path: Path, variant: str, warmup: int) -> dict:
    python_tree = ["--python-tree"] if smt.NATIVE is None else []
    done = subprocess.run([sys.executable, __file__, *python_tree, "--child", str(data_path), variant, str(warmup)],
                          capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the {variant} run failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blocks", type=int, default=120)
    ap.add_argument("--warmup", type=int, default=40, help="crossing blocks applied before the count starts")
    ap.add_argument("--block-txs", type=int, default=1000)
    ap.add_argument("--children", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--data", type=Path, help="reuse (or keep) the built chain here")
    ap.add_argument("--python-tree", action="store_true",
                    help="update the state tree in Python even where its C walk is built (to compare the two)")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--child", nargs=3, metavar=("DATA", "VARIANT", "WARMUP"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.python_tree:
        smt.NATIVE = None
    if args.child:
        if args.child[1] == "paired":
            paired_child(Path(args.child[0]), int(args.child[2]))
        else:
            child(Path(args.child[0]), args.child[1], int(args.child[2]))
        return
    if min(args.blocks, args.block_txs, args.children, args.rounds) < 1:
        ap.error("--blocks, --block-txs, --children and --rounds must be at least 1")
    if not 0 <= args.warmup < args.blocks:
        ap.error("--warmup must leave at least one block to count (0 <= warmup < blocks)")
    work = Path(tempfile.mkdtemp(prefix="custos-store-data-"))
    data_path = args.data or work / "chain.pickle"
    try:
        if not data_path.exists():
            ChainFile.build(args.blocks, args.block_txs, args.children).save(data_path)
        runs: dict[str, list[dict]] = {v: [] for v in VARIANTS}
        for r in range(args.rounds):  # alternated, so that a slow spell of the machine hits both
            for variant in VARIANTS if r % 2 == 0 else reversed(VARIANTS):
                runs[variant].append(run_child(data_path, variant, args.warmup))
        paired = run_child(data_path, "paired", args.warmup)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def median(variant: str, key: str) -> float:
        return statistics.median(run[key] for run in runs[variant])

    verify = statistics.median(run["raw_verify_us"] for v in VARIANTS for run in runs[v])
    main_thread = {v: median(v, "main_thread_us") for v in VARIANTS}
    every = {v: main_thread[v] + median(v, "background_us") for v in VARIANTS}
    with_, without = VARIANTS
    result = {
        "benchmark": "store-cpu",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "crossings_counted": (args.blocks - args.warmup) * args.block_txs,
        "warmup_crossings": args.warmup * args.block_txs,
        "block_txs": args.block_txs,
        "children": args.children,
        "rounds": args.rounds,
        "raw_verify_us": round(verify, 1),
        "per_crossing": {v: {k: round(median(v, k), 1) for k in ("main_thread_us", "background_us", "wall_us")}
                         for v in VARIANTS},
        "store_bytes_per_crossing": {v: round(median(v, "store_bytes") / (args.blocks * args.block_txs))
                                     for v in VARIANTS},
        "state_map_cpu_us_per_crossing_main_thread": round(main_thread[with_] - main_thread[without], 1),
        "state_map_cpu_us_per_crossing": round(every[with_] - every[without], 1),
        "validator_cpu_lost_to_state_map_main_thread": round(
            1 - (main_thread[without] + 2 * verify) / (main_thread[with_] + 2 * verify), 3),
        "validator_cpu_lost_to_state_map": round(1 - (every[without] + 2 * verify) / (every[with_] + 2 * verify), 3),
        # the same chain, both stores in one process, each block to both in turn: the executing
        # thread's share, without the drift between processes (medians of the block pairs)
        "paired_in_one_process": {
            "state_map_us_per_crossing": round(paired["state_map_us"], 1),
            "computing_trees_us_per_crossing": round(paired["tree_us"], 1),
            "without_state_map_us_per_crossing": round(paired["without_us"], 1),
            "raw_verify_us": round(paired["raw_verify_us"], 1),
            "validator_rate_lost_to_state_map": round(paired["state_map_us"] / (
                paired["without_us"] + paired["state_map_us"] + 2 * paired["raw_verify_us"]), 3),
            "blocks": paired["blocks"],
        },
        "state_tree_walk": "python" if smt.NATIVE is None else "c",
        "runs": runs,
    }
    write_result(result, args.out)


if __name__ == "__main__":
    main()
