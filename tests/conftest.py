"""Shared test options: ``--run-slow`` enables soak and benchmark-sized runs."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", default=False,
                     help="also run tests marked slow (soak runs, large simulations)")
    group = parser.getgroup("custos consensus simulation")
    group.addoption("--sim-seeds", type=int, default=None,
                    help="consensus simulator seeds (default: $CUSTOS_SIM_SEEDS, or 1000; 2000 with --run-slow)")
    group.addoption("--sim-first-seed", type=int, default=0, help="first simulator seed")
    group.addoption("--sim-chunk", type=int, default=100, help="seeds per simulation test")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A failing test that ran node processes (or used running ones) reports the end of each
    node's log."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "teardown" or not report.failed:
        return
    from tests.node.netkit import RECENT

    for net in RECENT:
        if net.dir.exists() and (net.procs or net.started_at >= call.start):
            report.sections.append((f"node logs {net.dir.name}", net.log_tails()))
