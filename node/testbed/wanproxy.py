"""A small asyncio TCP proxy that makes 127.0.0.1 look like a wide-area network.

This machine's kernel has no netem, so links are emulated at the byte-stream level. Every
ordered pair of nodes (a dials b) gets a listener of its own, so each link has its own:

* **delay**: a one-way base delay per pair of nodes, drawn from 20-120 ms (seeded), the same
  both ways;
* **jitter**: each chunk of bytes waits the base delay plus up to +-10% of it; TCP delivers in
  order, so a chunk never overtakes the one before it;
* **loss**: TCP never loses bytes, it resends them. A lost segment therefore arrives one
  retransmission timeout late (200 ms + two base delays), and everything behind it waits: 1%
  of chunks are delayed so;
* **partitions** on command: connections between groups are cut and new ones refused until
  ``heal``. Nodes then see exactly what a real partition shows them: broken and refused
  connections.

Bandwidth is not limited. Run as a process, it reads commands on stdin, one per line, and
answers ``ok`` (or ``error ...``) on stdout::

    python -m node.testbed.wanproxy --links links.json [--seed 1] [--loss 0.01]
    partition val-0,val-1|val-2,val-3
    heal

``links.json``: ``[{"src": "val-0", "dst": "val-1", "listen": "127.0.0.1:PORT",
"target": "127.0.0.1:PORT"}, ...]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

CHUNK = 64 * 1024
MIN_DELAY_MS, MAX_DELAY_MS = 20, 120
JITTER = 0.10
RTO_MS = 200


@dataclass
class Link:
    src: str
    dst: str
    listen: tuple[str, int]
    target: tuple[str, int]
    delay_ms: float
    server: asyncio.AbstractServer | None = None
    conns: set[asyncio.Task] = field(default_factory=set)
    chunks: int = 0
    lost: int = 0


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


class WanProxy:
    def __init__(self, links: list[dict], *, seed: int = 1, loss: float = 0.01) -> None:
        rng = random.Random(seed)
        names = sorted({x["src"] for x in links} | {x["dst"] for x in links})
        self.delay = {}
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                d = rng.uniform(MIN_DELAY_MS, MAX_DELAY_MS)
                self.delay[(a, b)] = self.delay[(b, a)] = d
        self.links = [Link(x["src"], x["dst"], _hostport(x["listen"]), _hostport(x["target"]),
                           self.delay[(x["src"], x["dst"])]) for x in links]
        self.loss = loss
        self.rng = random.Random(seed + 1)
        self.groups: list[set[str]] | None = None

    # ---------------------------------------------------------------- control
    def blocked(self, a: str, b: str) -> bool:
        if self.groups is None:
            return False
        return not any(a in g and b in g for g in self.groups)

    def partition(self, groups: list[set[str]]) -> None:
        self.groups = groups
        for link in self.links:
            if self.blocked(link.src, link.dst):
                for task in list(link.conns):
                    task.cancel()  # the connection is cut: both nodes see it close

    def heal(self) -> None:
        self.groups = None

    # ---------------------------------------------------------------- serving
    async def start(self) -> None:
        for link in self.links:
            link.server = await asyncio.start_server(functools.partial(self._accept, link), *link.listen)

    async def stop(self) -> None:
        for link in self.links:
            if link.server is not None:
                link.server.close()
            for task in list(link.conns):
                task.cancel()
        for link in self.links:
            for task in list(link.conns):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _accept(self, link: Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.blocked(link.src, link.dst):
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        link.conns.add(task)
        try:
            up_r, up_w = await asyncio.open_connection(*link.target)
        except OSError:
            link.conns.discard(task)
            writer.close()
            return
        try:
            await asyncio.gather(self._pipe(link, reader, up_w), self._pipe(link, up_r, writer))
        except (asyncio.CancelledError, OSError):
            pass
        finally:
            link.conns.discard(task)
            for w in (writer, up_w):
                w.close()

    async def _pipe(self, link: Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy one direction with the link's delay, jitter and loss, keeping the byte order."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        last = 0.0

        async def deliver() -> None:
            while True:
                at, data = await queue.get()
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                wait = at - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()

        sender = asyncio.create_task(deliver())
        try:
            while True:
                data = await reader.read(CHUNK)
                delay = link.delay_ms * (1 + self.rng.uniform(-JITTER, JITTER))
                link.chunks += 1
                if data and self.rng.random() < self.loss:
                    link.lost += 1
                    delay += RTO_MS + 2 * link.delay_ms  # resent after a retransmission timeout
                last = max(last, time.monotonic() + delay / 1000)
                queue.put_nowait((last, data))
                if not data:
                    break
            await sender
        finally:
            sender.cancel()

    def stats(self) -> dict:
        return {"links": len(self.links), "chunks": sum(x.chunks for x in self.links),
                "delayed_as_lost": sum(x.lost for x in self.links),
                "one_way_delay_ms": {f"{a}-{b}": round(d, 1) for (a, b), d in sorted(self.delay.items()) if a < b}}


def parse_groups(text: str) -> list[set[str]]:
    return [set(g.split(",")) for g in text.split("|")]


async def _serve(args: argparse.Namespace) -> None:
    proxy = WanProxy(json.loads(Path(args.links).read_text()), seed=args.seed, loss=args.loss)
    await proxy.start()
    print("ready " + json.dumps(proxy.stats()), flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = (await reader.readline()).decode().strip()
        if not line or line == "quit":
            break
        command, _, rest = line.partition(" ")
        if command == "partition":
            proxy.partition(parse_groups(rest))
        elif command == "heal":
            proxy.heal()
        elif command == "stats":
            print(json.dumps(proxy.stats()), flush=True)
            continue
        else:
            print(f"error unknown command {command!r}", flush=True)
            continue
        print("ok", flush=True)
    await proxy.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--links", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--loss", type=float, default=0.01)
    asyncio.run(_serve(ap.parse_args()))


if __name__ == "__main__":
    main()
