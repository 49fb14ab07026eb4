"""Soak run (``--run-slow``): a minute of open-loop load on four validators, one of them killed
and restarted in the middle; every transaction commits, the chains agree, and a full audit of a
validator's data directory passes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.node.netkit import Net

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_a_minute_of_load_with_a_validator_killed_midway(tmp_path):
    net = Net(tmp_path / "net", validators=4, heartbeat_ms=1000)
    net.start()
    out = tmp_path / "load.json"
    try:
        def chaos():
            time.sleep(25)
            net.kill("val-2", signal.SIGKILL)
            time.sleep(10)
            net.start("val-2")

        t = threading.Thread(target=chaos)
        t.start()
        subprocess.run([sys.executable, str(ROOT / "scripts" / "load.py"), "--dir", str(net.dir), "--rate", "300",
                        "--duration", "60", "--drain-s", "60", "--out", str(out)], check=True, timeout=300,
                       cwd=ROOT)
        t.join(60)
        result = json.loads(out.read_text())
        assert result["rejected"] == 0
        assert result["committed"] == result["sent"] == 18_000
        net.wait_height(net.height("val-0"), "val-2", timeout_s=60)
        heights = [net.height(n) for n in ("val-0", "val-1", "val-2", "val-3")]
        upto = min(heights)
        assert len({net.get(n, f"/v1/blocks/{upto}")["hash"] for n in ("val-0", "val-1", "val-2", "val-3")}) == 1
    finally:
        net.stop()
    audit = subprocess.run([sys.executable, "-m", "node.cli", "audit", "verify", "--data-dir", str(net.dir / "val-2"),
                            "--genesis", str(net.dir / "genesis.toml"), "--json", "--no-progress"],
                           capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert audit.returncode == 0, audit.stdout[-2000:] + audit.stderr[-2000:]
    assert json.loads(audit.stdout)["ok"] is True
