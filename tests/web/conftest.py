"""Fixtures of the web-client tests: one Chromium and one static /app/ server per module.

Playwright's sync API keeps an event loop running in the test thread while it is started, where
``asyncio.run`` cannot start another; so it is stopped at the end of each module and the tests
of other packages, run after these, are unaffected."""

from __future__ import annotations

import pytest

from tests.web.browserkit import StaticServer, launch


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


@pytest.fixture(scope="module")
def static_server():
    server = StaticServer()
    yield server
    server.stop()
