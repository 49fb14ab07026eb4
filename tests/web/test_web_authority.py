"""The authority dashboard in the browser, through a real devnet: an enrolment authority opens
its key file in the browser, sees a denied crossing arrive live, filters alerts by post and
time, and reads the child's record stating a purpose."""

from __future__ import annotations

import pytest

from node.client.http import NodeClient
from tests.node.clientkit import PASSPHRASE, World, now_ms
from tests.node.netkit import Net, run
from tests.web.browserkit import both_widths, new_context, off_loop, watch_errors


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    directory = tmp_path_factory.mktemp("web-authority")
    net = Net(directory / "net", 1, tls=True)  # the apps over HTTPS, as `custos devnet up` serves them
    net.start()
    try:
        yield off_loop(World, net, directory / "world")
    finally:
        net.stop()


def submit(world: World, *txs) -> list[dict]:
    async def go():
        async with NodeClient(world.net.urls) as c:
            return [await c.submit(tx.raw, wait=True) for tx in txs]

    return off_loop(run, go())


def test_authority_sees_alerts_live_and_reads_a_record_with_a_purpose(browser, world) -> None:
    child = off_loop(lambda: world.enrol("dan", guardians=1, approvals=1))
    ctx = new_context(browser, phone=False)
    page = ctx.new_page()
    errors = watch_errors(page)
    page.goto(world.net.url() + "/app/authority/")
    page.wait_for_selector("body[data-ready]")
    page.set_input_files("#import-file", str(world.authority_file))
    page.fill("#import-pass", PASSPHRASE.decode())
    page.click("#import button[type=submit]")
    page.wait_for_selector("[data-screen=dashboard]:not([hidden])", timeout=20_000)
    page.wait_for_selector("#link[data-state=live]", timeout=20_000)

    crossing = world.net.txs.crossing(world.terminal, child.biometric, child.identity, post=world.post,
                                      direction="exit", event_time=now_ms(), destination="UA")
    deny = world.net.txs.decide(child.guardians[0], crossing.id, child.identity, "deny", "safety-concern")
    submit(world, crossing, deny)
    rid = crossing.id.hex()
    page.wait_for_selector(f"[data-alert='{rid}'] >> text=denied", timeout=20_000)  # live, no reload

    page.fill("#f-post", "MD-XXX")
    page.click("#filters button[type=submit]")
    page.wait_for_selector(f"[data-alert='{rid}']", state="detached")
    page.fill("#f-post", world.post)
    page.click("#filters button[type=submit]")
    page.wait_for_selector(f"[data-alert='{rid}']")
    both_widths(page, "authority-alerts", "the authority's alerts")

    page.click(f"[data-alert='{rid}'] button")  # picks the child and a purpose
    assert page.input_value("#r-identity") == child.identity.hex()
    page.select_option("#r-purpose", "")
    page.click("#record-form button[type=submit]")
    assert page.is_hidden("#record")  # no purpose, no read
    captured = []
    page.on("request", lambda r: captured.append(r.headers) if "/v1/identities/" in r.url else None)
    page.select_option("#r-purpose", "alert-follow-up")
    page.click("#record-form button[type=submit]")
    page.wait_for_selector("#record-rows >> text=denied", timeout=10_000)
    assert captured and all(h.get("custos-purpose") == "alert-follow-up" for h in captured)
    both_widths(page, "authority-record", "a child's record")
    assert errors == [], errors
    ctx.close()
