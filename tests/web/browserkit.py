"""Headless Chromium for the web-client tests: Debian's chromium driven by Playwright.

``scripts/test.sh`` installs both on a fresh machine; if Chromium is still missing the tests fail
with a message saying so (they never skip silently). Screenshots go to ``build/screenshots/``
(an artifact directory; the best are copied to ``docs/screenshots/`` by hand), and
:func:`check_accessibility` runs axe-core (vendored in ``tests/web/vendor/``, never served by the
app) inside the page.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import shutil
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(os.environ.get("CUSTOS_SCREENSHOTS", ROOT / "build" / "screenshots"))
AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"
VECTORS = ROOT / "tests" / "vectors"
PHONE = {"width": 360, "height": 740}
DESKTOP = {"width": 1280, "height": 860}


def off_loop(fn, *args):
    """Call ``fn(*args)`` in a worker thread: Playwright's sync API keeps an event loop running
    in the test's thread, where ``asyncio.run`` (the chain helpers) cannot start another."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args).result()


def chromium_path() -> str:
    path = os.environ.get("CUSTOS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("Chromium is not installed: the web-client tests need Debian's chromium package "
                    "(scripts/test.sh installs it with apt-get; or set CUSTOS_CHROMIUM to a Chromium binary)")
    return path


def launch(playwright):
    # A TLS devnet's certificates come from its own CA, which this browser does not trust. The
    # tests accept them browser-wide (a context's ignore_https_errors still refuses a service
    # worker's script); a user imports the CA instead, or runs --plain-http (docs/TRANSPORT.md)
    return playwright.chromium.launch(executable_path=chromium_path(),
                                      args=["--no-sandbox", "--ignore-certificate-errors"])


def new_context(browser, *, phone: bool = True, axe: bool = True, **kwargs):
    kwargs.setdefault("ignore_https_errors", True)  # as launch(): the devnet's CA (tests only)
    ctx = browser.new_context(viewport=PHONE if phone else DESKTOP, **kwargs)
    if axe:
        ctx.add_init_script(path=str(AXE))  # injected by the browser, so the page's CSP still holds
    return ctx


def watch_errors(page) -> list[str]:
    """Collect the page's uncaught errors and console errors (CSP violations included)."""
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" and not expected(m.text)
            else None)
    return errors


def expected(text: str) -> bool:
    """A refusal the page expects and handles: a guardian's stream is refused (403) until a child
    is enrolled with the key."""
    return "Failed to load resource" in text and "(Forbidden)" in text


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    width = page.viewport_size["width"] if page.viewport_size else 0
    path = SCREENSHOTS / f"{name}-{width}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def check_accessibility(page, what: str) -> None:
    """axe-core's WCAG 2 A/AA rules on the page as it is now; fails naming each violation."""
    violations = page.evaluate(
        """async () => (await axe.run(document, {runOnly: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}))
           .violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                  nodes: v.nodes.slice(0, 3).map(n => n.target.join(" "))}))""")
    assert violations == [], f"accessibility violations on {what}: {json.dumps(violations, indent=1)}"


def both_widths(page, name: str, what: str) -> None:
    """Screenshot at phone and desktop widths, checking accessibility at each."""
    for size in (PHONE, DESKTOP):
        page.set_viewport_size(size)
        page.wait_for_timeout(100)
        check_accessibility(page, f"{what} at {size['width']} px")
        screenshot(page, name)
    page.set_viewport_size(PHONE)


class StaticServer:
    """The /app/ routes alone on 127.0.0.1 (no chain): for tests of the pages themselves."""

    def __init__(self) -> None:
        from aiohttp import web

        from node.web.routes import WebApps

        self._web = web
        self.app = web.Application()
        self.app.add_routes(WebApps().routes())
        self.loop = asyncio.new_event_loop()
        self.url = ""
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        if not ready.wait(10):
            raise TimeoutError("the static server did not start")

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        runner = self._web.AppRunner(self.app, access_log=None)
        self.loop.run_until_complete(runner.setup())
        site = self._web.TCPSite(runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        self._runner = runner
        ready.set()
        self.loop.run_forever()

    def stop(self) -> None:
        fut = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop)
        fut.result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
