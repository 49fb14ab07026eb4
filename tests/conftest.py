"""Shared test options: ``--run-slow`` enables soak and benchmark-sized runs."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", default=False,
                     help="also run tests marked slow (soak runs, large simulations)")
    group = parser.getgroup("custos consensus simulation")
    group.addoption("--sim-seeds", type=int, default=None,
                    help="number of consensus simulator seeds (default: $CUSTOS_SIM_SEEDS or 1000)")
    group.addoption("--sim-first-seed", type=int, default=0, help="first simulator seed")
    group.addoption("--sim-chunk", type=int, default=100, help="seeds per simulation test")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
