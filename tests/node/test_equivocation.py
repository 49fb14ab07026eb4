"""A validator that signs conflicting votes (run through a test harness) is caught by its peers, and
the evidence committed on chain slashes its stake and jails it out of the validator set."""

from __future__ import annotations

from tests.node.netkit import Net


def test_an_equivocating_validator_ends_up_slashed_and_jailed(tmp_path):
    net = Net(tmp_path / "net", validators=4, heartbeat_ms=300,
              harness={"val-3": "tests.node.byzantine_node"})
    cheat = net.nodes["val-3"].key
    net.start()
    try:
        def record():
            bonded = net.get("val-0", "/v1/validators")["bonded"]
            return next(b for b in bonded if b["key"] == cheat)

        net.wait_until("the equivocator to be jailed", lambda: record()["jailed"], timeout_s=60)
        assert record()["stake"] == 200 - 200 * 500 // 10_000  # slash_bps 500 of a stake of 200
        # jailed out of the set from validator_delay blocks on; the others carry on without it
        net.wait_until("the set without the equivocator",
                       lambda: cheat not in [v["key"] for v in net.get("val-0", "/v1/validators")["validators"]],
                       timeout_s=30)
        height = net.height("val-0")
        net.wait_height(height + 2, "val-0", "val-1", "val-2", timeout_s=30)
    finally:
        net.stop()
