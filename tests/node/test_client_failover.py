"""The node client moves past a node that accepts connections but never answers (a stalled
process: the kernel still completes the TCP handshake) within its configured time limit."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from node.client.http import NodeClient, NodeUnreachable


async def _silent_server() -> tuple[asyncio.AbstractServer, str]:
    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 16)  # reads the request, answers nothing
        await asyncio.sleep(3600)

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


async def _answering_server() -> tuple[web.AppRunner, str]:
    async def status(_request: web.Request) -> web.Response:
        return web.json_response({"chain_id": "stand-in", "height": 7})

    app = web.Application()
    app.router.add_get("/v1/status", status)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


def test_a_silent_node_is_passed_over_within_the_time_limit():
    async def go() -> tuple[float, dict, bool]:
        silent, silent_url = await _silent_server()
        runner, good_url = await _answering_server()
        try:
            async with NodeClient([silent_url, good_url], timeout_s=0.5) as client:
                started = time.monotonic()
                status = await asyncio.wait_for(client.status(), 10)
                return time.monotonic() - started, status, client.current_url == good_url
        finally:
            silent.close()
            await runner.cleanup()

    took, status, moved_on = asyncio.run(go())
    assert status == {"chain_id": "stand-in", "height": 7}
    assert took < 3.0, f"the client waited {took:.1f} s on a node that never answers"
    assert moved_on, "the next request would go to the silent node again"


def test_a_lone_silent_node_is_reported_unreachable_not_waited_for():
    async def go() -> float:
        silent, silent_url = await _silent_server()
        try:
            async with NodeClient(silent_url, timeout_s=0.5) as client:
                started = time.monotonic()
                try:
                    await asyncio.wait_for(client.status(), 10)
                except NodeUnreachable:
                    return time.monotonic() - started
                raise AssertionError("a node that never answers gave a status")
        finally:
            silent.close()

    assert asyncio.run(go()) < 3.0
