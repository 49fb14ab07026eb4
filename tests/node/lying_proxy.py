"""A lying node for tests: a proxy in front of a real node that changes what it answers.

    python -m tests.node.lying_proxy --listen 127.0.0.1:PORT --upstream http://127.0.0.1:N --lie MODE

``permit``: every crossing request it reports (plain reads and proofs) says "permitted", the proof
kept as the node made it (a lie cannot come with a valid proof). ``hide``: guardians' pending
lists come back empty (as a valid proof of nothing at the node's height). Everything else is
passed through unchanged. It prints ``listening URL`` once ready.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json

import aiohttp
from aiohttp import web

from ledger.state.proof import RecordProof
from ledger.state.records import PERMITTED, REQUEST

HOP = {"content-length", "transfer-encoding", "connection", "content-encoding"}


def permitted(proof_hex: str) -> str:
    proof = RecordProof.decode(bytes.fromhex(proof_hex))
    assert proof.value is not None
    record = dataclasses.replace(REQUEST.decode(proof.value), status=PERMITTED, deadline=0)
    return dataclasses.replace(proof, value=REQUEST.encode(record)).encode().hex()


def lie(mode: str, path: str, doc: dict) -> dict:
    if mode == "permit" and path.startswith("/v1/requests/"):
        if "proof" in doc:
            doc["proof"] = permitted(doc["proof"])
        elif "status" in doc:
            doc["status"] = PERMITTED
    if mode == "hide" and path.startswith("/v1/guardians/") and "/pending" in path:
        if "proofs" in doc:
            doc["proofs"] = []
        if "pending" in doc:
            doc["pending"] = []
    return doc


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--lie", choices=("permit", "hide"), required=True)
    args = parser.parse_args()
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))

    async def forward(request: web.Request) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP | {"host"}}
        async with session.request(request.method, args.upstream + request.raw_path, headers=headers,
                                   data=await request.read()) as resp:
            body = await resp.read()
            out_headers = {k: v for k, v in resp.headers.items() if k.lower() not in HOP}
            if resp.status == 200 and resp.content_type == "application/json":
                doc = lie(args.lie, request.path, json.loads(body))
                body = json.dumps(doc).encode()
            return web.Response(body=body, status=resp.status, headers=out_headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app)
    await runner.setup()
    host, port = args.listen.rsplit(":", 1)
    await web.TCPSite(runner, host, int(port)).start()
    print(f"listening http://{host}:{port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await session.close()


if __name__ == "__main__":
    asyncio.run(main())
