"""Fixtures of the web-client tests: one Chromium per session, a static /app/ server per module."""

from __future__ import annotations

import pytest

from tests.web.browserkit import StaticServer, launch


@pytest.fixture(scope="session")
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
