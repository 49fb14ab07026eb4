"""The guardian story in the browser, through a real devnet: a guardian makes a key in the
browser, is enrolled with it, receives the alert, approves; the second guardian (another browser
context, a key file opened in the browser) denies; the chain shows the crossing denied. A
tampered or replayed browser request is refused like any other."""

from __future__ import annotations

import os
import urllib.error
import urllib.request

import pytest

from ledger.crypto.keys import SigningKey
from node.client.cards import enrol_scans, synthetic_eye
from node.client.http import NodeClient
from node.client.tls import urlopen
from node.keyfile import MINIMAL, write_key_file
from tests.node.clientkit import World, now_ms, signed_get
from tests.node.netkit import Net, run
from tests.web.browserkit import both_widths, new_context, off_loop, screenshot, watch_errors

PASS = "a long test passphrase"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    directory = tmp_path_factory.mktemp("web-guardian")
    net = Net(directory / "net", 1, tls=True)  # the apps over HTTPS, as `custos devnet up` serves them
    net.start()
    try:
        yield off_loop(World, net, directory / "world")
    finally:
        net.stop()


def enrol(world: World, guardians: list[bytes], *, approvals: int, deadline_ms: int = 120_000):
    """A minor enrolled with the given guardian keys; returns (identity, biometric key)."""
    code = synthetic_eye(int.from_bytes(os.urandom(4), "big"), 1)
    biometric = enrol_scans(code).key
    identity = os.urandom(16)
    off_loop(world.submit_all, [world.net.txs.enrol(world.authority, biometric, identity,
                                          majority_day=now_ms() // 86_400_000 + 3650,
                                          guardians=guardians, approvals=approvals, deadline_ms=deadline_ms,
                                          veto=True)])
    return identity, biometric


def cross(world: World, identity: bytes, biometric: SigningKey, *, wait: bool = True) -> dict:
    tx = world.net.txs.crossing(world.terminal, biometric, identity, post=world.post, direction="exit",
                                event_time=now_ms(), destination="RO")

    async def go():
        async with NodeClient(world.net.urls) as c:
            return await c.submit(tx.raw, wait=wait)

    return {**off_loop(run, go()), "id": tx.id.hex()}


def open_guardian(browser, url: str):
    ctx = new_context(browser)
    ctx.grant_permissions(["notifications"], origin=url)
    page = ctx.new_page()
    errors = watch_errors(page)
    page.add_init_script("""(() => {
      window.custosNotifications = [];
      const Real = window.Notification;
      window.Notification = class extends Real {
        constructor(title, options) { super(title, options); window.custosNotifications.push({title, ...options}); }
      };
    })()""")
    page.goto(url + "/app/guardian/")
    page.wait_for_selector("body[data-ready]")
    return ctx, page, errors


def create_key(page) -> bytes:
    page.fill("#create-label", "phone")
    page.fill("#create-pass", PASS)
    page.fill("#create-pass2", PASS)
    page.click("#create button[type=submit]")
    page.wait_for_function("() => document.querySelector('#public').textContent.length === 64", timeout=30_000)
    return bytes.fromhex(page.text_content("#public"))


def import_key(page, path) -> bytes:
    page.set_input_files("#import-file", str(path))
    page.fill("#import-pass", PASS)
    page.click("#import button[type=submit]")
    page.wait_for_function("() => document.querySelector('#public').textContent.length === 64", timeout=30_000)
    return bytes.fromhex(page.text_content("#public"))


def wait_alert(page, request_id: str, timeout_ms: int = 20_000):
    page.click("[data-tab=alerts]")
    return page.wait_for_selector(f"[data-request='{request_id}']", timeout=timeout_ms)


def test_guardians_approve_and_deny_in_the_browser(browser, world, tmp_path) -> None:
    url = world.net.url()
    ctx1, page1, errors1 = open_guardian(browser, url)
    key1 = create_key(page1)
    both_widths(page1, "guardian-key", "the guardian's key screen")
    # the backup downloads as a key file the CLI opens
    with page1.expect_download() as dl:
        page1.click("#backup")
    backup = tmp_path / "backup.key"
    dl.value.save_as(backup)
    from node.keyfile import load_key_file
    assert load_key_file(backup, PASS.encode()).public == key1

    second = SigningKey.generate()
    key_path = tmp_path / "second.key"
    write_key_file(key_path, second, PASS.encode(), label="second guardian", cost=MINIMAL)
    ctx2, page2, errors2 = open_guardian(browser, url)
    key2 = import_key(page2, key_path)
    assert key2 == second.public

    identity, biometric = enrol(world, [key1, key2], approvals=2)
    result = cross(world, identity, biometric)
    rid = result["id"]
    assert result["crossing_status"] == "pending"

    card = wait_alert(page1, rid)
    assert "MD-LEU" in card.inner_text() or "Leuseni" in card.inner_text()
    assert page1.text_content(f"[data-request='{rid}'] .countdown").startswith("Decide within")
    assert any(n["tag"] == rid for n in page1.evaluate("window.custosNotifications"))
    both_widths(page1, "guardian-alert", "an alert")
    page1.click(f"[data-request='{rid}'] [data-action=approve]")
    page1.wait_for_selector("#confirm[open]")
    screenshot(page1, "guardian-confirm")
    page1.click("#confirm-ok")
    page1.wait_for_selector(f"[data-request='{rid}'] >> text=You approved", timeout=20_000)

    wait_alert(page2, rid)
    page2.click(f"[data-request='{rid}'] [data-action=deny]")
    page2.wait_for_selector("#confirm[open]")
    page2.select_option("#reason", "safety-concern")
    page2.click("#confirm-ok")
    page2.wait_for_selector("#outcomes >> text=denied", timeout=20_000)
    page1.wait_for_selector("#outcomes >> text=denied", timeout=20_000)  # the first guardian hears it too

    # the chain shows the outcome
    status, doc, _ = signed_get(url, f"/v1/requests/{rid}", world.authority, world.net.chain_id)
    assert status == 200 and doc["status"] == "denied"
    assert doc["approvals"] == [key1.hex()] and doc["denials"] == [key2.hex()]

    # the children tab shows the history, with a label kept on the phone only
    page1.click("[data-tab=children]")
    page1.fill(f"#label-{identity.hex()}", "Ana")
    page1.press(f"#label-{identity.hex()}", "Tab")
    page1.click("#wards >> text=Crossing history")
    page1.wait_for_selector("#history-rows >> text=denied")
    both_widths(page1, "guardian-children", "the children screen")
    assert errors1 == [] and errors2 == [], errors1 + errors2
    ctx1.close()
    ctx2.close()


def _replay(url: str, path: str, headers: dict) -> int:
    req = urllib.request.Request(url + path, headers=headers)
    try:
        with urlopen(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_rejects_tampered_and_replayed_browser_requests(browser, world) -> None:
    """Capture the signed requests the page sends, then replay and alter them from outside."""
    url = world.net.url()
    ctx, page, _ = open_guardian(browser, url)
    captured: list[tuple[str, dict]] = []
    page.on("request", lambda r: captured.append((r.url, r.headers)) if "whoami" in r.url else None)
    key = create_key(page)
    enrol(world, [key], approvals=1)
    page.click("[data-tab=children]")
    page.wait_for_selector("#wards li", timeout=20_000)
    assert captured, "the page sent no signed read"
    sent_url, headers = captured[-1]
    path = sent_url[len(url):]
    signed = {k: v for k, v in headers.items() if k.lower().startswith("custos-")}
    assert _replay(url, path, signed) == 401  # replayed: its nonce was used
    tampered = dict(signed)
    tampered["custos-nonce"] = "00" * 16
    assert _replay(url, path, tampered) == 401  # altered: the signature no longer verifies
    other_path = path.replace("whoami", "whoami") + "?x=1"
    assert _replay(url, other_path, signed) == 401  # another query: not what was signed
    ctx.close()
