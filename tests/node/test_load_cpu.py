"""The load generator counts a node's CPU with that of its worker processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from load import cpu_ms_by_config  # noqa: E402

# a "node" whose worker (another program, as a fork server's children are) burns about 0.4 s
# of CPU, then both wait to be stopped
NODE = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import time\\nend = time.process_time() + 0.4\\n"
                  "while time.process_time() < end: pass\\ntime.sleep(60)"])
time.sleep(60)
"""


def test_a_nodes_cpu_includes_its_workers(tmp_path):
    config = tmp_path / "node.toml"
    config.write_text("")
    script = tmp_path / "node.py"
    script.write_text(NODE)
    proc = subprocess.Popen([sys.executable, str(script), "--config", str(config)], start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        cpu = {}
        while time.monotonic() < deadline:
            cpu = cpu_ms_by_config({str(config.resolve()): "n1", str(tmp_path / "other.toml"): "n2"})
            if cpu.get("n1", 0) >= 400:
                break
            time.sleep(0.05)
        assert 400 <= cpu["n1"] < 5000 and "n2" not in cpu
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the node and its worker
        proc.wait()
