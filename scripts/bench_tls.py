"""Benchmark TLS on the client API against plain HTTP, on real node processes.

    python scripts/bench_tls.py [--requests 300] [--out FILE]

Starts two one-validator devnets on 127.0.0.1 in the same run, one plain HTTP (the baseline)
and one with TLS (a local CA's ECDSA P-256 certificate, as ``custos devnet up`` makes it), and
measures on each, one client thread, requests one after another:

* ``connect``: a new connection per request (TCP, then the TLS handshake) and ``GET /healthz``;
* ``keepalive``: ``GET /v1/status`` on one kept-alive connection;
* ``signed``: a signed read that the access log records (a council member's
  ``GET /v1/blocks/1`` with purpose ``audit``) on one kept-alive connection.

Prints JSON: median and 90th percentile in ms for each, and each TLS median as a ratio to the
plain one.
"""

from __future__ import annotations

import argparse
import http.client
import json
import platform
import shutil
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchkit import write_result

from ledger.crypto.keys import SigningKey
from node import devnet
from node.access.signature import sign_request
from node.client.tls import client_context
from node.keyfile import load_key_file


def connection(url: str) -> http.client.HTTPConnection:
    host, _, port = url.split("://", 1)[1].partition(":")
    if url.startswith("https://"):
        return http.client.HTTPSConnection(host, int(port), timeout=10, context=client_context())
    return http.client.HTTPConnection(host, int(port), timeout=10)


def get(conn: http.client.HTTPConnection, path: str, headers: dict | None = None) -> bytes:
    conn.request("GET", path, headers=headers or {})
    resp = conn.getresponse()
    body = resp.read()
    if resp.status != 200:
        raise RuntimeError(f"{path}: {resp.status} {body[:200]!r}")
    return body


def timed(n: int, once) -> dict:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        once()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {"median_ms": round(statistics.median(samples), 3), "p90_ms": round(samples[int(0.9 * (n - 1))], 3)}


def measure(url: str, n: int, council: SigningKey, chain_id: str) -> dict:
    def fresh() -> None:
        conn = connection(url)
        try:
            get(conn, "/healthz")
        finally:
            conn.close()

    conn = connection(url)
    node = bytes.fromhex(json.loads(get(conn, "/v1/status"))["node_id"])
    try:
        return {
            "connect": timed(n, fresh),
            "keepalive": timed(n, lambda: get(conn, "/v1/status")),
            "signed": timed(n, lambda: get(conn, "/v1/blocks/1", sign_request(
                council, chain_id, "GET", "/v1/blocks/1", node=node, purpose="audit"))),
        }
    finally:
        conn.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=300, help="requests per measurement (default 300)")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="custos-bench-tls-"))
    procs: dict = {}
    result: dict = {"benchmark": "tls", "requests": args.requests, "python": platform.python_version(),
                    "openssl": ssl.OPENSSL_VERSION}
    try:
        nets = {}
        for name, tls in (("plain", False), ("tls", True)):
            nodes = devnet.create(work / name, 1, heartbeat_ms=1000, tls=tls)
            procs.update({f"{name}/{k}": v for k, v in devnet.launch(work / name, nodes).items()})
            nets[name] = nodes
        for nodes in nets.values():
            devnet.wait_ready(nodes, timeout_s=60)
        for name, nodes in nets.items():
            doc = json.loads((work / name / devnet.DESCRIPTION).read_text())
            passphrase = (work / name / "passphrase").read_bytes().strip()
            council = load_key_file(work / name / doc["council"][0], passphrase)
            for _ in range(100):  # block 1 exists once the chain has moved
                conn = connection(nodes[0].url)
                height = json.loads(get(conn, "/v1/status"))["height"]
                conn.close()
                if height >= 1:
                    break
                time.sleep(0.2)
            result[name] = measure(nodes[0].url, args.requests, council, doc["chain_id"])
        result["tls_vs_plain"] = {k: round(result["tls"][k]["median_ms"] / result["plain"][k]["median_ms"], 2)
                                  for k in ("connect", "keepalive", "signed")}
    finally:
        devnet.stop(procs)
        shutil.rmtree(work, ignore_errors=True)
    write_result(result, args.out)


if __name__ == "__main__":
    main()
