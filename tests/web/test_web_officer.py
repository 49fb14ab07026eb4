"""The border officer's console in the browser, driving a real terminal process through a real
devnet: a crossing recorded while every node is down waits in the outbox and is delivered when
the nodes return; the console shows pending, then the decision."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from node.client.http import NodeClient
from tests.node.clientkit import Background, World
from tests.node.netkit import Net, run
from tests.web.browserkit import both_widths, new_context, off_loop, watch_errors


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    directory = tmp_path_factory.mktemp("web-officer")
    net = Net(directory / "net", 1)
    net.start()
    try:
        yield off_loop(World, net, directory / "world")
    finally:
        net.stop()


def test_officer_records_a_crossing_offline_and_sees_it_delivered(browser, world, tmp_path) -> None:
    child = off_loop(lambda: world.enrol("ana", guardians=1, approvals=1))
    terminal_dir = world.init_terminal(tmp_path / "terminal")
    proc = Background("terminal", "run", "--dir", str(terminal_dir), "--json", "--retry", "0.5s",
                      "--console", "127.0.0.1:0")
    try:
        url = proc.expect("the console address", lambda d: d.get("event") == "console")["url"]
        base = url.split("/app/")[0]
        # without the token the console does nothing
        try:
            urllib.request.urlopen(base + "/console/api/state", timeout=5)
            raise AssertionError("the console answered without its token")
        except urllib.error.HTTPError as e:
            assert e.code == 401
        ctx = new_context(browser, phone=False)
        page = ctx.new_page()
        errors = watch_errors(page)
        page.goto(url)
        page.wait_for_selector("[data-screen=console]:not([hidden])")
        assert "#token" not in page.url  # the token leaves the address bar

        world.net.stop()  # every node down
        page.set_input_files("#card", str(child.card))
        page.set_input_files("#scan", str(child.scans[0]))
        page.fill("#destination", "ro")
        page.click("#cross button[type=submit]")
        page.wait_for_selector("[data-stage=waiting]", timeout=60_000)
        page.wait_for_selector("[data-outbox=waiting]", timeout=60_000)
        both_widths(page, "officer-offline", "the console with the nodes down")

        world.net.start()  # the nodes return: the terminal delivers on its own
        page.wait_for_selector("[data-stage=pending]", timeout=60_000)
        rid = page.get_attribute("[data-stage=pending]", "data-request")
        assert proc.expect("delivery", lambda d: d.get("event") == "delivered" and d.get("id") == rid)
        both_widths(page, "officer-pending", "the console with a pending crossing")

        decision = world.net.txs.decide(child.guardians[0], bytes.fromhex(rid), child.identity, "approve")

        async def approve():
            async with NodeClient(world.net.urls) as c:
                return await c.submit(decision.raw, wait=True)

        assert off_loop(run, approve())["status"] == "committed"
        page.wait_for_selector("[data-stage=permitted]", timeout=60_000)
        page.wait_for_selector("#outbox-summary >> text=0 waiting for a node", timeout=60_000)
        both_widths(page, "officer-permitted", "the console with a permitted crossing")
        assert errors == [], errors
        ctx.close()
    finally:
        proc.stop()
