#!/usr/bin/env python3
"""Open-loop load against a running network: crossings at a fixed offered rate.

The send schedule is fixed before the run (transaction i is due at t0 + i / rate), and every
crossing carries its scheduled send time as its event time, so latency is measured from when a
transaction *should* have left, not from when a lagging generator got round to it (no
coordinated omission). A transaction goes out when it falls due, in one request with any
others due by then (one or two at a thousand a second, as from many terminals each sending its
own crossings), the requests taking the nodes in turn; the generator sleeps at most
``--tick-ms`` between sends. A watcher follows committed blocks on one node (the block feed,
which a node serves only to integrity readers: it signs with a council key of the devnet) and
records, per transaction, the time its block became visible there.

Reports committed transactions per second over the measured window and submit-to-commit
latency percentiles, as JSON::

    custos devnet up --dir /tmp/net &   # in another terminal
    python scripts/load.py --dir /tmp/net --rate 1000 --duration 60 --out bench-results/load.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path

import aiohttp
import msgpack
from benchkit import write_result

from ledger.block import BLOCK
from ledger.crypto.keys import SigningKey
from ledger.tx.envelope import decode_tx
from node import devnet
from node.client.http import NodeClient
from node.client.signed import path_with_query, sign_request
from node.client.tls import client_context
from node.client.txs import TxFactory
from node.keyfile import load_key_file

POST = "LOAD-1"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def node_cpu_ms(directory: Path) -> dict[str, int]:
    """CPU time (user + system, ms) each running node of the devnet in ``directory`` has used,
    with its worker processes (signature checks), read from /proc (Linux): a node is found by
    the config file on its command line, its workers as its descendants."""
    return cpu_ms_by_config({str((directory / n.name / "node.toml").resolve()): n.name for n in devnet.load(directory)})


def cpu_ms_by_config(configs: dict[str, str]) -> dict[str, int]:
    """CPU time (ms) of each process started with ``--config PATH`` for a PATH in ``configs``
    (resolved path -> name), with that of its descendants."""
    tick = os.sysconf("SC_CLK_TCK")
    parent: dict[int, int] = {}
    ticks: dict[int, int] = {}
    node_of: dict[int, str] = {}
    for pid in map(int, filter(str.isdigit, os.listdir("/proc"))):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[pid] = int(fields[1])
        ticks[pid] = sum(int(f) for f in fields[11:15])  # utime, stime and those of reaped children
        if b"--config" in argv:
            name = configs.get(str(Path(argv[argv.index(b"--config") + 1].decode(errors="replace")).resolve()))
            if name is not None:
                node_of[pid] = name
    out: dict[str, int] = {}
    for pid, t in ticks.items():
        ancestor, hops = pid, 0
        while ancestor not in node_of and ancestor in parent and hops < 8:
            ancestor, hops = parent[ancestor], hops + 1
        name = node_of.get(ancestor)
        if name is not None:
            out[name] = out.get(name, 0) + t
    return {name: t * 1000 // tick for name, t in out.items()}


def council_keys(directory: Path) -> list[SigningKey]:
    doc = json.loads((directory / devnet.DESCRIPTION).read_text())
    passphrase = (directory / "passphrase").read_bytes().strip()
    return [load_key_file(directory / p, passphrase) for p in doc["council"]]


async def setup(directory: Path, client: NodeClient, factory: TxFactory, identities: int):
    council = council_keys(directory)[:2]
    authority, terminal = SigningKey.generate(), SigningKey.generate()
    await client.submit(factory.register_authority(council, authority.public, "load").raw, wait=True)
    post = f"{POST}-{os.urandom(3).hex()}"  # a fresh post per run: runs can repeat on one network
    await client.submit(factory.register_post(council, post, "load").raw, wait=True)
    await client.submit(factory.register_terminal(council, terminal.public, post, "load").raw, wait=True)
    people = []
    enrolments = []
    for _ in range(identities):
        ident, bio = os.urandom(16), SigningKey.generate()
        people.append((ident, bio))
        # adults: every crossing is permitted at once, so the load has no ordering constraints
        enrolments.append(factory.enrol(authority, bio, ident, majority_day=0, guardians=[SigningKey.generate().public],
                                        approvals=1, deadline_ms=60_000, veto=False).raw)
    for i in range(0, len(enrolments), 500):
        await client.submit_batch(enrolments[i:i + 500])
    last_id = decode_tx(enrolments[-1]).id
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        doc = await client.tx(last_id)
        if doc.get("status") == "committed":
            break
        await asyncio.sleep(0.2)
    return terminal, post, people


async def watch(url: str, start_height: int, sent: dict[bytes, int], committed: dict[bytes, int],
                stop: asyncio.Event, key: SigningKey, chain_id: str) -> None:
    """Follow the block feed, each request signed by ``key`` (a council member: an integrity reader)."""
    height = start_height
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_context())) as session:
        async with session.get(url + "/v1/status") as r:
            node = bytes.fromhex((await r.json())["node_id"])
        while not stop.is_set():
            path_qs = path_with_query("/v1/blocks", {"from": height, "limit": 100})
            headers = sign_request(key, chain_id, "GET", path_qs, node=node, purpose="audit")
            try:
                async with session.get(url + path_qs, headers=headers) as r:
                    if r.status != 200:
                        raise SystemExit(f"the node refused the block feed ({r.status}): {await r.text()}")
                    body = msgpack.unpackb(await r.read(), raw=False)
            except (aiohttp.ClientError, OSError):
                await asyncio.sleep(0.1)
                continue
            seen = now_ms()
            for item in body["blocks"]:
                block = BLOCK.decode(item["block"])
                for raw in block.txs:
                    if raw in sent and raw not in committed:
                        committed[raw] = seen
                height = block.height + 1
            if not body["blocks"]:
                await asyncio.sleep(0.05)


async def run(args) -> dict:
    nodes = devnet.load(args.dir)
    urls = [n.url for n in nodes]
    chain_id = json.loads((args.dir / devnet.DESCRIPTION).read_text())["chain_id"]
    factory = TxFactory(chain_id)
    async with NodeClient(urls) as client:
        terminal, post, people = await setup(args.dir, client, factory, args.identities)
        start_height = (await client.status())["height"] + 1

    total = int(args.rate * args.duration)
    t0 = now_ms() + 3000 + total // 200  # leave time to sign the schedule
    cpu_before: dict[str, int] = {}
    schedule = []
    for i in range(total):
        ident, bio = people[i % len(people)]
        due = t0 + (i * 1000) // args.rate
        tx = factory.crossing(terminal, bio, ident, post=post, direction="exit" if i % 2 else "entry",
                              event_time=due, destination="RO", nonce=i)
        schedule.append((due, tx.raw))
    sent: dict[bytes, int] = {}
    committed: dict[bytes, int] = {}
    rejected = 0
    reasons: dict[str, int] = {}
    lags: list[int] = []  # how late the generator sent each transaction (its own slowness)
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch(urls[0], start_height, sent, committed, stop, council_keys(args.dir)[0],
                                        chain_id))
    connector = aiohttp.TCPConnector(limit=64, ssl=client_context())  # a TLS devnet's CA: devnet.load trusts it
    async with aiohttp.ClientSession(connector=connector) as session:
        pending: set[asyncio.Task] = set()

        async def send(first: int, raws: list[bytes]) -> None:
            """Post a batch, failing over to the next node when one does not answer (as a
            terminal configured with several nodes does); resubmission is idempotent."""
            nonlocal rejected
            data = msgpack.packb(raws, use_bin_type=True)
            body, failure = None, ""
            for attempt in range(len(urls)):
                url = urls[(first + attempt) % len(urls)]
                try:
                    async with session.post(url + "/v1/txs/batch", data=data,
                                            headers={"Content-Type": "application/msgpack",
                                                     "Accept": "application/msgpack"}) as r:
                        body = msgpack.unpackb(await r.read(), raw=False)
                    break
                except (aiohttp.ClientError, OSError) as exc:
                    failure = type(exc).__name__
            if body is None:
                rejected += len(raws)
                reasons[failure] = reasons.get(failure, 0) + len(raws)
                return
            if not isinstance(body, dict) or "results" not in body:
                rejected += len(raws)
                reasons["http-error"] = reasons.get("http-error", 0) + len(raws)
                return
            for x in body["results"]:
                if x.get("status") == "rejected":
                    rejected += 1
                    reasons[x.get("rule", "?")] = reasons.get(x.get("rule", "?"), 0) + 1

        i = 0
        node = 0
        cpu_before = node_cpu_ms(args.dir)
        while i < total:
            wait = (schedule[i][0] - now_ms()) / 1000
            if wait > 0:
                await asyncio.sleep(min(wait, args.tick_ms / 1000))
                continue
            batch = []
            horizon = now_ms()
            while i < total and schedule[i][0] <= horizon and len(batch) < 2000:
                due, raw = schedule[i]
                sent[raw] = due
                lags.append(horizon - due)
                batch.append(raw)
                i += 1
            task = asyncio.create_task(send(node % len(urls), batch))
            node += 1
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            await asyncio.gather(*pending)
    drain_deadline = time.monotonic() + args.drain_s
    while len(committed) < len(sent) - rejected and time.monotonic() < drain_deadline:
        await asyncio.sleep(0.1)
    stop.set()
    cpu_after = node_cpu_ms(args.dir)
    await watcher
    cpu = {name: cpu_after[name] - cpu_before[name] for name in cpu_before if name in cpu_after}
    latencies = sorted(committed[raw] - sent[raw] for raw in committed)
    # sustained rate: everything committed, over the time from the first due send to the last commit
    span_s = max(1e-3, (max(committed.values(), default=t0) - t0) / 1000)

    lags.sort()

    def lag(p: float) -> int | None:
        return lags[min(len(lags) - 1, int(p * len(lags)))] if lags else None

    def pct(p: float) -> int | None:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] if latencies else None

    return {
        "benchmark": "open-loop-load",
        "validators": len(nodes),
        "offered_rate_tx_per_s": args.rate,
        "duration_s": args.duration,
        "sent": len(sent),
        "rejected": rejected,
        "rejected_by_reason": reasons,
        "committed": len(committed),
        "committed_tx_per_s": round(len(committed) / span_s, 1),
        "span_s": round(span_s, 2),
        "latency_ms": {"p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99),
                       "max": latencies[-1] if latencies else None},
        "generator_send_lag_ms": {"p50": lag(0.50), "p99": lag(0.99), "max": max(lags, default=None)},
        # from the first send to the last commit seen (or the drain deadline), per node
        "node_cpu_ms": cpu,
        "node_cpu_ms_per_crossing": {name: round(ms / max(1, len(committed)), 3) for name, ms in cpu.items()},
        "load_average": os.getloadavg(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, required=True, help="the devnet directory (reads devnet.json)")
    ap.add_argument("--rate", type=int, default=200, help="offered crossings per second")
    ap.add_argument("--duration", type=int, default=20, help="seconds of load")
    ap.add_argument("--identities", type=int, default=200)
    ap.add_argument("--tick-ms", type=int, default=20, help="the longest sleep between sends")
    ap.add_argument("--drain-s", type=float, default=20.0, help="how long to wait for stragglers")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    result = asyncio.run(run(args))
    write_result(result, args.out)


if __name__ == "__main__":
    main()
