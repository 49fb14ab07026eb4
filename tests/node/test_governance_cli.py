"""Governance that evolves, through real processes: the council changes a parameter at a future
height and replaces itself; the chain follows, and an audit of the node's store passes."""

from __future__ import annotations

import json

from tests.node.clientkit import cli, json_lines, key_file
from tests.node.netkit import Net


def council(net: Net, *args: str, check: bool = True):
    return cli("council", *args, "--devnet", str(net.dir), "--json", check=check)


def test_parameter_and_council_changes_commit_apply_and_audit(net: Net, tmp_path):
    start = net.height()
    day_ms = 86_400_000
    at = start + 15  # well ahead: blocks come every 300 ms while the command runs
    changed = json_lines(council(net, "set-params", "--at", str(at), "--set", f"max_consent_ms={day_ms}",
                                 "--set", "retention_days=400").stdout)[0]
    assert changed["status"] == "committed"
    assert net.get("val-0", "/v1/status")["params"]["max_consent_ms"] != day_ms  # not before its height

    # the council grows from 2-of-3 to 3-of-4
    newcomer_file, _ = key_file(tmp_path, "newcomer")
    members = [str(net.dir / p) for p in json.loads((net.dir / "devnet.json").read_text())["council"]]
    args = [a for m in [*members, str(newcomer_file)] for a in ("--member", m)]
    assert json_lines(council(net, "set-council", *args, "--threshold", "3").stdout)[0]["status"] == "committed"

    net.wait_height(at, "val-0")
    status = net.get("val-0", "/v1/status")
    assert status["params"]["max_consent_ms"] == day_ms and status["params"]["retention_days"] == 400

    # a typo in a parameter's name is a one-line error, exit 2
    bad = council(net, "set-params", "--at", str(at + 10), "--set", "max_consent=1", check=False)
    assert bad.returncode == 2 and "NAME one of" in bad.stderr and "Traceback" not in bad.stderr

    height = net.height()
    net.stop()
    audit = cli("audit", "verify", "--data-dir", str(net.dir / "val-0"), "--genesis", str(net.dir / "genesis.toml"),
                "--json", timeout_s=120)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert json.loads(audit.stdout)["checked_height"] >= height
