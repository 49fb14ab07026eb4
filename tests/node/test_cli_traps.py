"""The command line without traps: each test is one trap people fell into, and what happens now.

* ``--deadline 60`` meant 60 ms: durations now carry their unit, a bare number is refused;
* a bad path or date printed a traceback and exit 1 ("chain invalid"): now one line, exit 2;
* ``guardian watch`` against an unreachable node exited 0: every command now exits 3;
* ``--devnet`` silently replaced the user's passphrase: now only the devnet's own keys use it;
* ``audit`` did not take ``--devnet`` or ``$CUSTOS_NODES``: it takes the same node options;
* the demo's first run installed silently for half a minute: the set-up now shows progress.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ledger.crypto.keys import SigningKey
from node import devnet
from node.cli import main
from node.cli.options import InputError, parse_duration, parse_time
from node.keyfile import MINIMAL, write_key_file
from tests.node.clientkit import PASSPHRASE, key_file
from tests.node.netkit import Net

ROOT = Path(__file__).resolve().parents[2]


def closed_url() -> str:
    return f"http://127.0.0.1:{devnet.free_ports(1)[0]}"


@pytest.fixture(autouse=True)
def _in_process(monkeypatch, capsys):
    """Most commands here run in this process (fast), output captured per call."""
    monkeypatch.setenv("CUSTOS_PASSPHRASE", PASSPHRASE.decode())
    monkeypatch.delenv("CUSTOS_NODES", raising=False)
    global _capsys
    _capsys = capsys


def cli(*args: str, check: bool = False) -> Ran:
    _capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = _capsys.readouterr()
    if check and code != 0:
        raise AssertionError(f"custos {' '.join(args)} exited {code}:\n{out.out}\n{out.err}")
    return Ran(code, out.out, out.err)


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def one_line_error(proc: Ran, code: int = 2) -> str:
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


# --------------------------------------------------------------------------- durations and dates


def test_rejects_a_duration_without_its_unit():
    with pytest.raises(InputError, match="no unit"):
        parse_duration("60")
    assert parse_duration("60s") == 60_000 and parse_duration("15m") == 900_000 and parse_duration("2h") == 7_200_000
    assert parse_duration("250ms") == 250 and parse_duration("1.5s") == 1500 and parse_duration("0") == 0


def test_rejects_a_bare_deadline_on_the_command_line(tmp_path):
    key, _ = key_file(tmp_path, "authority")
    line = one_line_error(cli("enrol", "child", "--key", str(key), "--template", "x", "--card-out", "c",
                              "--majority-date", "2030-01-01", "--guardian", "00" * 32, "--approvals", "1",
                              "--deadline", "60", "--node", closed_url()))
    assert "--deadline" in line and "'60' has no unit" in line


@pytest.mark.parametrize("args", [
    ("guardian", "watch", "--key", "k", "--for", "5"),
    ("terminal", "cross", "--card", "c", "--scan", "s", "--direction", "exit", "--destination", "RO", "--wait", "60"),
    ("terminal", "run", "--retry", "2"),
    ("audit", "verify", "--timeout", "15"),
    ("devnet", "up", "--heartbeat", "1000"),
])
def test_rejects_bare_numbers_for_every_duration_option(args):
    assert "has no unit" in one_line_error(cli(*args))


def test_iso_dates_are_read_by_the_standard_library():
    assert parse_time("2025-06-01T10:30+02:00") == parse_time("2025-06-01T08:30Z") == 1748766600000
    assert parse_time("2025-06-01") == 1748736000000  # no zone: UTC
    assert parse_time("+2h", now_ms=0) == 7_200_000
    for bad in ("2025-13-01", "yesterday", "1748736000000"):
        with pytest.raises(InputError, match="not a time"):
            parse_time(bad)


def test_rejects_a_bad_date_in_one_line(tmp_path):
    key, _ = key_file(tmp_path, "authority")
    line = one_line_error(cli("enrol", "alerts", "--key", str(key), "--since", "2025-02-30", "--node", closed_url()))
    assert "'2025-02-30' is not a time" in line


# --------------------------------------------------------------------------- paths and usage


@pytest.mark.parametrize("args, says", [
    (("keys", "new", "/nonexistent-dir/k.key", "--fast-kdf"), "No such file or directory"),
    (("keys", "show", "missing.key"), "missing.key"),
    (("audit", "verify", "--data-dir", "/nonexistent-dir"), "/nonexistent-dir"),
    (("audit", "verify-receipt", "missing.json"), "missing.json"),
    (("node", "start", "--config", "missing.toml"), "missing.toml"),
    (("guardian", "pending", "--key", "missing.key"), "missing.key"),
    (("devnet", "up", "--validators", "x"), "invalid int value"),
    (("council", "frobnicate"), "invalid choice"),
])
def test_rejects_bad_paths_and_usage_in_one_line_with_exit_2(args, says, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    proc = cli(*args)
    assert says in one_line_error(proc)


# --------------------------------------------------------------------------- unreachable nodes


def test_every_command_exits_3_when_no_node_answers(tmp_path):
    key, _ = key_file(tmp_path, "someone")
    url = closed_url()
    net_dir = tmp_path / "net"
    devnet.create(net_dir, 1)  # created, never started
    commands = [
        ("council", "register-post", "--post", "P", "--key", str(key), "--node", url),
        ("enrol", "alerts", "--key", str(key), "--node", url),
        ("guardian", "pending", "--key", str(key), "--node", url),
        ("guardian", "watch", "--key", str(key), "--for", "2s", "--node", url),
        ("terminal", "init", "--dir", str(tmp_path / "t"), "--key", str(key), "--post", "P", "--node", url),
        ("audit", "verify", "--node", url, "--timeout", "2s"),
        ("audit", "prove", "00" * 32, "--node", url, "--timeout", "2s"),
        ("devnet", "status", "--dir", str(net_dir)),
    ]
    for args in commands:
        proc = cli(*args)
        assert proc.returncode == 3, f"custos {' '.join(args)} exited {proc.returncode}: {proc.stderr}"
        assert "Traceback" not in proc.stderr


# --------------------------------------------------------------------------- passphrases and node options


def test_devnet_option_does_not_replace_the_users_passphrase(tmp_path):
    net_dir = tmp_path / "net"
    devnet.create(net_dir, 1)  # never started: reaching it fails (3) after the keys loaded
    own = tmp_path / "guardian.key"
    write_key_file(own, SigningKey.generate(), PASSPHRASE, cost=MINIMAL)  # not the devnet's passphrase
    proc = cli("guardian", "pending", "--key", str(own), "--devnet", str(net_dir))
    assert proc.returncode == 3, proc.stderr  # before: 2, "wrong passphrase" (the devnet's was used)
    # the devnet's own council keys still open with the devnet's passphrase
    proc = cli("council", "register-post", "--post", "P", "--devnet", str(net_dir))
    assert proc.returncode == 3, proc.stderr


def test_audit_takes_devnet_and_custos_nodes_like_every_command(tmp_path, monkeypatch):
    net = Net(tmp_path / "net", validators=1, heartbeat_ms=200)
    net.start()
    try:
        net.wait_height(3, "val-0")
        reader = ("--key", str(net.dir / "council" / "member-0.key"), "--passphrase-file", str(net.dir / "passphrase"))
        proc = cli("audit", "verify", "--devnet", str(net.dir), *reader)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        monkeypatch.setenv("CUSTOS_NODES", f"{closed_url()},{net.url('val-0')}")  # the first is down: fail over
        proc = cli("audit", "verify", *reader)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    finally:
        net.stop()


# --------------------------------------------------------------------------- the demo's set-up


def test_setup_shows_install_progress(tmp_path):
    """The first run of scripts/demo.sh (or test.sh) installs the project: it now says so, step by
    step. A stand-in venv whose python prints what pip prints keeps this test offline and fast."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    fake = venv / "bin" / "python"
    fake.write_text("#!/bin/sh\necho 'Collecting aiohttp>=3.9'\necho 'Requirement already satisfied: x'\n"
                    "echo 'Installing collected packages: aiohttp, custos'\n"
                    "echo 'Successfully installed custos-0.1.0'\n")
    fake.chmod(0o755)
    proc = subprocess.run(["bash", "-c", f"source {ROOT}/scripts/_venv.sh"], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "VENV": str(venv)})
    assert proc.returncode == 0, proc.stderr
    assert "[setup 2/2] installing Custos" in proc.stderr and "  Collecting aiohttp" in proc.stderr
    assert "Requirement already satisfied" not in proc.stderr and "[setup] done in" in proc.stderr
    assert (venv / ".custos-installed").exists()


# --------------------------------------------------------------------------- hostile input: numbers, URLs, files

NINES = "9" * 400


@pytest.mark.parametrize("args", [
    ("guardian", "watch", "--key", "k", "--for", f"{NINES}s"),
    ("terminal", "run", "--retry", f"{NINES}d"),
    ("audit", "verify", "--timeout", "36526d"),
])
def test_rejects_a_duration_too_long_for_any_timer(args):
    assert "too long a duration" in one_line_error(cli(*args))


def test_rejects_times_outside_1970_to_9999():
    for bad in (f"+{NINES}s", "-36525d", "1969-12-31", "9999-12-31T23:00-05:00"):
        with pytest.raises(InputError):
            parse_time(bad, now_ms=1_748_736_000_000)
    assert parse_time("9999-12-31T23:59:59.999Z") == 253_402_300_799_999
    assert parse_duration("36525d") == 36_525 * 86_400_000


def test_rejects_a_relative_time_too_far_in_one_line(tmp_path):
    key, _ = key_file(tmp_path, "authority")
    line = one_line_error(cli("enrol", "alerts", "--key", str(key), f"--since=+{NINES}s", "--node", closed_url()))
    assert "too long a duration" in line


@pytest.mark.parametrize("url", ["notaurl", "ftp://127.0.0.1:21", "http://127.0.0.1:99999", "http://127.0.0.1:abc",
                                 "http://[::1", "", "http://:80", "http://127.0.0.1:0"])
def test_rejects_a_malformed_node_url_naming_it(url, tmp_path, monkeypatch):
    key, _ = key_file(tmp_path, "someone")
    line = one_line_error(cli("guardian", "pending", "--key", str(key), "--node", url))
    assert f"--node: {url!r}" in line
    line = one_line_error(cli("audit", "prove", "00" * 32, "--node", url))
    assert f"{url!r}" in line
    if url:
        monkeypatch.setenv("CUSTOS_NODES", f"{closed_url()},{url}")
        line = one_line_error(cli("council", "register-post", "--post", "P", "--key", str(key)))
        assert f"$CUSTOS_NODES: {url!r}" in line


@pytest.mark.parametrize("text", ["[]", "garbage", "{}", '{"nodes": [{"name": 1}]}', '{"nodes": "x"}',
                                  '{"nodes": [{"name": "v", "api": "a", "p2p": "p", "key": "k", "stake": "1"}]}',
                                  "\xff"])
def test_rejects_a_malformed_devnet_description_naming_it(text, tmp_path):
    key, _ = key_file(tmp_path, "someone")
    d = tmp_path / "net"
    d.mkdir()
    (d / "devnet.json").write_bytes(text.encode("latin-1"))
    for args in (("guardian", "pending", "--key", str(key), "--devnet", str(d)),
                 ("devnet", "status", "--dir", str(d)), ("devnet", "kill", "val-0", "--dir", str(d)),
                 ("devnet", "demo", "--dir", str(d)),
                 ("council", "register-post", "--post", "P", "--devnet", str(d))):
        line = one_line_error(cli(*args))
        assert f"{d / 'devnet.json'} is not a devnet description" in line, args


@contextlib.contextmanager
def other_server(status: int, body: bytes, ctype: str = "application/json"):
    """A server on 127.0.0.1 that is not a Custos node: every request gets ``status`` and ``body``."""
    class Handler(BaseHTTPRequestHandler):
        def answer(self):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = answer

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("status, body, ctype", [
    (200, b'{"a": 1}', "application/json"),
    (200, b"[1, 2]", "application/json"),
    (200, b"not json", "application/json"),
    (404, b"<html><body>" + b"x" * 5000 + b"</body></html>", "text/html"),
    (500, b"", "application/json"),
    (400, b'{"a": 1}', "application/problem+json"),
])
def test_a_server_that_is_not_a_custos_node_is_unreachable_in_one_line(status, body, ctype, tmp_path):
    key, _ = key_file(tmp_path, "someone")
    with other_server(status, body, ctype) as url:
        for args in (("council", "register-auditor", "--public", "00" * 32, "--key", str(key), "--node", url),
                     ("council", "register-post", "--post", "P", "--key", str(key), "--node", url),
                     ("audit", "verify", "--node", url, "--timeout", "5s"),
                     ("audit", "prove", "00" * 32, "--node", url, "--timeout", "5s"),
                     ("terminal", "init", "--dir", str(tmp_path / "t"), "--key", str(key), "--post", "P",
                      "--node", url),
                     ("guardian", "pending", "--key", str(key), "--node", url),
                     ("enrol", "alerts", "--key", str(key), "--node", url)):
            line = one_line_error(cli(*args), 3)
            assert url in line and "<html>" not in line, (args, line)
            assert "custos: cannot reach node: " in line and not line.endswith(": "), (args, line)


@pytest.mark.parametrize("args, says", [
    (("enrol", "child", "--identity", "zz"), "'zz' is not an identity id"),
    (("enrol", "child", "--identity", "00" * 17), "is not an identity id"),
    (("enrol", "child", "--max-shift", "-1"), "'-1' is out of range"),
    (("enrol", "identify", "--max-shift", "99999999"), "'99999999' is out of range"),
    (("enrol", "identify", "--max-shift", "-1"), "'-1' is out of range"),
    (("enrol", "reenrol", "--max-shift", "x"), "'x' is not a whole number"),
    (("terminal", "cross", "--max-shift", "64"), "'64' is out of range"),
    (("terminal", "cross", "--max-shift", "-1"), "'-1' is out of range"),
    (("terminal", "run", "--console", "foo"), "'foo' is not HOST:PORT"),
    (("terminal", "run", "--console", "[::1]:abc"), "'[::1]:abc' is not HOST:PORT"),
    (("terminal", "run", "--console", "127.0.0.1:70000"), "'127.0.0.1:70000' is not HOST:PORT"),
    (("terminal", "run", "--console", "[::1:80"), "is not HOST:PORT"),
])
def test_rejects_out_of_range_arguments_when_parsing(args, says):
    """Refused before any key is read or node asked: the value is checked where it is parsed."""
    line = one_line_error(cli(*args))
    assert says in line


# --------------------------------------------------------------------------- files read and written


def test_rejects_a_node_config_that_is_not_text(tmp_path):
    config = tmp_path / "node.toml"
    config.write_bytes(b"\xff\xfe\x00binary")
    assert "not UTF-8 text" in one_line_error(cli("node", "start", "--config", str(config)))


def test_reads_key_and_passphrase_files_only_up_to_their_limit(tmp_path):
    """/dev/zero never ends: it was read to exhaustion (MemoryError); now at most the limit + 1 bytes."""
    key, _ = key_file(tmp_path, "someone")
    assert "too large to be a key file" in one_line_error(cli("guardian", "pending", "--key", "/dev/zero"))
    assert "too large to be a card file" in one_line_error(
        cli("enrol", "show", "/dev/zero", "--key", str(key), "--node", closed_url()))
    assert "/dev/zero is not a ward file" in one_line_error(
        cli("guardian", "consent", "--child", "00" * 16, "--until", "+1d", "--ward", "/dev/zero",
            "--companion", "MDA AB1", "--key", str(key), "--node", closed_url()))
    line = one_line_error(cli("guardian", "pending", "--key", str(key), "--passphrase-file", "/dev/zero"))
    assert "/dev/zero" in line and "larger than" in line


def test_keys_new_never_writes_through_a_link_planted_at_its_temporary_file(tmp_path):
    target = tmp_path / "victim"
    target.write_text("precious\n")
    (tmp_path / "k.key.tmp").symlink_to(target)
    proc = cli("keys", "new", str(tmp_path / "k.key"), "--fast-kdf")
    assert "k.key.tmp" in one_line_error(proc)
    assert target.read_text() == "precious\n" and (tmp_path / "k.key.tmp").is_symlink()
    assert not (tmp_path / "k.key").exists()
    # a stale regular file there (a write a crash interrupted) is replaced, and the key is 0600
    (tmp_path / "k.key.tmp").unlink()
    (tmp_path / "k.key.tmp").write_text("half a key")
    (tmp_path / "k.key.tmp").chmod(0o644)
    cli("keys", "new", str(tmp_path / "k.key"), "--fast-kdf", check=True)
    assert not (tmp_path / "k.key.tmp").exists() and (tmp_path / "k.key").stat().st_mode & 0o777 == 0o600


def test_keys_new_refuses_a_label_no_reader_would_accept(tmp_path):
    line = one_line_error(cli("keys", "new", str(tmp_path / "k.key"), "--fast-kdf", "--label", "x" * 100_000))
    assert "label is too long" in line and not (tmp_path / "k.key").exists()
    assert not list(tmp_path.iterdir())
    cli("keys", "new", str(tmp_path / "k.key"), "--fast-kdf", "--label", "x" * 1000, check=True)
    cli("keys", "show", str(tmp_path / "k.key"), check=True)


# --------------------------------------------------------------------------- enrolment outputs and refusals


def _enrol_child(tmp_path, key, *extra: str) -> Ran:
    return cli("enrol", "child", "--key", str(key), "--template", "t.scan", "--card-key", "00" * 32,
               "--gallery", str(tmp_path / "gallery"), "--majority-date", "2040-01-01", "--guardian", "00" * 32,
               "--approvals", "1", "--node", closed_url(), *extra)


@pytest.mark.parametrize("card_out", [".", "/", "..", "DIR"])
def test_enrol_refuses_a_card_out_that_is_a_directory_before_it_sends_anything(card_out, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "DIR").mkdir()
    key, _ = key_file(tmp_path, "authority")
    before = sorted(p.name for p in tmp_path.iterdir())
    line = one_line_error(_enrol_child(tmp_path, key, "--card-out", card_out))  # not 3: no node was asked
    assert "--card-out" in line
    line = one_line_error(cli("enrol", "reenrol", "--key", str(key), "--child", "00" * 16, "--template", "t.scan",
                              "--card-key", "00" * 32, "--card-out", card_out, "--node", closed_url()))
    assert "--card-out" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_enrol_never_overwrites_a_card_or_ward_file_and_checks_before_it_sends(tmp_path):
    key, _ = key_file(tmp_path, "authority")
    card, ward, other = tmp_path / "a.card", tmp_path / "a.card.ward", tmp_path / "b.ward"
    card.write_text("another child's card")
    line = one_line_error(_enrol_child(tmp_path, key, "--card-out", str(card)))
    assert f"--card-out {card} exists" in line
    card.unlink()
    ward.write_text("another child's ward file")
    assert "exists" in one_line_error(_enrol_child(tmp_path, key, "--card-out", str(card)))
    other.write_text("another ward")
    assert f"--ward-out {other} exists" in one_line_error(
        _enrol_child(tmp_path, key, "--card-out", str(card), "--ward-out", str(other)))
    assert "is a directory" in one_line_error(
        _enrol_child(tmp_path, key, "--card-out", str(card), "--ward-out", str(tmp_path)))
    pending = tmp_path / "c.card.pending"
    pending.write_text("the card of an enrolment that may have reached the chain")
    line = one_line_error(_enrol_child(tmp_path, key, "--card-out", str(tmp_path / "c.card")))
    assert "c.card.pending exists" in line
    assert ward.read_text() == "another child's ward file" and other.read_text() == "another ward"
    assert pending.read_text().startswith("the card") and not card.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@contextlib.contextmanager
def refusing_node():
    """A stand-in node that answers its status and genesis, and refuses every transaction with a
    problem document."""
    import json

    status = json.dumps({"chain_id": "stand-in", "height": 1, "node_id": "11" * 32}).encode()
    problem = json.dumps({"type": "https://custos.dev/problems/unknown-authority", "title": "transaction rejected",
                          "detail": "the signer is no registered authority", "rule": "unknown-authority"}).encode()

    class Handler(BaseHTTPRequestHandler):
        def reply(self, code, body, ctype):
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path.startswith("/v1/genesis"):
                self.reply(200, json.dumps({"hash": "ab" * 32, "chain_id": "stand-in"}).encode(), "application/json")
            else:
                self.reply(200, status, "application/json")

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.reply(422, problem, "application/problem+json")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_refusal_is_one_line_on_stderr(tmp_path):
    key, _ = key_file(tmp_path, "someone")
    with refusing_node() as url:
        for args in (("council", "register-post", "--post", "P", "--key", str(key), "--node", url),
                     ("enrol", "update-guardians", "--key", str(key), "--child", "00" * 16, "--order-ref", "X",
                      "--guardian", "00" * 32, "--approvals", "1", "--node", url)):
            proc = cli(*args)
            line = one_line_error(proc)
            assert line.startswith("custos: refused: unknown-authority") and proc.stdout == "", (args, proc)


def test_a_problem_without_a_type_still_says_what_it_is():
    from node.client.http import ProblemError

    assert ProblemError(404, {"title": "no such thing", "detail": "abc"}).diagnostics() == "no such thing: abc"
    assert ProblemError(500, {}).diagnostics() == "HTTP 500"
    assert ProblemError(422, {"type": "https://custos.dev/problems/x", "detail": "d"}).diagnostics() == "x: d"


def test_help_writes_a_past_relative_time_the_way_argparse_takes_it(capsys):
    """argparse takes '-24h' after '--since ' for an option: the help shows the form that works."""
    with pytest.raises(SystemExit):
        main(["enrol", "alerts", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--since=-24h" in text and "or -24h" not in text
    assert cli("enrol", "alerts", "--since", "-24h").returncode == 2  # the form the help no longer shows


# --------------------------------------------------------------------------- bytes that are not UTF-8


def test_rejects_an_argument_that_is_not_utf8():
    """Undecodable bytes in argv reach Python as lone surrogates: refused before anything is done."""
    line = one_line_error(cli("council", "register-post", "--post", "\udcff", "--key", "k"))
    assert line == r"custos: argument '\udcff' is not valid UTF-8"


def test_a_passphrase_in_the_environment_is_taken_as_its_bytes(tmp_path, monkeypatch):
    monkeypatch.setenv("CUSTOS_PASSPHRASE", "\udcffpw")  # the bytes b"\xffpw", not UTF-8
    key = tmp_path / "k.key"
    cli("keys", "new", str(key), "--fast-kdf", check=True)
    (tmp_path / "pass").write_bytes(b"\xffpw\n")
    proc = cli("guardian", "pending", "--key", str(key), "--passphrase-file", str(tmp_path / "pass"),
               "--node", closed_url())
    assert proc.returncode == 3, proc.stderr  # the key opened with the same bytes from a file
    monkeypatch.setenv("CUSTOS_NODES", "http://h\udcff:1")
    line = one_line_error(cli("guardian", "pending", "--key", str(key)))
    assert "$CUSTOS_NODES" in line and "not a node URL" in line


@pytest.mark.parametrize("args", [
    ("audit", "prove", "00" * 32, "--out", "{d}"),
    ("audit", "prove", "00" * 32, "--out", "."),
    ("audit", "verify", "--write-checkpoint", "{d}"),
    ("audit", "verify", "--write-checkpoint", "{f}"),
])
def test_audit_checks_where_it_writes_before_the_work_and_leaves_nothing(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").mkdir()
    (tmp_path / "f.replay").write_text("not a directory")
    args = tuple(a.format(d=tmp_path / "d", f=tmp_path / "f") for a in args)
    line = one_line_error(cli(*args, "--node", closed_url(), "--timeout", "2s"))  # 2, not 3: no node asked
    assert "cannot write the" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "f.replay"] and not list((tmp_path / "d").iterdir())


def test_a_node_whose_api_port_is_taken_says_so_in_one_line(tmp_path):
    import socket
    import sys

    node = devnet.create(tmp_path / "net", 1, tls=False)[0]
    host, port = node.api.rsplit(":", 1)
    with socket.socket() as taken:
        taken.bind((host, int(port)))
        taken.listen()
        proc = subprocess.run([sys.executable, "-m", "node.cli", "node", "start", "--init", "--config",
                               str(tmp_path / "net" / node.name / "node.toml")], capture_output=True, text=True,
                              timeout=60, stdin=subprocess.DEVNULL, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if " INFO " not in line and " WARNING " not in line]
    assert len(errors) == 1 and "address already in use" in errors[0], proc.stderr  # no "Unclosed client session"
    assert "committed block" not in proc.stderr  # it stopped before taking part in consensus


@pytest.mark.parametrize("args", [
    ("terminal", "cross", "--destination", "\u00df"),
    ("terminal", "cross", "--destination", "ROU"),
    ("guardian", "consent", "--destination", "R1"),
])
def test_rejects_a_destination_that_is_not_two_letters(args):
    assert "is not a country code" in one_line_error(cli(*args))


def test_terminal_init_refuses_a_chain_id_or_genesis_the_node_does_not_run(tmp_path):
    key, _ = key_file(tmp_path, "terminal")
    with refusing_node() as url:
        base = ("terminal", "init", "--key", str(key), "--post", "P", "--node", url)
        line = one_line_error(cli(*base, "--dir", str(tmp_path / "a"), "--chain-id", "wrong"))
        assert "--chain-id wrong" in line and "serves chain stand-in" in line
        line = one_line_error(cli(*base, "--dir", str(tmp_path / "b"), "--genesis-hash", "00" * 32))
        assert "runs genesis " + "ab" * 32 in line
        assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
        cli(*base, "--dir", str(tmp_path / "c"), "--chain-id", "stand-in", "--genesis-hash", "ab" * 32, check=True)


def test_council_erase_checks_the_identity_before_it_shows_a_salt(tmp_path):
    key, _ = key_file(tmp_path, "member")
    with refusing_node() as url:
        proc = cli("council", "erase", "--identity", "zz", "--order", "court order 1", "--key", str(key),
                   "--node", url)
    assert "'zz' is neither" in one_line_error(proc) and "salt" not in proc.stdout


def test_a_refused_enrolment_removes_only_the_files_it_made(tmp_path):
    from node.client.cards import synthetic_eye, write_scan

    key, _ = key_file(tmp_path, "authority")
    templates = []
    for i, (code, mask) in enumerate(synthetic_eye(7, 0, captures=3)):
        write_scan(tmp_path / f"eye{i}.scan", code, mask)
        templates += ["--template", str(tmp_path / f"eye{i}.scan")]
    kept = tmp_path / "kept.txt"
    kept.write_text("someone else's file")
    before = sorted(p.name for p in tmp_path.iterdir())
    card_key = SigningKey.generate().public.hex()
    with refusing_node() as url:
        def enrol(card_key: str) -> Ran:
            return cli("enrol", "child", "--key", str(key), *templates, "--card-key", card_key,
                       "--gallery", str(tmp_path / "gallery"), "--majority-date", "2040-01-01",
                       "--guardian", "00" * 32, "--approvals", "1", "--card-out", str(tmp_path / "x.card"),
                       "--node", url)

        # 32 bytes that are no public key: refused before anything is written or sent (was exit 4)
        assert "is not a card-opening public key" in one_line_error(enrol("22" * 32))
        assert sorted(p.name for p in tmp_path.iterdir()) == before
        proc = enrol(card_key)
    line = one_line_error(proc)
    assert line.startswith("custos: enrolment refused: unknown-authority") and proc.stdout == ""
    after = sorted(p.name for p in tmp_path.iterdir() if p.name != "gallery")
    assert after == before and kept.read_text() == "someone else's file"
