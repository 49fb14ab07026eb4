"""The crossing story end to end, every actor a real ``custos`` process against a real node.

An enrolment authority enrols a child from an eye scan with two guardians and a 2-of-2 policy;
a terminal submits an exit; both guardians' ``watch`` print the alert; one approves (still
pending), the other approves (permitted). A second attempt is vetoed (denied, alert); a third
expires (alert). A crossing under a travel consent is permitted at once; once the consent is
revoked, it is not. A court order then changes the guardians, and read access follows; a
re-enrolment retires the old card. The council registers everyone through ``custos council``.
"""

from __future__ import annotations

import json
from pathlib import Path

from node.client.cards import synthetic_eye, write_scan
from tests.node.clientkit import Background, cli, json_lines, key_file, signed_get
from tests.node.netkit import Net

DEADLINE = "8s"


class Actors:
    """Key files and the post, registered through ``custos council`` (not through World)."""

    def __init__(self, net: Net, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.net = net
        self.post = "MD-LEU"
        self.authority_file, self.authority = key_file(directory, "authority")
        self.terminal_file, self.terminal = key_file(directory, "terminal")
        self.card_key_file, _ = key_file(directory, "card-opening")
        self.gallery = directory / "gallery.bin"
        self.nodes = [arg for url in net.urls for arg in ("--node", url)]

    def node_args(self) -> list[str]:
        return self.nodes

    def init_terminal(self, directory: Path) -> Path:
        cli("terminal", "init", "--dir", str(directory), "--key", str(self.terminal_file), "--post", self.post,
            "--card-key", str(self.card_key_file), *self.nodes, check=True)
        return directory


def register_through_the_council_cli(net: Net, actors: Actors, tmp_path: Path) -> None:
    council = [str(net.dir / "council" / f"member-{i}.key") for i in range(3)]
    secret = ["--passphrase-file", str(net.dir / "passphrase")]
    # two members at one desk sign together
    out = cli("council", "register-authority", "--key", council[0], "--key", council[1], "--public",
              str(actors.authority_file), "--label", "civil registry", *secret, *actors.nodes, check=True).stdout
    assert "committed" in out
    # one member prepares, another co-signs and submits
    partial = tmp_path / "post.json"
    cli("council", "register-post", "--post", actors.post, "--label", "Leuseni", "--key", council[0],
        "--out", str(partial), *secret, *actors.nodes, check=True)
    alone = cli("council", "cosign", str(partial), "--submit", *secret, *actors.nodes)
    assert alone.returncode == 2 and "council-quorum" in alone.stderr  # one signature is not enough
    cli("council", "cosign", str(partial), "--key", council[2], "--submit", *secret, *actors.nodes, check=True)
    # a devnet's own council keys
    cli("council", "register-terminal", "--public", actors.terminal.public.hex(), "--post", actors.post,
        "--label", "booth 1", "--devnet", str(net.dir), check=True)


def test_the_crossing_story(tmp_path):
    net = Net(tmp_path / "net", validators=1, heartbeat_ms=300)
    net.start()
    procs: list[Background] = []
    try:
        world = Actors(net, tmp_path / "keys")
        register_through_the_council_cli(net, world, tmp_path)
        nodes = world.node_args()
        g_files = [key_file(tmp_path / "keys", f"guardian-{i}") for i in range(3)]
        (g1_file, g1), (g2_file, g2), (g3_file, g3) = g_files
        captures = synthetic_eye(20240611, rescans=8)
        scans = []
        for i, (code, mask) in enumerate(captures):
            scans.append(tmp_path / f"scan-{i}.json")
            write_scan(scans[-1], code, mask)
        card = tmp_path / "child.card"

        def custos(*args: str) -> str:
            return cli(*args, check=True).stdout

        def guardian(file, *args: str, check: bool = True):
            return cli("guardian", *args, "--key", str(file), *nodes, check=check)

        def alerts() -> list[dict]:
            out = custos("enrol", "alerts", "--key", str(world.authority_file), "--post", world.post, "--json", *nodes)
            return json_lines(out)[0]["alerts"]

        # -- the enrolment authority enrols the child: 2 guardians, both must approve, a denial vetoes
        enrolled = json_lines(custos("enrol", "child", "--key", str(world.authority_file), "--template", str(scans[0]),
                                     "--card-key", str(world.card_key_file), "--gallery", str(world.gallery),
                                     "--card-out", str(card), "--guardian", str(g1_file), "--guardian", g2.public.hex(),
                                     "--approvals", "2", "--deadline", DEADLINE, "--veto",
                                     "--majority-date", "2040-01-01", "--json", *nodes))[0]
        child = enrolled["identity"]
        assert json.loads(card.read_text())["identity"] == child
        assert "template" not in card.read_text() and "code" not in card.read_text()

        tdir = world.init_terminal(tmp_path / "terminal")
        watchers = [Background("guardian", "watch", "--key", str(f), "--json", *nodes) for f in (g1_file, g2_file)]
        procs += watchers
        for w in watchers:
            w.expect("the watch to be live", lambda d: d["event"] == "sync")

        def cross(scan: int, *extra: str, wait: str = "60s") -> Background:
            p = Background("terminal", "cross", "--dir", str(tdir), "--card", str(card), "--scan", str(scans[scan]),
                           "--direction", "exit", "--destination", "RO", "--wait", wait, "--json", *extra)
            procs.append(p)
            return p

        # -- 1. an exit: both guardians alerted; one approves (pending), the other approves (permitted)
        first = cross(1)
        rid = first.expect("the request", lambda d: d["event"] == "queued")["id"]
        for w in watchers:
            alert = w.expect("the alert", lambda d: d["event"] == "pending" and d["id"] == rid)
            assert (alert["identity"], alert["post"], alert["direction"]) == (child, world.post, "exit")
        assert "PENDING (1 of 2 approvals)" in guardian(g1_file, "approve", rid, "--yes").stdout
        assert first.expect("the first approval", lambda d: d["event"] == "decision")["status"] == "pending"
        assert "PERMITTED" in guardian(g2_file, "approve", rid, "--yes").stdout
        assert first.expect("the decision", lambda d: d["event"] == "closed")["status"] == "permitted"
        assert first.proc.wait(15) == 0
        for w in watchers:
            assert w.expect("the outcome", lambda d: d["event"] == "closed" and d["id"] == rid)["status"] == "permitted"

        # -- 2. a second attempt: one guardian's veto denies it, and an alert is raised
        second = cross(2)
        rid2 = second.expect("the request", lambda d: d["event"] == "queued")["id"]
        watchers[1].expect("the alert", lambda d: d["event"] == "pending" and d["id"] == rid2)
        assert "DENIED" in guardian(g2_file, "deny", rid2, "--reason", "destination-not-agreed", "--yes").stdout
        assert second.expect("the decision", lambda d: d["event"] == "closed")["status"] == "denied"
        assert [a["kind"] for a in alerts() if a["request"] == rid2] == ["denied"]

        # -- 3. a third attempt nobody answers: it expires, and an alert is raised
        third = cross(3)
        rid3 = third.expect("the request", lambda d: d["event"] == "queued")["id"]
        for w in watchers:
            w.expect("the alert", lambda d: d["event"] == "pending" and d["id"] == rid3)
        assert third.expect("the expiry", lambda d: d["event"] == "closed", timeout_s=40)["status"] == "expired"
        assert [a["kind"] for a in alerts() if a["request"] == rid3] == ["expired"]

        # -- 4. a travel consent signed by both guardians: the next exit is permitted at once
        partial = tmp_path / "consent.json"
        guardian(g1_file, "consent", "--child", str(card), "--from=-1h", "--until", "+2d", "--direction", "exit",
                 "--destination", "RO", "--uses", "3", "--out", str(partial))
        guardian(g2_file, "cosign", str(partial), "--submit")
        consent = json.loads(partial.read_text())["id"]
        fourth = cross(4)
        decided = fourth.expect("the decision", lambda d: d["event"] in ("closed", "status") and
                                d.get("status") != "accepted")
        assert decided["status"] == "permitted" and decided["consent"] == consent
        for w in watchers:  # nobody was asked
            assert not [d for d in w.seen if d["event"] == "pending" and d["id"] == decided["id"]]

        # -- 5. the consent is revoked: the next exit waits for the guardians again
        assert "revoked" in guardian(g1_file, "revoke", consent).stdout
        fifth = cross(5, wait="3s")
        rid5 = fifth.expect("the request", lambda d: d["event"] == "queued")["id"]
        assert fifth.expect("the status", lambda d: d.get("status") == "pending")["id"] == rid5
        watchers[0].expect("the alert", lambda d: d["event"] == "pending" and d["id"] == rid5)

        # -- 6. a court order replaces guardian 2 by guardian 3: reads follow guardianship
        custos("enrol", "update-guardians", "--key", str(world.authority_file), "--child", child,
               "--guardian", str(g1_file), "--guardian", str(g3_file), "--approvals", "1", "--deadline", "1h",
               "--order-ref", "court 2024/117", *nodes)
        path = f"/v1/identities/{child}"
        assert signed_get(net.url(), path, g3, net.chain_id)[0] == 200
        assert signed_get(net.url(), path, g2, net.chain_id)[0] == 403
        shown = json_lines(custos("enrol", "show", child, "--key", str(world.authority_file), "--json", *nodes))[0]
        assert shown["version"] == 2 and len(shown["requests"]) == 5
        assert [r["status"] for r in shown["requests"]] == ["pending", "permitted", "expired", "denied", "permitted"]

        # -- 7. re-enrolment with a fresh scan: the old card no longer opens a crossing, the new one does
        new_card = tmp_path / "child-2.card"
        custos("enrol", "reenrol", "--key", str(world.authority_file), "--child", str(card), "--template",
               str(scans[6]), "--card-key", str(world.card_key_file), "--gallery", str(world.gallery),
               "--card-out", str(new_card), *nodes)
        old = cli("terminal", "cross", "--dir", str(tdir), "--card", str(card), "--scan", str(scans[7]),
                  "--direction", "exit", "--destination", "RO", "--wait", "0")
        assert old.returncode == 2 and "REFUSED by rule biometric-mismatch" in old.stderr
        fresh = cli("terminal", "cross", "--dir", str(tdir), "--card", str(new_card), "--scan", str(scans[7]),
                    "--direction", "exit", "--destination", "RO", "--wait", "0")
        assert fresh.returncode == 0 and "delivered" in fresh.stdout
    finally:
        for p in procs:
            p.stop()
        net.stop()
