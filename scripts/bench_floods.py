#!/usr/bin/env python3
"""What anonymous callers can cost one node: each flood for ``--seconds`` against one validator.

Starts a local network of four validators (or uses ``--dir`` of a running devnet), measures an
honest baseline, then runs each flood against ``val-0`` while honest terminals keep
submitting crossings to it (failing over to the other nodes only when it does not answer, as a
terminal configured with several nodes does). For each flood it reports the honest
submit-to-commit latency during the flood and just after it, the flooded node's resident
memory before and after, how many bytes its log grew by, and what the flood itself got done.
Latency ratios are to the honest p50 measured in the ``--quiet`` seconds just before that
flood (other work on a shared machine drifts over a run); memory is compared with the
baseline at the start::

    python scripts/bench_floods.py --out bench-results/flood.json
    python scripts/bench_floods.py --floods uploads,idle --seconds 10

Floods (each an attack seen against Custos):

* ``uploads``: 8 MB batch uploads abandoned after 2 MB, 8 at a time.
* ``idle``: up to 2,000 connections to the API that send nothing, or half a header line.
* ``batch``: ``POST /v1/txs/batch`` of 20,000 junk items, 2 at a time.
* ``malformed``: requests the parser or a handler refuses (bad request lines, JSON nested
  120,000 deep, heights out of range, non-ASCII integers), as fast as they are answered.
* ``handshake``: silent websocket connections to the peer port, without a hello, 64 at a
  time; meanwhile another validator restarts and must find its peers again (``rejoin_s``).
* ``replay``: one registered key (a border terminal's) signs reads as fast as the node answers,
  from 16 connections, to fill the replay cache; meanwhile another key (an enrolment
  authority's) reads every 0.2 s and must keep being answered (``honest_reads``).

"Done" means: honest p50 during each flood within 2x the baseline, memory within 100 MB of
the baseline afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchkit import write_result
from load import council_keys, setup

from ledger.crypto.keys import SigningKey
from node import devnet
from node.access.signature import sign_request
from node.client.http import NodeClient, NodeUnreachable, ProblemError
from node.client.txs import TxFactory
from node.ops.scrape import first_sample, parse_samples

TARGET = "val-0"


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(p * len(values)))], 1)


class Honest:
    """Terminals submitting crossings to the target and waiting for their commit."""

    def __init__(self, urls: list[str], factory: TxFactory, terminal, post: str, people: list, workers: int) -> None:
        self.urls = urls
        self.factory = factory
        self.terminal = terminal
        self.post = post
        self.people = people
        self.workers = workers
        self.samples: list[tuple[float, float]] = []  # (finished at, latency ms)
        self.failures = 0
        self._stop = asyncio.Event()
        self._n = 0

    async def run(self) -> None:
        await asyncio.gather(*(self._worker(i) for i in range(self.workers)))

    async def _worker(self, i: int) -> None:
        async with NodeClient(self.urls, timeout_s=20) as client:
            while not self._stop.is_set():
                self._n += 1
                ident, bio = self.people[self._n % len(self.people)]
                tx = self.factory.crossing(self.terminal, bio, ident, post=self.post,
                                           direction="exit" if self._n % 2 else "entry",
                                           event_time=time.time_ns() // 1_000_000, destination="RO")
                started = time.monotonic()
                try:
                    doc = await client.submit(tx.raw, wait=True, timeout_ms=15_000)
                    if doc.get("status") == "committed":
                        self.samples.append((time.monotonic(), (time.monotonic() - started) * 1000))
                    else:
                        self.failures += 1
                except (NodeUnreachable, ProblemError):
                    self.failures += 1
                    await asyncio.sleep(0.2)
                client._current = 0  # back to the target for the next one
                await asyncio.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()

    def window(self, start: float, end: float) -> list[float]:
        return [lat for at, lat in self.samples if start <= at < end]


# ---------------------------------------------------------------- floods


async def _until(seconds: float, step: Callable[[], Awaitable[None]], parallel: int) -> None:
    end = time.monotonic() + seconds

    async def one() -> None:
        while time.monotonic() < end:
            try:
                await step()
            except (TimeoutError, OSError, aiohttp.ClientError):
                await asyncio.sleep(0.05)

    await asyncio.gather(*(one() for _ in range(parallel)))


async def flood_uploads(host: str, port: int, seconds: float, stats: dict, **_) -> None:
    chunk = os.urandom(256 * 1024)

    async def step() -> None:
        _, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(b"POST /v1/txs/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/msgpack\r\n"
                         b"Content-Length: 8388608\r\n\r\n")
            for _ in range(8):  # 2 MB of the promised 8, then gone
                writer.write(chunk)
                await asyncio.wait_for(writer.drain(), 5)
            stats["uploads_abandoned"] = stats.get("uploads_abandoned", 0) + 1
        finally:
            writer.transport.abort()

    await _until(seconds, step, parallel=8)


async def flood_idle(host: str, port: int, seconds: float, stats: dict, **_) -> None:
    held: list[asyncio.StreamWriter] = []
    end = time.monotonic() + seconds
    peak = 0
    while time.monotonic() < end:
        held = [w for w in held if not w.is_closing() and not w.transport.is_closing()]
        try:
            while len(held) < 2000 and time.monotonic() < end:
                _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 2)
                if len(held) % 2:
                    writer.write(b"GET /v1/status HTTP/1.1\r\nHost:")  # half a header, never finished
                held.append(writer)
        except (TimeoutError, OSError):
            pass
        peak = max(peak, len(held))
        await asyncio.sleep(0.5)
        # a closed connection shows as EOF on its reader; reopen what the node closed
        for w in held:
            if w.transport.get_extra_info("socket") is None:
                w.close()
    stats["peak_connections_held"] = peak
    for w in held:
        w.transport.abort()


async def flood_batch(host: str, port: int, seconds: float, stats: dict, **_) -> None:
    junk = msgpack.packb([os.urandom(100) for _ in range(20_000)], use_bin_type=True)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async def step() -> None:
            async with session.post(f"http://{host}:{port}/v1/txs/batch", data=junk,
                                    headers={"Content-Type": "application/msgpack"}) as r:
                await r.read()
                key = f"status_{r.status}"
                stats[key] = stats.get(key, 0) + 1

        await _until(seconds, step, parallel=2)


MALFORMED = [
    b"GARBAGE\r\n\r\n",
    b"GET /v1/blocks/-1 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v1/blocks/18446744073709551616 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v1/log/consistency?first=1_0 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v1/validators?height=%D9%A1 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
]


async def flood_malformed(host: str, port: int, seconds: float, stats: dict, **_) -> None:
    deep = b"[" * 120_000 + b"]" * 120_000
    requests = [*MALFORMED, b"POST /v1/txs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                    b"Content-Length: %d\r\n\r\n" % len(deep) + deep]

    async def step() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(random.choice(requests))
            await writer.drain()
            head = await asyncio.wait_for(reader.readline(), 5)
            status = head.split(b" ")[1].decode() if head.count(b" ") >= 2 else "none"
            stats[f"status_{status}"] = stats.get(f"status_{status}", 0) + 1
        finally:
            writer.transport.abort()

    await _until(seconds, step, parallel=4)


async def flood_handshake(host: str, port: int, seconds: float, stats: dict, *, p2p: str,
                          restart: Callable[[], Awaitable[float]], **_) -> None:
    p2p_host, p2p_port = p2p.rsplit(":", 1)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def step() -> None:
            ws = await session.ws_connect(f"http://{p2p_host}:{p2p_port}/p2p",
                                          timeout=aiohttp.ClientWSTimeout(ws_close=1))
            stats["opened"] = stats.get("opened", 0) + 1
            try:
                msg = await asyncio.wait_for(ws.receive(), 30)  # hold the slot until the node closes it
                if msg.type is aiohttp.WSMsgType.BINARY:
                    stats["hello_bytes_learned"] = stats.get("hello_bytes_learned", 0) + len(msg.data)
            finally:
                await ws.close()

        flood = asyncio.create_task(_until(seconds, step, parallel=64))
        await asyncio.sleep(min(5.0, seconds / 3))
        stats["rejoin_s"] = await restart()
        await flood


async def flood_replay(host: str, port: int, seconds: float, stats: dict, *, readers: Readers, **_) -> None:
    flooder = readers.flood_key
    path = f"/v1/terminals/{flooder.public.hex()}/requests?limit=1"
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:
        async def step() -> None:
            headers = readers.headers(flooder, path, "border-check")
            async with session.get(f"http://{host}:{port}{path}", headers=headers) as r:
                await r.read()
                key = f"status_{r.status}"
                stats[key] = stats.get(key, 0) + 1

        honest = asyncio.create_task(readers.honest_reads(host, port, seconds, stats))
        await _until(seconds, step, parallel=16)
        await honest


class Readers:
    """Keys for signed reads: one that floods, one that reads as an honest caller would."""

    def __init__(self, chain_id: str, node_id: bytes, flood_key: SigningKey, honest_key: SigningKey) -> None:
        self.chain_id = chain_id
        self.node_id = node_id
        self.flood_key = flood_key
        self.honest_key = honest_key

    def headers(self, key: SigningKey, path: str, purpose: str) -> dict[str, str]:
        return sign_request(key, self.chain_id, "GET", path, node=self.node_id, purpose=purpose)

    async def honest_reads(self, host: str, port: int, seconds: float, stats: dict) -> None:
        path = "/v1/alerts?limit=1"
        latencies: list[float] = []
        refused = 0
        end = time.monotonic() + seconds
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            while time.monotonic() < end:
                started = time.monotonic()
                try:
                    async with session.get(f"http://{host}:{port}{path}",
                                           headers=self.headers(self.honest_key, path, "case-work")) as r:
                        await r.read()
                        if r.status == 200:
                            latencies.append((time.monotonic() - started) * 1000)
                        else:
                            refused += 1
                except (TimeoutError, aiohttp.ClientError, OSError):
                    refused += 1
                await asyncio.sleep(0.2)
        stats["honest_reads"] = {"ok": len(latencies), "refused_or_failed": refused,
                                 "p50_ms": pct(latencies, 0.5)}


FLOODS = {
    "uploads": flood_uploads,
    "idle": flood_idle,
    "batch": flood_batch,
    "malformed": flood_malformed,
    "handshake": flood_handshake,
    "replay": flood_replay,
}


# ---------------------------------------------------------------- the run


async def metric(url: str, name: str) -> float | None:
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as s, \
                s.get(url + "/metrics") as r:
            return first_sample(parse_samples(await r.text()), name)
    except (TimeoutError, aiohttp.ClientError, OSError):
        return None


EDGE_COUNTERS = ("custos_http_connections_", "custos_p2p_listener_connections_", "custos_p2p_handshakes_evicted",
                 "custos_tx_rejected")


async def edge_counters(url: str) -> dict[str, float]:
    """The target's counters of what its edge refused, evicted and timed out."""
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s, \
                s.get(url + "/metrics") as r:
            text = await r.text()
    except (TimeoutError, aiohttp.ClientError, OSError):
        return {}
    return {name.removeprefix("custos_"): value for name, value in parse_samples(text).items()
            if name.startswith(EDGE_COUNTERS) and name.endswith("_total")}


async def main_async(args) -> dict:
    directory = args.dir
    procs = {}
    if directory is None:
        directory = Path(tempfile.mkdtemp(prefix="custos-flood-"))
        devnet.create(directory, 4, heartbeat_ms=1000)
        procs = devnet.launch(directory, devnet.load(directory))
    nodes = {n.name: n for n in devnet.load(directory)}
    devnet.wait_ready(list(nodes.values()), timeout_s=60)
    target = nodes[TARGET]
    pid = procs[TARGET].pid if procs else args.pid
    host, port = target.api.rsplit(":", 1)
    urls = [target.url] + [n.url for n in nodes.values() if n.name != TARGET]
    chain_id = json.loads((directory / devnet.DESCRIPTION).read_text())["chain_id"]
    factory = TxFactory(chain_id)
    async with NodeClient(urls) as client:
        terminal, post, people = await setup(directory, client, factory, 100)
        reader = SigningKey.generate()
        await client.submit(factory.register_authority(council_keys(directory)[:2], reader.public, "reader").raw,
                            wait=True)
    async with aiohttp.ClientSession() as s, s.get(target.url + "/v1/status") as r:
        node_id = bytes.fromhex((await r.json())["node_id"])
    readers = Readers(chain_id, node_id, terminal, reader)

    async def restart_other() -> float:
        """SIGKILL val-1 and start it again; seconds until the target counts it as a peer."""
        name = "val-1"
        if name not in procs:
            return float("nan")
        procs[name].send_signal(signal.SIGKILL)
        procs[name].wait(10)
        procs.update(devnet.launch(directory, [nodes[name]]))
        started = time.monotonic()
        before = await metric(target.url, "custos_p2p_handshakes_completed_total") or 0
        while time.monotonic() - started < 60:
            peers = await metric(target.url, "custos_p2p_peers_connected")
            done = await metric(target.url, "custos_p2p_handshakes_completed_total") or 0
            if peers == 3 and done > before:
                return round(time.monotonic() - started, 2)
            await asyncio.sleep(0.1)
        return float("inf")

    honest = Honest(urls, factory, terminal, post, people, workers=args.workers)
    honest_task = asyncio.create_task(honest.run())
    log_path = directory / TARGET / "node.log"
    result: dict = {"benchmark": "floods", "machine": f"{platform.machine()} {os.cpu_count()} cpus",
                    "python": platform.python_version(), "seconds_per_flood": args.seconds,
                    "load_average_at_start": [round(x, 2) for x in os.getloadavg()], "floods": {}}
    try:
        await asyncio.sleep(3)  # warm up
        t0 = time.monotonic()
        await asyncio.sleep(args.baseline)
        base = honest.window(t0, time.monotonic())
        base_rss = rss_mb(pid) if pid else None
        result["baseline"] = {"honest_committed": len(base), "p50_ms": pct(base, 0.5), "p90_ms": pct(base, 0.9),
                              "rss_mb": round(base_rss, 1) if base_rss else None}
        for name in args.floods:
            # a baseline just before each flood too: other work on the machine drifts
            quiet_start = time.monotonic()
            await asyncio.sleep(args.quiet)
            quiet = honest.window(quiet_start, time.monotonic())
            stats: dict = {}
            log_before = log_path.stat().st_size if log_path.exists() else 0
            rss_before = rss_mb(pid) if pid else None
            counted = await edge_counters(target.url)
            start = time.monotonic()
            await FLOODS[name](host, int(port), args.seconds, stats, p2p=target.p2p, restart=restart_other,
                               readers=readers)
            during = honest.window(start, time.monotonic())
            after_start = time.monotonic()
            await asyncio.sleep(args.settle)
            after = honest.window(after_start, time.monotonic())
            rss_after = rss_mb(pid) if pid else None
            after_counts = await edge_counters(target.url)
            entry = {
                "flood": stats,
                "node_counted": {k: int(v - counted.get(k, 0)) for k, v in after_counts.items()
                                 if v - counted.get(k, 0)},
                "honest_committed_during": len(during),
                "p50_during_ms": pct(during, 0.5),
                "p90_during_ms": pct(during, 0.9),
                "p50_after_ms": pct(after, 0.5),
                "p50_before_ms": pct(quiet, 0.5),
                "p50_ratio_to_baseline": (round(pct(during, 0.5) / pct(quiet, 0.5), 2)
                                          if during and quiet else None),
                "rss_before_mb": round(rss_before, 1) if rss_before else None,
                "rss_after_mb": round(rss_after, 1) if rss_after else None,
                "rss_over_baseline_mb": round(rss_after - base_rss, 1) if rss_after and base_rss else None,
                "log_bytes": (log_path.stat().st_size if log_path.exists() else 0) - log_before,
                "node_alive": procs[TARGET].poll() is None if procs else None,
                "load_average_1m": round(os.getloadavg()[0], 2),
            }
            entry["within_bounds"] = bool(entry["p50_ratio_to_baseline"] is not None
                                          and entry["p50_ratio_to_baseline"] <= 2.0
                                          and entry["rss_over_baseline_mb"] is not None
                                          and entry["rss_over_baseline_mb"] <= 100
                                          and stats.get("honest_reads", {}).get("refused_or_failed", 0) == 0)
            result["floods"][name] = entry
            print(json.dumps({name: entry}), file=sys.stderr, flush=True)
        result["honest_failures"] = honest.failures
        result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        honest.stop()
        await asyncio.wait_for(honest_task, 40)
        if procs:
            devnet.stop(procs)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, help="a running devnet (default: start a fresh one)")
    ap.add_argument("--pid", type=int, help="with --dir: the process id of val-0, for its memory")
    ap.add_argument("--floods", default=",".join(FLOODS), help="which floods, comma-separated")
    ap.add_argument("--seconds", type=float, default=30.0, help="duration of each flood")
    ap.add_argument("--baseline", type=float, default=20.0, help="seconds of honest load measured first")
    ap.add_argument("--settle", type=float, default=10.0, help="seconds measured after each flood")
    ap.add_argument("--quiet", type=float, default=10.0,
                    help="seconds of honest load measured just before each flood (its ratio's baseline)")
    ap.add_argument("--workers", type=int, default=4, help="honest terminals")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    args.floods = [f for f in args.floods.split(",") if f]
    unknown = [f for f in args.floods if f not in FLOODS]
    if unknown:
        ap.error(f"unknown flood(s) {unknown}; choose from {list(FLOODS)}")
    result = asyncio.run(main_async(args))
    write_result(result, args.out)


if __name__ == "__main__":
    main()
