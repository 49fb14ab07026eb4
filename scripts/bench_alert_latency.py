#!/usr/bin/env python3
"""Time from a crossing being committed as pending to the guardian's ``watch`` printing it.

Starts a local network (or uses a running devnet with ``--devnet DIR``), registers a post and a
terminal, enrols a child whose guardians run ``custos guardian watch --json`` as real processes,
then submits ``--requests`` crossings one after another (each waits for its commit, so each
lands in its own block). For every alert:

    latency = printed_ms (the watch process's clock just before it writes the line)
            - committed_ms (the node's clock when the block holding the request was stored
                            and its events derived)

Both clocks are this machine's, so the numbers are meaningful on 127.0.0.1 only. Writes a JSON
document with p50/p90/p99/max per watcher and over all of them.

    python scripts/bench_alert_latency.py --requests 200 --out bench_alert_latency.json
    python scripts/bench_alert_latency.py --requests 1000 --batch 100     # bursts: 100 alerts per block
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from ledger.crypto.keys import SigningKey
from node import devnet
from node.client.http import NodeClient
from node.client.txs import TxFactory
from node.keyfile import MINIMAL, load_key_file, write_key_file

PASSPHRASE = "bench"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(values: list[float]) -> dict:
    return {"count": len(values), "p50_ms": round(percentile(values, 50), 2),
            "p90_ms": round(percentile(values, 90), 2), "p99_ms": round(percentile(values, 99), 2),
            "max_ms": max(values), "min_ms": min(values), "mean_ms": round(statistics.fmean(values), 2)}


class Watch:
    def __init__(self, key_file: Path, urls: list[str]) -> None:
        args = [sys.executable, "-m", "node.cli", "guardian", "watch", "--key", str(key_file), "--json"]
        for u in urls:
            args += ["--node", u]
        env = {**os.environ, "CUSTOS_PASSPHRASE": PASSPHRASE, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.lines: queue.Queue[dict] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.lines.put(json.loads(line))

    def wait_for(self, predicate, timeout_s: float) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                doc = self.lines.get(timeout=max(0.01, min(0.5, deadline - time.monotonic())))
            except queue.Empty:
                continue
            if predicate(doc):
                return doc
        raise TimeoutError("the watch printed nothing expected in time")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def setup(urls: list[str], council: list[SigningKey], chain_id: str, workdir: Path, guardians: int):
    txs = TxFactory(chain_id)
    authority, terminal, child = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
    keys = [SigningKey.generate() for _ in range(guardians)]
    files = []
    for i, k in enumerate(keys):
        path = workdir / f"guardian-{i}.key"
        write_key_file(path, k, PASSPHRASE.encode(), cost=MINIMAL)
        files.append(path)
    post = "BN-" + os.urandom(2).hex().upper()
    identity = os.urandom(16)
    async with NodeClient(urls) as c:
        for tx in (txs.register_authority(council, authority.public),
                   txs.register_post(council, post, "bench post"),
                   txs.register_terminal(council, terminal.public, post),
                   txs.enrol(authority, child, identity, majority_day=(now_ms() + 10**12) // 86_400_000,
                             guardians=[k.public for k in keys], approvals=guardians,
                             deadline_ms=30 * 86_400_000, veto=False)):
            result = await c.submit(tx.raw, wait=True)
            if result["status"] != "committed":
                raise SystemExit(f"set-up transaction not committed: {result}")
    return txs, terminal, child, identity, post, files


async def submit_all(urls, txs, terminal, child, identity, post, count: int, gap_ms: int, batch: int) -> list[str]:
    """``count`` crossings, ``batch`` at a time (a batch lands in one block), each batch waited for."""
    ids = []
    async with NodeClient(urls) as c:
        while len(ids) < count:
            group = [txs.crossing(terminal, child, identity, post=post, direction="exit", event_time=now_ms(),
                                  destination="RO") for _ in range(min(batch, count - len(ids)))]
            if len(group) > 1:
                results = await c.submit_batch([tx.raw for tx in group[:-1]])
                if any(r.get("status") not in ("accepted", "committed") for r in results):
                    raise SystemExit(f"a crossing was refused: {results}")
            result = await c.submit(group[-1].raw, wait=True)
            if result.get("crossing_status") != "pending":
                raise SystemExit(f"expected a pending crossing, got {result}")
            ids += [tx.id.hex() for tx in group]
            if gap_ms:
                await asyncio.sleep(gap_ms / 1000)
    return ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="crossings to submit (at least 100)")
    parser.add_argument("--guardians", type=int, default=2, help="guardians watching (each a process)")
    parser.add_argument("--gap-ms", type=int, default=0, help="pause between requests")
    parser.add_argument("--batch", type=int, default=1,
                        help="crossings submitted together (they share a block: a burst of alerts)")
    parser.add_argument("--devnet", type=Path, help="use this running devnet instead of starting a node")
    parser.add_argument("--out", type=Path, default=Path("bench_alert_latency.json"))
    args = parser.parse_args(argv)
    if args.requests < 100:
        parser.error("--requests must be at least 100 for a p99")
    with tempfile.TemporaryDirectory(prefix="custos-bench-") as tmp:
        workdir = Path(tmp)
        procs = {}
        if args.devnet is not None:
            net_dir = args.devnet
            nodes = devnet.load(net_dir)
        else:
            net_dir = workdir / "net"
            nodes = devnet.create(net_dir, 1, heartbeat_ms=1000)
            procs = devnet.launch(net_dir, nodes)
            devnet.wait_ready(nodes, timeout_s=30)
        watchers: list[Watch] = []
        try:
            doc = json.loads((net_dir / devnet.DESCRIPTION).read_text())
            passphrase = (net_dir / "passphrase").read_bytes().strip()
            council = [load_key_file(net_dir / p, passphrase) for p in doc["council"]][:2]
            urls = [n.url for n in nodes]
            txs, terminal, child, identity, post, files = asyncio.run(
                setup(urls, council, doc["chain_id"], workdir, args.guardians))
            watchers = [Watch(f, urls) for f in files]
            for w in watchers:
                w.wait_for(lambda d: d.get("event") == "sync", 30)
            started = time.monotonic()
            ids = asyncio.run(submit_all(urls, txs, terminal, child, identity, post, args.requests, args.gap_ms,
                                         args.batch))
            elapsed = time.monotonic() - started
            per_watcher = []
            for w in watchers:
                seen: dict[str, float] = {}
                while len(seen) < len(ids):
                    d = w.wait_for(lambda d: d.get("event") == "pending", 60)
                    seen[d["id"]] = d["printed_ms"] - d["committed_ms"]
                missing = set(ids) - set(seen)
                if missing:
                    raise SystemExit(f"{len(missing)} alerts never printed")
                per_watcher.append([seen[i] for i in ids])
        finally:
            for w in watchers:
                w.stop()
            if procs:
                devnet.stop(procs)
    everything = [v for values in per_watcher for v in values]
    result = {
        "what": "committed as pending -> printed by `custos guardian watch --json`",
        "requests": len(ids),
        "batch": args.batch,
        "watchers": len(watchers),
        "validators": len(nodes),
        "submit_rate_per_s": round(len(ids) / elapsed, 1),
        "all": summary(everything),
        "per_watcher": [summary(v) for v in per_watcher],
        "host": {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
