"""Damaged or missing storage gives a clear refusal or a failing health check; a node never
starts silently on it, never makes its store or signer state anew over what was there, and
never deletes data. Each case damages a stopped copy of one validator's directory.

Faults are named for what an unlucky operator meets: the signer state lost, LevelDB's
``CURRENT`` file lost (with the consensus directory too), the whole data directory lost, a
table file truncated, a table zeroed under a running node.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import plyvel
import pytest

from node.client.http import NodeClient
from tests.node.netkit import Net, adult_traveller, run

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """A stopped one-validator network with some 30 blocks, its store compacted into tables."""
    net = Net(tmp_path_factory.mktemp("pristine") / "net", validators=1, heartbeat_ms=60_000)
    net.start()
    try:
        traveller = adult_traveller(net, "STORE-1")

        async def go():
            async with NodeClient(net.url()) as c:
                for tx in [*traveller.setup, *(traveller.crossing(net.txs) for _ in range(26))]:
                    assert (await c.submit(tx.raw, wait=True))["status"] == "committed"

        run(go())
    finally:
        net.stop()
    db = plyvel.DB(str(net.dir / "val-0" / "chain"))
    db.compact_range()  # the records move from LevelDB's log into table files
    db.close()
    return net.dir


@pytest.fixture
def copy(pristine, tmp_path) -> Path:
    target = tmp_path / "net"
    shutil.copytree(pristine, target)
    return target


def start(directory: Path, *extra: str, wait_s: float = 30.0) -> subprocess.CompletedProcess:
    """``custos node start`` on val-0 of ``directory``, expected to refuse: its exit and output."""
    cmd = [sys.executable, "-m", "node.cli", "node", "start", "--config", str(directory / "val-0" / "node.toml"),
           *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=wait_s, cwd=ROOT)


def tables(directory: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in (directory / "val-0" / "chain").glob("*.ldb")}


def assert_refused(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 2, proc.stdout[-1000:] + proc.stderr[-1000:]
    assert "Traceback" not in proc.stderr
    message = proc.stderr.strip().splitlines()[-1]
    assert message.startswith("custos: ")
    for word in words:
        assert word in message, message


def test_rejects_a_validator_start_without_its_signer_state(copy):
    privval = copy / "val-0" / "consensus" / "privval.json"
    privval.unlink()
    assert_refused(start(copy), "no signer state", "may have signed before")
    assert not privval.exists()  # not made up anew


def test_rejects_a_store_without_its_current_file_and_deletes_no_table(copy):
    before = tables(copy)
    assert before
    (copy / "val-0" / "chain" / "CURRENT").unlink()
    shutil.rmtree(copy / "val-0" / "consensus")  # the height-0 case: nothing else tells the node it ran
    assert_refused(start(copy), "CURRENT file is missing")
    assert_refused(start(copy, "--init"), "CURRENT file is missing")  # not even a new node's start makes it anew
    assert tables(copy) == before


def test_rejects_a_validator_that_lost_its_whole_data_directory(copy):
    # nothing left tells the node it ran: without its signer state it must not start at height 0
    shutil.rmtree(copy / "val-0" / "chain")
    shutil.rmtree(copy / "val-0" / "consensus")
    assert_refused(start(copy), "no signer state", "--init")
    assert not (copy / "val-0" / "consensus" / "privval.json").exists()


def test_rejects_a_start_on_a_truncated_table(copy):
    for name in tables(copy):
        path = copy / "val-0" / "chain" / name
        with open(path, "r+b") as f:
            f.truncate(path.stat().st_size // 2)
    assert_refused(start(copy), "damaged", "refusing to start")


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_health_fails_once_a_damaged_table_is_read_and_the_audit_names_it(copy):
    net = Net.existing(copy)
    net.start()
    try:
        assert get(net.url() + "/healthz")[0] == 200
        for name, size in tables(copy).items():  # zero the tables' first half under the running node
            fd = os.open(copy / "val-0" / "chain" / name, os.O_WRONLY)
            try:
                os.pwrite(fd, b"\x00" * (size // 2), 0)
            finally:
                os.close(fd)
        deadline = time.monotonic() + 30
        status, doc = get(net.url() + "/healthz")
        while status == 200 and time.monotonic() < deadline:
            time.sleep(0.2)
            status, doc = get(net.url() + "/healthz")
        assert status == 503 and doc["type"].endswith("/storage-damaged"), doc
        assert get(net.url() + "/readyz")[0] == 503
    finally:
        net.stop()
    audit = subprocess.run([sys.executable, "-m", "node.cli", "audit", "verify", "--data-dir", str(copy / "val-0"),
                            "--json", "--no-progress"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert audit.returncode == 1, audit.stdout[-2000:] + audit.stderr[-2000:]
    assert "Traceback" not in audit.stderr
    report = json.loads(audit.stdout)
    assert report["ok"] is False and report["failure"]["check"] == "store-readable", report["failure"]
