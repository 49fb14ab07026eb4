"""The validator path counted in CPU instructions (valgrind's callgrind), not seconds.

    python scripts/bench_instructions.py [--blocks 3] [--block-txs 1000] [--out FILE]

Timings on a shared machine wander by a third from run to run, which hides changes of a few
percent. Instruction counts do not: the same code on the same input executes the same
instructions whatever else the machine is doing. This benchmark builds the chain of
``bench_ledger.py`` (half adults, half minors, two signatures a crossing) once, then runs each
measured path in a child process under ``valgrind --tool=callgrind``, twice: over every block and
over none (only the start-up and the setup block). The difference, divided by the crossings,
is the path's instructions per crossing:

* ``validator``: ``execute_block`` with signature checks + ``commit_block`` on a LevelDB store
  (one thread), as in ``bench_ledger.py``;
* ``validator_without_signatures``: the same with the signatures taken as checked;
* ``validator_without_state_map``: the latter with the authenticated state map's update
  skipped (its tree updates, its node records and the block's slot record), as
  ``bench_ledger.py``'s stand-in does;
* ``raw_verify``: one Ed25519 verification (libsodium through PyNaCl, as the ledger uses).

Derived, and stable to the last digit or so between runs on the same blocks:
``validator_vs_raw_verify_ratio`` (two raw verifications over a crossing on the validator
path: the instruction count counterpart of ``bench_ledger.py``'s ratio of rates) and
``state_map_share`` (the state map's instructions over the validator path's: the counterpart of
the rate it loses to the map), with ``state_map_share_without_signatures`` (the same over the
path without signature checks, where the map weighs more).
Instructions are not seconds (a cache miss costs more than an add), so these are proxies for
the timed figures, not replacements. Needs valgrind; takes about a minute per block.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchkit import ChainFile, apply_block, write_result

PATHS = ("validator", "validator_without_signatures", "validator_without_state_map")


def child(data_path: Path, what: str, count: int) -> None:
    """One measured run: the setup blocks, then ``count`` blocks (or verifications) of ``what``."""
    from ledger.block import Block
    from ledger.crypto.keys import verify_raw
    from ledger.storage.chainstore import ChainStore

    data = ChainFile.load(data_path)
    if what == "raw_verify":
        for _ in range(count):
            if not verify_raw(*data.raw):
                raise SystemExit("the sample signature does not verify")
        return
    work = Path(tempfile.mkdtemp(prefix="custos-instr-"))
    try:
        store = ChainStore.open(work / "store", data.genesis)
        for raw, commit in data.setup:
            apply_block(store, Block.decode(raw), commit)
        for raw, commit in data.blocks[:count]:
            apply_block(store, Block.decode(raw), commit, signatures=what == "validator",
                        state_map=what != "validator_without_state_map")
        store.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def instructions(data_path: Path, what: str, count: int) -> int:
    """Instructions callgrind counts for one child run (every thread, LevelDB's included)."""
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
               sys.executable, __file__, "--child", str(data_path), what, str(count)]
    env = {**os.environ, "PYTHONHASHSEED": "0"}  # the same dict layouts, run after run
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    found = re.search(r"Collected : ([\d,]+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"valgrind run of {what} failed:\n{done.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blocks", type=int, default=3)
    ap.add_argument("--block-txs", type=int, default=1000)
    ap.add_argument("--children", type=int, default=500)
    ap.add_argument("--verifications", type=int, default=2000)
    ap.add_argument("--data", type=Path, help="reuse (or keep) the built blocks here: compare code on one input")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--child", nargs=3, metavar=("DATA", "WHAT", "COUNT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(Path(args.child[0]), args.child[1], int(args.child[2]))
        return
    if args.blocks < 1 or args.block_txs < 1 or args.children < 1 or args.verifications < 1:
        ap.error("--blocks, --block-txs, --children and --verifications must be at least 1")
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    work = Path(tempfile.mkdtemp(prefix="custos-instr-data-"))
    data_path = args.data or work / "chain.pickle"
    try:
        if not data_path.exists():
            ChainFile.build(args.blocks, args.block_txs, args.children).save(data_path)
        runs = [(what, n) for what in PATHS for n in (0, args.blocks)]
        runs += [("raw_verify", 0), ("raw_verify", args.verifications)]
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            counted = dict(zip(runs, pool.map(lambda r: instructions(data_path, *r), runs), strict=True))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    crossings = args.blocks * args.block_txs
    per = {what: round((counted[what, args.blocks] - counted[what, 0]) / crossings) for what in PATHS}
    verify = round((counted["raw_verify", args.verifications] - counted["raw_verify", 0]) / args.verifications)
    result = {
        "benchmark": "validator-instructions",
        "machine": {"python": platform.python_version(), "valgrind": subprocess.run(
            ["valgrind", "--version"], capture_output=True, text=True, check=False).stdout.strip()},
        "crossings": crossings,
        "block_txs": args.block_txs,
        "instructions_per_crossing": per,
        "instructions_per_raw_verify": verify,
        "signature_instructions_per_crossing": per["validator"] - per["validator_without_signatures"],
        "validator_vs_raw_verify_ratio": round(2 * verify / per["validator"], 3),
        "state_map_share": round(
            (per["validator_without_signatures"] - per["validator_without_state_map"]) / per["validator"], 3),
        "state_map_share_without_signatures": round(
            1 - per["validator_without_state_map"] / per["validator_without_signatures"], 3),
    }
    write_result(result, args.out)


if __name__ == "__main__":
    main()
