"""``custos devnet demo`` plays the whole crossing story against a running devnet and says so."""

from __future__ import annotations

from tests.node.clientkit import cli
from tests.node.netkit import Net


def test_demo_plays_the_whole_story(tmp_path):
    net = Net(tmp_path / "net", validators=1, heartbeat_ms=300, tls=True)  # as `custos devnet up` makes it
    net.start()
    try:
        proc = cli("devnet", "demo", "--dir", str(tmp_path / "net"), timeout_s=240)
    finally:
        net.stop()
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    for expected in ("registered at height", "enrolled at height", "guardian 1 alerted", "guardian 2 alerted",
                     "one approval of two: still pending", "the crossing is permitted",
                     "permitted at once under the consent", "the attempt expired",
                     "the enrolment authority sees the alert", "a stranger's key is refused",
                     "an audit without a key is refused", "the whole chain verifies", "proven included",
                     "demo complete"):
        assert expected in out, expected
    assert "FAILED" not in out
    assert "https://127.0.0.1:" in out  # over TLS, the devnet's CA found in its directory


def test_demo_exits_non_zero_when_no_node_answers(tmp_path):
    Net(tmp_path / "net", validators=1)  # created, never started
    proc = cli("devnet", "demo", "--dir", str(tmp_path / "net"), timeout_s=120)
    assert proc.returncode == 3
    assert "no node reachable" in proc.stdout


def test_demo_needs_a_devnet(tmp_path):
    proc = cli("devnet", "demo", "--dir", str(tmp_path / "nothing-here"))
    assert proc.returncode == 2 and "no devnet" in proc.stderr
