"""A child loses the card: the authority finds the child by 1:N from a rotated rescan (CLI and
signed API), re-issues the card, and the child crosses with it. Real processes throughout.

The enrolment authority runs the node here, configured with its gallery (``[identify]``), so
``POST /v1/identify`` is served to enrolment-authority keys only.
"""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request
from pathlib import Path

from node.client.cards import CardKeys, open_card, read_card, synthetic_eye, write_scan
from node.keyfile import MINIMAL, load_key_file, write_key_file
from tests.node.clientkit import PASSPHRASE, World, cli, json_lines, signed_headers
from tests.node.netkit import Net

TURN = 6  # the rescans come with the head tilted by 6 angular positions


def _post(url: str, path: str, body: bytes, key, chain_id: str) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers.update(signed_headers(url, path, key, chain_id, method="POST", body=body, purpose="identification"))
    req = urllib.request.Request(url + path, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_lost_card_identify_by_rotated_rescan_reissue_and_cross(tmp_path):
    net = Net(tmp_path / "net", validators=1, heartbeat_ms=300)
    net.start()
    try:
        keys = tmp_path / "keys"
        world = World(net, keys)  # registers the authority, the post, the terminal
        gallery = keys / "gallery.bin"
        # the authority's node: its gallery, and a copy of its key under the node's passphrase
        node_copy = net.dir / "val-0" / "authority.key"
        write_key_file(node_copy, world.authority, net.passphrase, label="authority", cost=MINIMAL)
        with open(net.dir / "val-0" / "node.toml", "a") as config:
            config.write(f'\n[identify]\ngallery = "{gallery}"\nkey_file = "{node_copy}"\n')
        net.kill("val-0", signal.SIGTERM)
        net.start("val-0")
        nodes = world.node_args()
        authority = ["--key", str(world.authority_file)]
        eye = synthetic_eye(77, rescans=6, captures=3, rescan_shift=TURN)
        other = synthetic_eye(78, rescans=0, captures=3)
        scans = []
        for i, (code, mask) in enumerate(eye + other):
            scans.append(tmp_path / f"scan-{i}.json")
            write_scan(scans[-1], code, mask)
        enrol_scans, rescans, other_scans = scans[:3], scans[3:9], scans[9:]
        guardian = world.card_key.public.hex()  # any key will do as a guardian here

        def enrol_child(templates: list[Path], card: Path) -> str:
            out = cli("enrol", "child", *authority, *[a for t in templates for a in ("--template", str(t))],
                      "--card-key", str(world.card_key_file), "--gallery", str(gallery), "--card-out", str(card),
                      "--guardian", guardian, "--approvals", "1", "--majority-date", "2040-01-01", "--json", *nodes,
                      check=True)
            return json_lines(out.stdout)[0]["identity"]

        card = tmp_path / "child.card"
        child = enrol_child(enrol_scans, card)
        enrol_child(other_scans, tmp_path / "other.card")
        card_keys = CardKeys.from_signing_keys([world.card_key])
        first_pseudonym = open_card(read_card(card)[1], card_keys).pseudonym_key
        card.unlink()  # the card is lost

        # -- 1:N from a rotated rescan, through the CLI (the gallery on disk)
        found = json_lines(cli("enrol", "identify", *authority, "--scan", str(rescans[0]), "--gallery",
                               str(gallery), "--json", check=True).stdout)[0]
        assert found["identity"] == child and found["shift"] == TURN and found["searched"] == 2
        stranger = synthetic_eye(79, rescans=0)[0]
        write_scan(tmp_path / "stranger.json", *stranger)
        none = json_lines(cli("enrol", "identify", *authority, "--scan", str(tmp_path / "stranger.json"),
                              "--gallery", str(gallery), "--json", check=True).stdout)[0]
        assert none["identity"] is None
        text = cli("enrol", "identify", *authority, "--scan", str(tmp_path / "stranger.json"), "--gallery",
                   str(gallery), check=True).stdout
        assert "no enrolled child matches" in text

        # -- and through the signed API of the authority's node
        scan_doc = json.loads(rescans[1].read_text())
        body = json.dumps({"code": scan_doc["code"], "mask": scan_doc["mask"]}).encode()
        status, doc = _post(net.url(), "/v1/identify", body, world.authority, net.chain_id)
        assert status == 200 and doc["identity"] == child and doc["shift"] == TURN, doc
        status, doc = _post(net.url(), "/v1/identify", body, world.terminal, net.chain_id)
        assert status == 403, doc
        status, doc = _post(net.url(), "/v1/identify", body, None, net.chain_id)
        assert status == 401, doc
        status, doc = _post(net.url(), "/v1/identify", b'{"code": "00"}', world.authority, net.chain_id)
        assert status == 400, doc

        # -- re-issue: a fresh enrolment of the identified child; the pseudonym key is kept
        new_card = tmp_path / "child-2.card"
        cli("enrol", "reenrol", *authority, "--child", child, "--template", str(rescans[2]), "--template",
            str(rescans[3]), "--template", str(rescans[4]), "--card-key", str(world.card_key_file),
            "--gallery", str(gallery), "--card-out", str(new_card), *nodes, check=True)
        assert open_card(read_card(new_card)[1], card_keys).pseudonym_key == first_pseudonym

        # -- and the child crosses with the new card and yet another rotated rescan
        tdir = world.init_terminal(tmp_path / "terminal")
        crossed = cli("terminal", "cross", "--dir", str(tdir), "--card", str(new_card), "--scan",
                      str(rescans[5]), "--direction", "exit", "--destination", "RO", "--wait", "0")
        assert crossed.returncode == 0 and "delivered" in crossed.stdout, crossed.stdout + crossed.stderr
        assert load_key_file(world.card_key_file, PASSPHRASE).public == world.card_key.public
    finally:
        net.stop()
