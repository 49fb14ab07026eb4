"""Joining by state sync, through real processes on 127.0.0.1 (docs/adr/0007-state-sync.md).

Four validators, one of which serves chunks it has tampered with (tests/node/lying_snapshot_node.py),
and only three of them running at first; an observer and the fourth validator join from
snapshots. A child with a pending crossing stays on the chain; another is enrolled, crosses, and
is erased by council order between the two joins:

* the observer joins before the erasure (``custos node start --state-sync``): it refuses the
  liar's chunks, names it, takes them from honest validators, reaches the tip by block sync,
  holds the same state root as the validators, serves a guardian a pending list that the
  guardian's light client proves from the pinned genesis through this node alone, and answers a
  transaction from before its snapshot as committed (never admits it again);
* the validators drop the snapshot they served once the erasure commits; the fourth validator
  joins after it (``[statesync] join = true``) from a snapshot planned anew, and none of its files
  holds anything of the erased child (nor the observer's: it followed the erasure block and
  purged it like every node); with the liar stopped, the chain goes on only if the validator that
  joined by state sync votes.

A peer may also lie in its offer: one that names a height beyond the chain is given up, and the
node joins from the honest peers' snapshot.
"""

from __future__ import annotations

import asyncio

from ledger.crypto.keys import SigningKey
from node.client.guardian import GuardianClient
from node.client.http import NodeClient
from node.client.light import LightClient
from node.client.signed import SignedClient
from node.genesis_file import load_genesis
from tests.node.clientkit import World, cli, now_ms
from tests.node.netkit import Net
from tests.scankit import files_holding

RUNNING = ("val-0", "val-1", "val-2")
LIAR = "val-2"
LATE = "val-3"


def test_nodes_join_by_state_sync_through_a_lying_peer_and_an_erasure(tmp_path):
    net = Net(tmp_path / "net", validators=4, heartbeat_ms=300, observers=1,
              harness={LIAR: "tests.node.lying_snapshot_node"})
    for name in ("obs-0", LATE):
        config = net.dir / name / "node.toml"
        config.write_text(config.read_text() + "\n[statesync]\nwait_s = 60\n")
    # the observer knows the liar and one honest validator only: the liar is asked for chunks
    config = net.dir / "obs-0" / "node.toml"
    others = [net.nodes[name].key for name in ("val-1", LATE)]
    config.write_text("\n".join(line for line in config.read_text().splitlines()
                                 if not any(key in line for key in others)) + "\n")
    for name in RUNNING:  # a snapshot every 5 blocks, the same on every validator (the liar's too)
        config = net.dir / name / "node.toml"
        config.write_text(config.read_text() + "\n[statesync]\ninterval = 5\n")
    net.start(*RUNNING)
    try:
        world = World(net, tmp_path / "keys")
        stays = world.enrol("ana", guardians=2, approvals=2, veto=True)
        leaves = world.enrol("ion", guardians=1, approvals=1, veto=False)
        t = net.txs
        pending = t.crossing(world.terminal, stays.biometric, stays.identity, post=world.post, direction="exit",
                             event_time=now_ms(), destination="RO")
        crossed = t.crossing(world.terminal, leaves.biometric, leaves.identity, post=world.post, direction="exit",
                             event_time=now_ms(), destination="UA")
        world.submit_all([pending, crossed])
        decided = t.decide(leaves.guardians[0], crossed.id, leaves.identity, "approve")
        world.submit_all([decided])

        # -- the observer joins, before the erasure
        net.start("obs-0", wait=False, args=("--state-sync",))
        target = net.height("val-0")
        net.wait_height(target, "obs-0", timeout_s=90)
        status = net.get("obs-0", "/v1/status")
        joined = status["state_sync"]["joined"]
        assert status["state_sync"]["base"] == joined["height"] > 0
        assert joined["refused_chunks"] >= 1, "the liar should have been asked for a chunk and refused"
        liar_key = net.nodes[LIAR].key
        assert f"from {liar_key[:12]} refused" in net.log("obs-0")
        same_block(net, "obs-0", target)

        # a guardian's light client, pinned to genesis, proves its pending list through this node alone
        genesis = load_genesis(net.dir / "genesis.toml")

        async def guardian_reads() -> list[dict]:
            async with GuardianClient([net.url("obs-0")], stays.guardians[0], chain_id=net.chain_id,
                                      genesis=genesis) as g:
                return await g.pending()

        requests = asyncio.run(guardian_reads())
        assert [(r["id"], r["status"]) for r in requests] == [(pending.id.hex(), "pending")]
        assert requests[0]["proven"]["node"] == net.url("obs-0")

        # a transaction from before the snapshot, sent again, is known: never admitted twice
        async def resubmit() -> dict:
            async with NodeClient([net.url("obs-0")]) as c:
                return await c.submit(crossed.raw)

        assert asyncio.run(resubmit())["status"] == "committed"

        # -- the council erases the other child; the validators drop the snapshots they hold
        assert any(serving(net, name) is not None for name in RUNNING)
        out = cli("council", "erase", "--identity", leaves.identity.hex(), "--order", "court 2026/9",
                  "--devnet", str(net.dir), "--node", net.url("val-0"), check=True).stdout
        erase_height = int(out.split("at height ")[1].split()[0])
        for name in (*RUNNING, "obs-0"):
            net.wait_until(f"{name} to purge the erased child", lambda name=name: purged(net, name), timeout_s=60)
        for name in RUNNING:  # dropped at the purge; planned anew since, if at all
            offered = serving(net, name)
            assert offered is None or offered["height"] >= erase_height

        # -- the fourth validator joins after it, from a snapshot planned anew
        config = net.dir / LATE / "node.toml"
        config.write_text(config.read_text().replace("[statesync]\n", "[statesync]\njoin = true\n"))
        net.start(LATE, wait=False)
        target = net.height("val-0")
        net.wait_height(target, LATE, timeout_s=90)
        second = net.get(LATE, "/v1/status")["state_sync"]["joined"]
        assert second["height"] >= erase_height
        same_block(net, LATE, target)
        # a light client pinned to genesis accepts a state proof this node serves (headers below
        # its snapshot come from those it certified on joining)
        assert asyncio.run(prove_council(net.url(LATE), genesis)) >= target
        needles = {"identity id": leaves.identity, "biometric commitment": leaves.biometric.public,
                   "guardian": leaves.guardians[0].public}
        assert files_holding(net.dir / LATE, needles) == []
        net.wait_height(erase_height + 2, "obs-0")
        assert files_holding(net.dir / "obs-0", {"identity id": leaves.identity}) == []

        # -- without the liar, three validators of four: blocks commit only with the late one's votes
        net.kill(LIAR)
        height = net.height("val-0")
        net.wait_height(height + 3, "val-0", "val-1", LATE, timeout_s=60)
    finally:
        net.stop()


async def prove_council(url: str, genesis) -> int:
    """The height at which a light client pinned to ``genesis`` verified ``url``'s proof of the
    council record."""
    client = SignedClient([url], SigningKey.generate(), chain_id=genesis.chain_id, timeout_s=20)
    try:
        proven = await LightClient(client, genesis=genesis).prove("/v1/state/proof", {"key": b"council".hex()},
                                                                  signed=False)
        assert proven is not None and proven.node == url
        return proven.height
    finally:
        await client.close()


def same_block(net: Net, name: str, height: int) -> None:
    """The node's block at ``height`` (or the first it holds) is the validators' (so is the state
    root, in the header)."""
    height = max(height, net.get(name, "/v1/status")["state_sync"]["base"] + 1)
    net.wait_height(height, name, "val-0")
    mine, theirs = net.get(name, f"/v1/blocks/{height}"), net.get("val-0", f"/v1/blocks/{height}")
    assert mine["hash"] == theirs["hash"]
    assert mine["header"]["state_root"] == theirs["header"]["state_root"]


def serving(net: Net, name: str) -> dict | None:
    """The snapshot the node offers (None: none)."""
    return net.get(name, "/v1/status")["state_sync"]["serving"]


def purged(net: Net, name: str) -> bool:
    erasure = net.get(name, "/v1/status")["erasure"]
    return erasure["purged"] >= 1 and erasure["pending"] == 0


def test_rejects_joining_by_state_sync_when_no_peer_offers_a_snapshot(tmp_path):
    """No peer running: one line on stderr and exit 3 (cannot reach), after the configured wait."""
    net = Net(tmp_path / "net", validators=1, observers=1)
    config = net.dir / "obs-0" / "node.toml"
    config.write_text(config.read_text() + "\n[statesync]\nwait_s = 2\n")
    proc = cli("node", "start", "--config", str(config), "--state-sync", timeout_s=60)
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("custos: cannot reach node: no peer offered a snapshot within 2 s")
    assert "Traceback" not in proc.stderr
    assert not (net.dir / "obs-0" / "chain").exists(), "nothing half-joined is left for the next start"


def test_a_peer_offering_a_snapshot_beyond_the_chain_does_not_keep_a_node_out(tmp_path, monkeypatch):
    """One validator offers its snapshot as one a thousand blocks beyond the chain: the highest
    offer, which a joining node takes first. No header certifies it: the node gives it up, asks
    the liar nothing more, and joins from the honest validators' snapshot."""
    monkeypatch.setenv("CUSTOS_TEST_LIE", "offer")
    net = Net(tmp_path / "net", validators=3, heartbeat_ms=300, observers=1,
              harness={"val-2": "tests.node.lying_snapshot_node"})
    for name in ("val-0", "val-1", "val-2"):
        config = net.dir / name / "node.toml"
        config.write_text(config.read_text() + "\n[statesync]\ninterval = 5\n")
    config = net.dir / "obs-0" / "node.toml"
    config.write_text(config.read_text() + "\n[statesync]\nwait_s = 60\n")
    net.start("val-0", "val-1", "val-2")
    try:
        net.wait_until("every validator to offer a snapshot",
                       lambda: all(serving(net, n) is not None for n in ("val-0", "val-1", "val-2")), timeout_s=60)
        net.start("obs-0", wait=False, args=("--state-sync",))
        net.wait_until("the node to join", lambda: net.get("obs-0", "/v1/status")["height"] > 0, timeout_s=90)
        joined = net.get("obs-0", "/v1/status")["state_sync"]["joined"]
        assert 0 < joined["height"] <= net.height("val-0")
        taken = [int(line.split("snapshot at height ")[1].split()[0]) for line in net.log("obs-0").splitlines()
                 if "state sync: snapshot at height" in line and "offered by" in line]
        assert taken[-1] == joined["height"], taken
        # the lie, the highest offer, is taken first (unless the liar's connection came more than
        # the second after the first offer that the node waits for the others), then given up
        if len(taken) > 1:
            assert taken[0] > net.height("val-0"), taken
            assert f"no peer gave headers up to {taken[0]} that certify from genesis" in net.log("obs-0")
        same_block(net, "obs-0", net.height("val-0"))
    finally:
        net.stop()
