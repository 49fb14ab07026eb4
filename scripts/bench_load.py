#!/usr/bin/env python3
"""Sweep offered rates against a fresh 4-validator devnet: the highest rate that commits every
crossing with p99 under a bound, and each node's CPU time per crossing.

For each rate in ``--rates`` (ascending) this starts ``custos devnet up`` in a new directory,
waits for it to commit, runs ``scripts/load.py`` (open loop, no coordinated omission) for
``--duration`` seconds, stops the devnet, and records the result. A rate *holds* when every
sent crossing is committed, none is refused, and the p99 submit-to-commit latency is at most
``--p99-ms``. ``--block-interval-ms`` overrides the nodes' ``[consensus] block_interval_ms``
(comma-separated values are each swept, to compare pacing in the same run).

Writes JSON to stdout or ``--out``::

    python scripts/bench_load.py --rates 500,1000,1500,2000 --duration 60 --out bench-results/load-sweep.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchkit import write_result

ROOT = Path(__file__).resolve().parent.parent
READY = "devnet running"


def start_devnet(directory: Path, interval_ms: int | None, timeout_s: float = 60.0) -> subprocess.Popen:
    """Create the devnet's files, set the pacing, then run it; returns once it reports running."""
    devnet = _run_devnet(directory, "--validators", "4", timeout_s=timeout_s)
    if interval_ms is None:
        return devnet
    stop_devnet(devnet)  # pacing is read at start: rewrite the configs and run the same network again
    for config in sorted(directory.glob("*/node.toml")):
        lines = [line for line in config.read_text().splitlines() if not line.startswith("block_interval_ms")]
        at = lines.index("[consensus]") + 1
        lines.insert(at, f"block_interval_ms = {interval_ms}")
        config.write_text("\n".join(lines) + "\n")
    return _run_devnet(directory, "--reuse", timeout_s=timeout_s)


def _run_devnet(directory: Path, *options: str, timeout_s: float) -> subprocess.Popen:
    log = directory.parent / "devnet.out"
    start = log.stat().st_size if log.exists() else 0
    with log.open("ab") as out:  # a file, not a pipe: nobody reads the devnet's output meanwhile
        devnet = subprocess.Popen([sys.executable, "-m", "node.cli", "devnet", "up", "--dir", str(directory), *options],
                                  cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and devnet.poll() is None:
        if READY.encode() in log.read_bytes()[start:]:
            return devnet
        time.sleep(0.2)
    stop_devnet(devnet)
    raise SystemExit(f"the devnet in {directory} did not start within {timeout_s:.0f} s:\n"
                     + log.read_text(errors="replace")[-2000:])


def stop_devnet(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def one_run(rate: int, duration: int, interval_ms: int | None, p99_ms: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="custos-load-"))
    devnet = start_devnet(work / "net", interval_ms)
    try:
        time.sleep(2)  # a few heartbeats: every validator connected and committing
        out = work / "load.json"
        subprocess.run([sys.executable, str(ROOT / "scripts" / "load.py"), "--dir", str(work / "net"),
                        "--rate", str(rate), "--duration", str(duration), "--out", str(out)],
                       cwd=ROOT, check=True, stdout=subprocess.DEVNULL, timeout=duration + 120)
        result = json.loads(out.read_text())
    finally:
        stop_devnet(devnet)
        shutil.rmtree(work, ignore_errors=True)
    p99 = result["latency_ms"]["p99"]
    cpu = result["node_cpu_ms_per_crossing"]
    return {
        "offered_per_s": rate,
        "block_interval_ms": interval_ms,
        "sent": result["sent"],
        "committed": result["committed"],
        "rejected": result["rejected"],
        "committed_per_s": result["committed_tx_per_s"],
        "latency_ms": result["latency_ms"],
        "cpu_ms_per_crossing_per_node": round(sum(cpu.values()) / max(1, len(cpu)), 3),
        "load_average_1m": round(result["load_average"][0], 2),
        "holds": result["committed"] == result["sent"] and result["rejected"] == 0
        and p99 is not None and p99 <= p99_ms,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", default="500,1000,1500,2000", help="offered crossings per second, ascending")
    ap.add_argument("--duration", type=int, default=60, help="seconds of load per rate")
    ap.add_argument("--p99-ms", type=int, default=1000, help="the latency bound a rate must hold")
    ap.add_argument("--block-interval-ms", default="", help="override the nodes' pacing (comma-separated to compare)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    rates = [int(r) for r in args.rates.split(",") if r]
    intervals: list[int | None] = [int(v) for v in args.block_interval_ms.split(",") if v] or [None]
    runs = []
    for interval in intervals:
        for rate in rates:
            run = one_run(rate, args.duration, interval, args.p99_ms)
            runs.append(run)
            print(json.dumps(run), file=sys.stderr, flush=True)
    best = {str(interval): max((r["offered_per_s"] for r in runs if r["holds"] and r["block_interval_ms"] == interval),
                               default=None) for interval in intervals}
    result = {
        "benchmark": "load-sweep",
        "validators": 4,
        "cpus": os.cpu_count(),
        "duration_s": args.duration,
        "p99_bound_ms": args.p99_ms,
        "runs": runs,
        "highest_rate_holding_by_block_interval": best,
    }
    write_result(result, args.out)


if __name__ == "__main__":
    main()
