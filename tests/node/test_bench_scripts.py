"""The in-process benchmarks (``scripts/bench_ledger.py``, ``bench_mempool.py``,
``bench_proofs.py``, ``bench_instructions.py``, ``bench_store.py``) run on a tiny chain and
report what the README quotes from them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def bench(tmp_path: Path, name: str, *args: str) -> dict:
    out = tmp_path / f"{name}.json"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / f"{name}.py"), *args, "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    printed = json.loads(proc.stdout)
    assert json.loads(out.read_text()) == printed
    return printed


def test_bench_ledger_reports_rates_and_the_state_maps_share(tmp_path):
    r = bench(tmp_path, "bench_ledger", "--warmup", "2", "--blocks", "2", "--block-txs", "60", "--children", "20")
    assert r["crossings"] == 120 and r["warmup_crossings"] == 120  # the warm-up blocks are applied, not counted
    assert r["raw_ed25519_verify_per_s"] > r["validator_execute_and_commit_tx_per_s"] > 0
    # on a chain this small the share itself is noise (it can come out below zero); its inputs are not
    assert r["state_map_us_per_crossing"] > 0 and r["validator_without_state_map_tx_per_s"] > 0
    assert r["bytes_on_disk_per_crossing"] > 0
    # the validator's time split: its parts are timed on their own and none exceeds the whole
    split = r["validator_us_per_crossing"]
    assert 0 < split["signature_checks"] < split["total"] and 0 < split["decoding"] < split["total"]



def test_bench_ledger_refuses_an_empty_run_in_one_line():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_ledger.py"), "--warmup", "-1"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].endswith("--warmup at least 0")

@pytest.mark.slow
@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_bench_instructions_counts_the_validator_path_and_its_parts(tmp_path):
    """Under valgrind (about three minutes on two cores): the path with signatures costs more
    than without, and without the state map less still; a crossing's two signatures cost about
    two raw verifications."""
    r = bench(tmp_path, "bench_instructions", "--blocks", "1", "--block-txs", "40", "--children", "20",
              "--verifications", "100")
    per = r["instructions_per_crossing"]
    assert per["validator"] > per["validator_without_signatures"] > per["validator_without_state_map"] > 0
    assert 1.8 < r["signature_instructions_per_crossing"] / r["instructions_per_raw_verify"] < 2.2
    assert 0 < r["state_map_share"] < r["state_map_share_without_signatures"] < 1


def test_bench_instructions_refuses_an_empty_run_in_one_line():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_instructions.py"), "--blocks", "0"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].endswith("--blocks, --block-txs, --children and --verifications "
                                                         "must be at least 1")


def test_bench_store_counts_the_state_maps_cpu_with_the_compactions(tmp_path):
    """Two blocks warm the store up, two are counted; the stand-in store (no tree) writes fewer
    bytes, and the shares follow from the parts they print."""
    r = bench(tmp_path, "bench_store", "--blocks", "4", "--warmup", "2", "--block-txs", "40", "--children", "30",
              "--rounds", "1")
    assert r["crossings_counted"] == 80 and r["warmup_crossings"] == 80
    with_, without = r["per_crossing"]["with_state_map"], r["per_crossing"]["without_state_map"]
    assert with_["main_thread_us"] > 0 and without["main_thread_us"] > 0
    assert with_["background_us"] >= 0 and without["background_us"] >= 0
    assert r["store_bytes_per_crossing"]["with_state_map"] > r["store_bytes_per_crossing"]["without_state_map"]
    verify = r["raw_verify_us"]
    assert verify > 0
    expected = 1 - (without["main_thread_us"] + 2 * verify) / (with_["main_thread_us"] + 2 * verify)
    assert r["validator_cpu_lost_to_state_map_main_thread"] == pytest.approx(expected, abs=0.002)
    # the paired run, in one process: the two counted blocks, computing the trees timed within the map's cost
    paired = r["paired_in_one_process"]
    assert paired["blocks"] == 2 and paired["computing_trees_us_per_crossing"] > 0
    assert paired["without_state_map_us_per_crossing"] > 0 and paired["raw_verify_us"] > 0
    share = paired["state_map_us_per_crossing"] / (paired["without_state_map_us_per_crossing"]
                                                   + paired["state_map_us_per_crossing"] + 2 * paired["raw_verify_us"])
    assert paired["validator_rate_lost_to_state_map"] == pytest.approx(share, abs=0.002)
    assert len(r["runs"]["with_state_map"]) == len(r["runs"]["without_state_map"]) == 1


@pytest.mark.parametrize("args, message", [
    (["--blocks", "0"], "--blocks, --block-txs, --children and --rounds must be at least 1"),
    (["--blocks", "3", "--warmup", "3"], "--warmup must leave at least one block to count (0 <= warmup < blocks)"),
])
def test_bench_store_refuses_an_empty_count_in_one_line(args, message):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_store.py"), *args],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].endswith(message)


def test_bench_mempool_runs_fewer_rules_by_footprint(tmp_path):
    r = bench(tmp_path, "bench_mempool", "--backlog", "200", "--block-txs", "50", "--blocks", "2",
              "--children", "40")
    assert r["rules_run_footprint"] < r["rules_run_full"]


def test_bench_proofs_sizes_every_kind_of_proof(tmp_path):
    r = bench(tmp_path, "bench_proofs", "--children", "40", "--blocks", "2", "--block-txs", "40", "--samples", "20")
    assert set(r["proofs"]) == {"global_record", "child_record_present", "child_record_absent",
                                "child_never_enrolled"}
    assert all(p["proof_bytes_mean"] > 0 for p in r["proofs"].values())
    assert r["crossings"] == 80 and r["light_client_us_per_header"] > 0
