"""Fixtures for the consensus tests, and the option that sets how many seeds to simulate.

``--sim-seeds N`` (declared in the root ``tests/conftest.py``; or the environment variable
``CUSTOS_SIM_SEEDS=N``) runs the simulation test over seeds ``0..N-1`` (default 1000, or 2000
with ``--run-slow``), in chunks of ``--sim-chunk`` seeds (default 100), so a failing chunk names
its seeds and a long run shows progress. The first chunk runs in the test process (so coverage
sees the replica under faults), the others on one worker process per core.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

import pytest
from consensus_harness import Net

from node.audit.pool import available_cores, threadsafe_context

DEFAULT_SIM_SEEDS = 1000
SLOW_SIM_SEEDS = 2000


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "sim_seeds" not in metafunc.fixturenames:
        return
    cfg = metafunc.config
    count = cfg.getoption("--sim-seeds")
    if count is None:
        default = SLOW_SIM_SEEDS if cfg.getoption("--run-slow") else DEFAULT_SIM_SEEDS
        count = int(os.environ.get("CUSTOS_SIM_SEEDS", default))
    first = cfg.getoption("--sim-first-seed")
    chunk = max(1, cfg.getoption("--sim-chunk"))
    ranges = [range(lo, min(lo + chunk, first + count)) for lo in range(first, first + count, chunk)]
    metafunc.parametrize("sim_seeds", ranges, ids=[f"seeds{r.start}-{r.stop - 1}" for r in ranges])


@pytest.fixture(scope="session")
def sim_pool() -> Iterator[ProcessPoolExecutor]:
    """Worker processes for simulator seeds (a fork server: the test process may run threads)."""
    ctx = threadsafe_context(["node.consensus.simulator"])
    with ProcessPoolExecutor(available_cores(), mp_context=ctx) as pool:
        yield pool


@pytest.fixture
def net() -> Net:
    """Four validators of equal stake; the engine belongs to one that proposes neither round 0 nor 1."""
    return Net()
