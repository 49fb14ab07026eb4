"""``custos guardian …`` through real processes: watch, approve, deny, consent, revoke."""

from __future__ import annotations

import json

from tests.node.clientkit import Background, cli, json_lines, now_ms


def crossing(world, child, **kw):
    fields = dict(post=world.post, direction="exit", event_time=now_ms(), destination="RO")
    fields.update(kw)
    tx = world.net.txs.crossing(world.terminal, child.biometric, child.identity, **fields)
    return tx, world.submit_all([tx])[0]


def g(world, child, i, *args: str, check: bool = True):
    return cli("guardian", *args, "--key", str(child.guardian_files[i]), *world.node_args(), check=check)


def test_watch_alerts_both_guardians_and_follows_the_decisions(world):
    child = world.enrol("mia", guardians=2, approvals=2)
    watchers = [Background("guardian", "watch", "--key", str(f), "--json", *world.node_args())
                for f in child.guardian_files]
    try:
        for w in watchers:
            w.expect("the stream to be live", lambda d: d["event"] == "sync")
        tx, result = crossing(world, child, companion=b"\x07" * 16)
        assert result["crossing_status"] == "pending"
        for w in watchers:
            alert = w.expect("the alert", lambda d: d["event"] == "pending")
            assert alert["id"] == tx.id.hex()
            # what a guardian needs to decide
            assert alert["identity"] == child.identity.hex()
            assert (alert["post"], alert["post_label"], alert["direction"], alert["destination"]) == \
                   (world.post, "Leuseni", "exit", "RO")
            assert alert["companion"] == "07" * 16 and abs(alert["event_time"] - now_ms()) < 60_000
            assert alert["approvals_needed"] == 2 and alert["deadline"] > now_ms()
        first = g(world, child, 0, "approve", tx.id.hex(), "--yes")
        assert "now PENDING (1 of 2 approvals)" in first.stdout
        for w in watchers:
            w.expect("the first approval", lambda d: d["event"] == "decision" and d["decision"] == "approve")
        second = g(world, child, 1, "approve", tx.id.hex(), "--yes")
        assert "now PERMITTED" in second.stdout
        for w in watchers:
            assert w.expect("the outcome", lambda d: d["event"] == "closed")["status"] == "permitted"
    finally:
        for w in watchers:
            w.stop()


def test_approve_shows_what_is_approved_and_needs_confirmation(world):
    child = world.enrol("noa", guardians=1, approvals=1)
    tx, _ = crossing(world, child, companion=None)
    proc = g(world, child, 0, "approve", tx.id.hex(), check=False)  # no --yes, no terminal to ask on
    assert proc.returncode == 2 and "confirm with --yes" in proc.stderr
    for label in ("child", "post", "direction", "companion", "event time"):
        assert label in proc.stdout
    assert child.identity.hex() in proc.stdout and "none (travelling alone)" in proc.stdout
    shown = json_lines(g(world, child, 0, "show", tx.id.hex(), "--json").stdout)[0]
    assert shown["status"] == "pending"  # nothing was decided


def test_veto_denial_denies_and_raises_an_alert(world):
    child = world.enrol("ola", guardians=2, approvals=2, veto=True)
    tx, _ = crossing(world, child)
    proc = g(world, child, 1, "deny", tx.id.hex(), "--reason", "not-informed", "--yes")
    assert "now DENIED" in proc.stdout
    alerts = json_lines(cli("enrol", "alerts", "--key", str(world.authority_file), "--post", world.post,
                            "--json", *world.node_args(), check=True).stdout)[0]["alerts"]
    mine = [a for a in alerts if a["request"] == tx.id.hex()]
    assert len(mine) == 1 and mine[0]["kind"] == "denied"
    again = g(world, child, 0, "approve", tx.id.hex(), "--yes", check=False)
    assert again.returncode == 2 and "nothing to decide" in again.stdout


def test_consent_cosigned_by_both_guardians_then_revoked(world, tmp_path):
    child = world.enrol("pia", guardians=2, approvals=2)
    partial = tmp_path / "consent.json"
    g(world, child, 0, "consent", "--child", str(child.card), "--from=-1h", "--until", "+7d",
      "--direction", "exit", "--destination", "ro", "--uses", "2", "--out", str(partial))
    done = g(world, child, 1, "cosign", str(partial), "--submit")
    assert "committed" in done.stdout
    consent_id = json.loads(partial.read_text())["id"]
    tx, result = crossing(world, child)
    assert result["crossing_status"] == "permitted" and result["result"]["ref"] == consent_id
    history = json_lines(g(world, child, 0, "history", str(child.card), "--json").stdout)[0]["requests"]
    assert history[0]["consent"] == consent_id
    revoked = g(world, child, 1, "revoke", consent_id)
    assert "revoked" in revoked.stdout
    _, result = crossing(world, child)
    assert result["crossing_status"] == "pending"  # the consent no longer covers it


def test_consent_short_of_signatures_is_refused_with_a_hint(world):
    child = world.enrol("quin", guardians=2, approvals=2)
    proc = g(world, child, 0, "consent", "--child", child.identity.hex(), "--until", "+1d", check=False)
    assert proc.returncode == 2 and "cosign" in proc.stderr


def test_pending_lists_what_waits_for_this_guardian(world):
    child = world.enrol("rui", guardians=2, approvals=2)
    tx, _ = crossing(world, child)
    listed = json_lines(g(world, child, 0, "pending", "--json").stdout)[0]["pending"]
    assert [d["id"] for d in listed] == [tx.id.hex()]
    g(world, child, 0, "approve", tx.id.hex(), "--yes")
    # still pending (1 of 2); the other guardian still sees it
    assert [d["id"] for d in json_lines(g(world, child, 1, "pending", "--json").stdout)[0]["pending"]] == [tx.id.hex()]
    wards = json_lines(g(world, child, 1, "wards", "--json").stdout)[0]
    assert wards["wards"] == [child.identity.hex()]


def test_watch_refuses_a_key_that_guards_nobody(world, tmp_path):
    from tests.node.clientkit import key_file

    path, _ = key_file(tmp_path, "nobody")
    proc = cli("guardian", "watch", "--key", str(path), "--for", "5s", *world.node_args())
    assert proc.returncode == 2 and "forbidden" in proc.stderr


def test_an_unknown_request_is_named_in_one_line(world):
    child = world.enrol("uma", guardians=1, approvals=1)
    for action in (("show",), ("approve", "--yes"), ("deny", "--yes")):
        proc = g(world, child, 0, action[0], "00" * 32, *action[1:], check=False)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.strip() == f"custos: not-found: no crossing request {'00' * 32} is on the chain"
