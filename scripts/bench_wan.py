#!/usr/bin/env python3
"""Four validators formed by the genesis ceremony, over an emulated wide-area network.

Every link between two nodes goes through ``node.testbed.wanproxy``: a one-way delay of
20-120 ms per pair of nodes, +-10% jitter, 1% of chunks held back one retransmission timeout
(TCP's view of a lost packet), partitions on command. On that network the script measures, as
JSON:

* for each offered rate (default 20, 200 and 1000 crossings/s, open loop; ``scripts/load.py``
  does the sending): committed throughput and submit-to-commit latency p50/p99;
* a 2|2 partition (equal stakes: neither half holds more than 2/3): the chain halts on both
  sides, transactions submitted to both sides meanwhile are acknowledged (accepted, on disk),
  the partition heals, the chain resumes, and every acknowledged transaction commits.

    python scripts/bench_wan.py --out bench-results/wan.json
    python scripts/bench_wan.py --rates 20 --duration 4 --no-partition   # a quick smoke run

Everything runs on this machine: nodes, proxy and load generator share its cores, which bounds
the throughput more than the emulated network does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import load
from benchkit import write_result

from node.client.http import NodeClient, ProblemError
from node.client.txs import TxFactory
from node.testbed.wan import WanNet


def heights(net: WanNet) -> dict[str, int]:
    import urllib.request

    out = {}
    for name, node in net.nodes.items():
        with urllib.request.urlopen(node.url + "/v1/status", timeout=5) as r:
            out[name] = json.loads(r.read())["height"]
    return out


async def partition_run(net: WanNet, hold_s: float, per_side: int) -> dict:
    """2|2: halt, acknowledge on both sides, heal, resume, lose nothing."""
    names = list(net.nodes)
    groups = [names[: len(names) // 2], names[len(names) // 2:]]
    factory = TxFactory(net.chain_id)
    async with NodeClient([n.url for n in net.nodes.values()]) as client:
        terminal, post, people = await load.setup(net.dir, client, factory, identities=20)
    net.partition(*groups)
    await asyncio.sleep(2.0)  # a block already in flight may still finish on one side
    before = heights(net)
    acked: list[bytes] = []
    for i in range(per_side * len(names)):
        name = names[i % len(names)]
        ident, bio = people[i % len(people)]
        tx = factory.crossing(terminal, bio, ident, post=post, direction="exit" if i % 2 else "entry",
                              event_time=load.now_ms(), destination="RO", nonce=10_000 + i)
        async with NodeClient(net.nodes[name].url) as c:
            answer = await c.submit(tx.raw)
        if answer.get("status") in ("accepted", "committed"):
            acked.append(tx.id)
    await asyncio.sleep(hold_s)
    during = heights(net)
    halted = all(during[n] == before[n] for n in names)
    net.heal()
    healed = time.monotonic()
    missing = set(acked)
    async with NodeClient(net.nodes[names[0]].url) as c:
        while missing and time.monotonic() - healed < 120:
            for tx_id in list(missing):
                try:
                    if (await c.tx(tx_id)).get("status") == "committed":
                        missing.discard(tx_id)
                except ProblemError as exc:
                    if exc.status != 404:
                        raise
            if missing:
                await asyncio.sleep(0.5)
    resumed_s = time.monotonic() - healed
    after = heights(net)
    return {"groups": groups, "held_s": hold_s, "heights_before": before, "heights_during": during,
            "heights_after": after, "halted": halted, "resumed": min(after.values()) > max(during.values()),
            "acknowledged_during_partition": len(acked), "lost": len(missing),
            "all_committed_within_s": round(resumed_s, 2) if not missing else None}


async def run(args: argparse.Namespace, directory: Path) -> dict:
    net = WanNet(directory, seed=args.seed, loss=args.loss, heartbeat_ms=args.heartbeat_ms)
    started = time.monotonic()
    net.form()
    result: dict = {"benchmark": "wan", "validators": len(net.nodes), "formed_by": "genesis ceremony",
                    "genesis_hashes_printed": sorted(net.genesis_hashes), "loss": args.loss}
    try:
        proxy = net.start()
        result["one_way_delay_ms"] = proxy["one_way_delay_ms"]
        result["formed_and_started_s"] = round(time.monotonic() - started, 1)
        result["rates"] = []
        for rate in args.rates:
            load_args = argparse.Namespace(dir=directory, rate=rate, duration=args.duration,
                                           identities=args.identities, tick_ms=20, drain_s=args.drain_s)
            r = await load.run(load_args)
            result["rates"].append({"offered_tx_per_s": rate, "sent": r["sent"], "committed": r["committed"],
                                    "rejected": r["rejected"], "committed_tx_per_s": r["committed_tx_per_s"],
                                    "finality_ms": r["latency_ms"]})
        if not args.no_partition:
            result["partition"] = await partition_run(net, args.hold_s, args.per_side)
        result["proxy"] = {k: v for k, v in net.proxy_stats().items() if k != "one_way_delay_ms"}
    finally:
        net.stop()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, help="where the network lives (default: a temporary directory)")
    ap.add_argument("--rates", type=int, nargs="+", default=[20, 200, 1000], help="offered crossings per second")
    ap.add_argument("--duration", type=int, default=20, help="seconds of load per rate")
    ap.add_argument("--identities", type=int, default=200)
    ap.add_argument("--drain-s", type=float, default=30.0, help="how long to wait for stragglers after each rate")
    ap.add_argument("--seed", type=int, default=1, help="seeds the links' delays and the loss")
    ap.add_argument("--loss", type=float, default=0.01)
    ap.add_argument("--heartbeat-ms", type=int, default=1000, help="an idle chain's block interval")
    ap.add_argument("--no-partition", action="store_true")
    ap.add_argument("--hold-s", type=float, default=8.0, help="how long the partition lasts")
    ap.add_argument("--per-side", type=int, default=10, help="transactions submitted to each node while split")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.dir is not None:
        result = asyncio.run(run(args, args.dir))
    else:
        with tempfile.TemporaryDirectory(prefix="custos-wan-") as tmp:
            result = asyncio.run(run(args, Path(tmp)))
    write_result(result, args.out)


if __name__ == "__main__":
    main()
