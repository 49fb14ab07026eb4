#!/usr/bin/env python3
"""Alert to screen in the browser: a crossing committed as pending -> the guardian app shows it.

Starts a local devnet (``--validators``, default 1), registers a post and terminal, enrols a
child whose guardian key is opened in the guardian app in headless Chromium (Debian's chromium,
driven by Playwright), then submits ``--requests`` crossings one after another; each waits for
its commit and for the page to show it, and is then approved so the list stays short. For
every alert:

    latency = visible_ms (the page's clock when the alert card is in the DOM and a frame was
                          drawn, window.custosAlerts)
            - committed_ms (the node's clock when the block holding the request was stored and
                            its events derived, carried in the event)

Both clocks are this machine's, so the figures are meaningful on 127.0.0.1 only.

    .venv/bin/python scripts/bench_browser_alert_latency.py --requests 120 --out browser_latency.json
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.bench_alert_latency import summary
from tests.node.clientkit import PASSPHRASE, World, now_ms
from tests.node.netkit import Net, run
from tests.web.browserkit import chromium_path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=120)
    ap.add_argument("--validators", type=int, default=1)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    from node.client.http import NodeClient

    pool = concurrent.futures.ThreadPoolExecutor(1)  # chain calls run off Playwright's loop
    with tempfile.TemporaryDirectory() as tmp:
        net = Net(Path(tmp) / "net", args.validators)
        net.start()
        try:
            world = pool.submit(World, net, Path(tmp) / "world").result()
            child = pool.submit(lambda: world.enrol("bench", guardians=1, approvals=1,
                                                    deadline_ms=600_000)).result()
            latencies: list[float] = []
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
                page = browser.new_context(viewport={"width": 360, "height": 740}).new_page()
                page.goto(net.url() + "/app/guardian/")
                page.wait_for_selector("body[data-ready]")
                page.set_input_files("#import-file", str(child.guardian_files[0]))
                page.fill("#import-pass", PASSPHRASE.decode())
                page.click("#import button[type=submit]")
                page.wait_for_selector("#link[data-state=live]", timeout=30_000)

                async def submit(raw: bytes) -> dict:
                    async with NodeClient(net.urls) as c:
                        return await c.submit(raw, wait=True)

                for _ in range(args.requests):
                    tx = net.txs.crossing(world.terminal, child.biometric, child.identity, post=world.post,
                                          direction="exit", event_time=now_ms(), destination="RO")
                    pool.submit(run, submit(tx.raw)).result()
                    rid = tx.id.hex()
                    page.wait_for_function("(rid) => window.custosAlerts[rid] !== undefined", arg=rid,
                                           timeout=20_000, polling=5)
                    seen = page.evaluate("(rid) => window.custosAlerts[rid]", rid)
                    latencies.append(seen["visible_ms"] - seen["committed_ms"])
                    approve = net.txs.decide(child.guardians[0], tx.id, child.identity, "approve")
                    pool.submit(run, submit(approve.raw)).result()
                browser.close()
        finally:
            net.stop()
    doc = {"benchmark": "browser alert latency (pending committed -> visible in the guardian app)",
           "validators": args.validators, "requests": args.requests, "machine": platform.machine(),
           "cpus": os.cpu_count(), "python": platform.python_version(), "finished_ms": int(time.time() * 1000),
           "latency": summary(latencies)}
    text = json.dumps(doc, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
