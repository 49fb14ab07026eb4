"""Peer links a test can cut: every validator dials its peers through a TCP proxy here.

:meth:`Links.install` rewrites each validator's config so that, for every peer it dials, the
address is a proxy in this process forwarding to the peer's real p2p port (before the nodes
start). :meth:`Links.isolate` then cuts one validator off: its proxied connections are reset
and new ones are closed at once, in both directions, while its API stays reachable (clients
can still submit to it). :meth:`Links.heal` lets them through again. The proxies run on an
event loop of their own, in a thread; everything is on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import threading

from tests.node.netkit import Net


class Links:
    def __init__(self, net: Net) -> None:
        self.net = net
        self.cut: set[str] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="links", daemon=True)
        self._thread.start()
        self._servers: list[asyncio.base_events.Server] = []
        #: open proxied connections by (dialler, dialled): their two writers
        self._open: dict[tuple[str, str], set[asyncio.StreamWriter]] = {}

    def _run(self, coro, timeout_s: float = 10.0):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    # ---------------------------------------------------------------- set-up
    def install(self) -> None:
        """Put a proxy between every validator and each peer it dials (nodes not started yet)."""
        names = list(self.net.nodes)
        for src in names:
            config = self.net.dir / src / "node.toml"
            text = config.read_text()
            for dst in names:
                if dst == src:
                    continue
                real = self.net.nodes[dst].p2p
                if f'address = "{real}"' not in text:
                    continue
                port = self._run(self._serve(src, dst, real))
                text = text.replace(f'address = "{real}"', f'address = "127.0.0.1:{port}"')
            config.write_text(text)

    async def _serve(self, src: str, dst: str, target: str) -> int:
        host, port = target.rsplit(":", 1)

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if src in self.cut or dst in self.cut:
                writer.transport.abort()
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(host, int(port))
            except OSError:
                writer.transport.abort()
                return
            pair = {writer, up_writer}
            self._open.setdefault((src, dst), set()).update(pair)
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                for w in pair:
                    w.transport.abort()
                self._open[(src, dst)].difference_update(pair)

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self._servers.append(server)
        return server.sockets[0].getsockname()[1]

    # ---------------------------------------------------------------- faults
    def isolate(self, name: str) -> None:
        self.cut.add(name)

        async def reset() -> None:
            for (src, dst), writers in self._open.items():
                if name in (src, dst):
                    for w in list(writers):
                        w.transport.abort()

        self._run(reset())

    def heal(self, name: str) -> None:
        self.cut.discard(name)

    def close(self) -> None:
        async def shut() -> None:
            for server in self._servers:
                server.close()
            for writers in self._open.values():
                for w in writers:
                    w.transport.abort()

        try:
            self._run(shut())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.transport.abort()

