"""Four validators formed by the genesis ceremony, over the emulated WAN (node.testbed.wanproxy):
20-120 ms one-way per link, jitter, 1% of segments late by a retransmission timeout.

Both are slow (``--run-slow``; the ceremony itself is in the default run, tests/node/test_ceremony.py):
a smoke run in which the network forms, commits crossings offered at 20/s through the proxy, and
every one commits; and the three offered rates with a 2|2 partition that halts the chain,
acknowledges transactions on both sides, heals, resumes and loses none.
Both run ``scripts/bench_wan.py`` (its JSON is what the tests read).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_wan.py"


def bench(tmp_path: Path, *args: str, timeout_s: float) -> dict:
    out = tmp_path / "wan.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--dir", str(tmp_path / "net"), "--out", str(out), *args],
                          capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.slow
def test_a_ceremony_formed_network_commits_through_the_wan_proxy(tmp_path):
    result = bench(tmp_path, "--rates", "20", "--duration", "3", "--drain-s", "20", "--no-partition", timeout_s=120)
    assert len(result["genesis_hashes_printed"]) == 1  # every operator's finalize printed the same hash
    delays = result["one_way_delay_ms"].values()
    assert len(delays) == 6 and all(20 <= d <= 120 for d in delays)
    (rate,) = result["rates"]
    assert rate["sent"] == 60 and rate["committed"] == 60 and rate["rejected"] == 0
    assert rate["finality_ms"]["p50"] >= 40  # a round trip at least: the WAN is really in the way


@pytest.mark.slow
def test_wan_rates_and_a_two_two_partition_that_halts_heals_and_loses_nothing(tmp_path):
    result = bench(tmp_path, "--duration", "10", timeout_s=900)
    assert [r["offered_tx_per_s"] for r in result["rates"]] == [20, 200, 1000]
    for r in result["rates"]:
        assert r["committed"] > 0
    low = result["rates"][0]
    assert low["committed"] == low["sent"]
    split = result["partition"]
    assert split["halted"] and split["resumed"]
    assert split["acknowledged_during_partition"] > 0 and split["lost"] == 0
