"""Fixtures for the consensus tests, and the option that sets how many seeds to simulate.

``--sim-seeds N`` (declared in the root ``tests/conftest.py``; or the environment variable
``CUSTOS_SIM_SEEDS=N``) runs the simulation
test over seeds ``0..N-1`` (default 400, or 2000 with ``--run-slow``), in chunks of ``--sim-chunk`` seeds (default 100),
so a failing chunk names its seeds and a long run shows progress.
"""

from __future__ import annotations

import os

import pytest
from consensus_harness import Net

DEFAULT_SIM_SEEDS = 400
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


@pytest.fixture
def net() -> Net:
    """Four validators of equal stake; the engine belongs to one that proposes neither round 0 nor 1."""
    return Net()
