"""Faults against real node processes, and the checks that follow them.

:class:`Load` submits crossings of adult travellers at a steady rate, failing over between
nodes as a terminal does, and remembers every crossing a node acknowledged. :func:`recovered`
waits until every validator is connected to every other and all of them commit again, and
says how long that took. :func:`chain_counts` reads every block of a node and counts how often
each transaction id appears in the chain, so "committed exactly once" is checked against the
blocks themselves, not against a status a node reports.

Every loop here is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import Counter
from collections.abc import Iterable

from node.client.http import NodeClient, NodeUnreachable, ProblemError
from node.ops.scrape import read_metrics
from tests.node.netkit import Net, Traveller


def configure(net: Net, name: str, section: str, **values: object) -> None:
    """Set ``values`` in section ``[section]`` of node ``name``'s config (before it starts)."""
    path = net.dir / name / "node.toml"
    lines = path.read_text().splitlines()
    at = lines.index(f"[{section}]") + 1
    lines[at:at] = [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    path.write_text("\n".join(lines) + "\n")


def rss_mb(net: Net, name: str) -> float:
    """Resident memory of node ``name``'s process."""
    with open(f"/proc/{net.procs[name].pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def metric(net: Net, name: str, metric_name: str, timeout_s: float = 2.0) -> float | None:
    """One value of a node's ``/metrics``, or None if the node does not answer or lacks it."""
    samples = read_metrics(net.url(name) + "/metrics", timeout_s)
    return None if samples is None else samples.get(metric_name)


def peers_connected(net: Net, name: str) -> int:
    return int(metric(net, name, "custos_p2p_peers_connected") or 0)


def dialers_running(net: Net, name: str) -> int:
    """How many configured peers ``name`` is still dialling (each, or it lost that peer for good)."""
    return int(metric(net, name, "custos_p2p_dialers_running") or 0)


def pause(net: Net, name: str) -> None:
    """SIGSTOP: the process keeps its sockets but runs nothing (a VM stall, a long GC pause)."""
    os.kill(net.procs[name].pid, signal.SIGSTOP)


def resume(net: Net, name: str) -> None:
    os.kill(net.procs[name].pid, signal.SIGCONT)


class Load:
    """Crossings at ``rate`` per second to ``urls`` until :meth:`stop`; ``acknowledged`` holds
    the ids a node answered "accepted" or "committed" for."""

    def __init__(self, net: Net, traveller: Traveller, urls: list[str], rate: float = 10.0) -> None:
        self.net = net
        self.traveller = traveller
        self.urls = urls
        self.rate = rate
        self.acknowledged: list[bytes] = []
        self.unanswered = 0
        self._stop = asyncio.Event()

    async def run(self) -> None:
        # a short timeout: a paused node must not hold the stream up, the next one is asked
        async with NodeClient(self.urls, timeout_s=1.5) as client:
            next_at = time.monotonic()
            while not self._stop.is_set():
                tx = self.traveller.crossing(self.net.txs)
                try:
                    doc = await client.submit(tx.raw)
                    if doc.get("status") in ("accepted", "committed"):
                        self.acknowledged.append(tx.id)
                except (NodeUnreachable, ProblemError):
                    self.unanswered += 1
                next_at += 1 / self.rate
                delay = next_at - time.monotonic()
                if delay > 0:
                    try:
                        await asyncio.wait_for(self._stop.wait(), delay)
                    except TimeoutError:
                        pass
                else:
                    next_at = time.monotonic()

    def stop(self) -> None:
        self._stop.set()


def height_or_none(net: Net, name: str) -> int | None:
    try:
        return net.height(name)
    except OSError:
        return None


async def recovered(net: Net, names: Iterable[str], timeout_s: float) -> float:
    """Seconds until every node of ``names`` has all the others as peers, dials all of them,
    and all passed the height the furthest one had at the start. Raises TimeoutError with the
    state it last saw."""
    names = list(names)
    started = time.monotonic()
    deadline = started + timeout_s
    target: int | None = None
    state: dict = {}
    while time.monotonic() < deadline:
        heights = {n: await asyncio.to_thread(height_or_none, net, n) for n in names}
        peers = {n: await asyncio.to_thread(peers_connected, net, n) for n in names}
        dialers = {n: await asyncio.to_thread(dialers_running, net, n) for n in names}
        if target is None and all(h is not None for h in heights.values()):
            target = max(heights.values()) + 1  # type: ignore[type-var]
        state = {"heights": heights, "peers": peers, "dialers": dialers, "target": target}
        if (target is not None and all(h is not None and h >= target for h in heights.values())
                and all(p >= len(names) - 1 for p in peers.values())
                and all(d >= len(names) - 1 for d in dialers.values())):
            return time.monotonic() - started
        await asyncio.sleep(0.25)
    raise TimeoutError(f"no recovery within {timeout_s:.0f} s: {state}")


async def committed_ids(url: str, ids: list[bytes], timeout_s: float) -> set[bytes]:
    """The ids of ``ids`` that ``url`` reports committed within ``timeout_s`` (polled)."""
    done: set[bytes] = set()
    deadline = time.monotonic() + timeout_s
    async with NodeClient(url, timeout_s=5) as client:
        while len(done) < len(ids) and time.monotonic() < deadline:
            for tx_id in ids:
                if tx_id in done:
                    continue
                try:
                    if (await client.tx(tx_id))["status"] == "committed":
                        done.add(tx_id)
                except ProblemError as exc:
                    if exc.status != 404:
                        raise
            if len(done) < len(ids):
                await asyncio.sleep(0.5)
    return done


def chain_counts(net: Net, name: str) -> Counter[bytes]:
    """How many times each transaction id appears in the blocks ``name`` serves."""
    counts: Counter[bytes] = Counter()
    for height in range(1, net.height(name) + 1):
        block = net.get(name, f"/v1/blocks/{height}")
        counts.update(bytes.fromhex(t) for t in block["tx_ids"])
    return counts
