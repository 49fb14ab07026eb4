"""scripts/bench_statesync.py end to end on a small chain (slow: real processes, a minute or so).
The figures it prints for 100,000 crossings are in the README."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_state_sync_benchmark_measures_both_ways_to_join_in_one_run(tmp_path):
    out = tmp_path / "result.json"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_statesync.py"), "--crossings", "2000",
                    "--children", "200", "--block-txs", "500", "--timeout", "120", "--out", str(out)],
                   check=True, timeout=400, capture_output=True)
    doc = json.loads(out.read_text())
    assert doc["chain"]["transactions"] >= 2000
    sync, replay = doc["state_sync"], doc["replay"]
    assert sync["snapshot_height"] >= doc["chain"]["height"] and sync["chunks"] >= 1
    assert sync["seconds_to_verified_proof"] > 0 and replay["seconds_to_verified_proof"] > 0
    assert doc["state_sync_time_vs_replay"] == pytest.approx(
        sync["seconds_to_verified_proof"] / replay["seconds_to_verified_proof"], abs=0.01)
