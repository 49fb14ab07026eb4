"""The genesis ceremony through the command line alone: four agencies, four directories, one
network. And what each operator's ``finalize`` refuses: a statement altered, a node left out, a
validator nobody signed for, a hash other than the one read out.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from node.cli import main
from node.devnet import free_ports
from tests.node.clientkit import PASSPHRASE, cli_env


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture(autouse=True)
def in_process(monkeypatch, capsys):
    """Ceremony commands run in this process (fast); their output is captured per call."""
    monkeypatch.setenv("CUSTOS_PASSPHRASE", PASSPHRASE.decode())
    global _capsys
    _capsys = capsys


def cli(*args: str, check: bool = False, timeout_s: float = 0) -> Ran:  # clientkit.cli's signature
    _capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = _capsys.readouterr()
    ran = Ran(code, out.out, out.err)
    if check and code != 0:
        raise AssertionError(f"custos {' '.join(args)} exited {code}:\n{ran.stdout}\n{ran.stderr}")
    return ran

AGENCIES = ("ministry", "police", "childcare", "ombuds")
CHAIN = "custos-ceremony-test"


def init_agencies(root: Path, names=AGENCIES, chain_id: str = CHAIN) -> dict[str, dict]:
    """Each agency: a council key of its own and a node directory from `custos node init`."""
    ports = free_ports(3 * len(names))
    agencies = {}
    for i, name in enumerate(names):
        api, p2p, metrics = ports[3 * i:3 * i + 3]
        council_key = root / f"{name}-council.key"
        cli("keys", "new", str(council_key), "--fast-kdf", check=True)
        node_dir = root / name
        proc = cli("node", "init", "--dir", str(node_dir), "--chain-id", chain_id, "--label", f"the {name}",
                   "--public-p2p", f"127.0.0.1:{p2p}", "--listen-p2p", f"127.0.0.1:{p2p}",
                   "--listen-api", f"127.0.0.1:{api}", "--listen-metrics", f"127.0.0.1:{metrics}",
                   "--council-key", str(council_key), "--fast-kdf", check=True)
        assert "join.json" in proc.stdout
        agencies[name] = {"dir": node_dir, "council": council_key, "api": f"http://127.0.0.1:{api}"}
    return agencies


def assemble(root: Path, agencies: dict, *extra: str) -> Ran:
    joins = [a for name in agencies for a in ("--join", str(agencies[name]["dir"] / "join.json"))]
    return cli("genesis", "assemble", "--chain-id", CHAIN, *joins, "--out", str(root / "assembled"), *extra)


def finalize(agency: dict, source: Path, *extra: str) -> Ran:
    return cli("genesis", "finalize", "--dir", str(agency["dir"]), "--from", str(source), *extra)


def genesis_hash(proc: Ran) -> str:
    return re.search(r"genesis hash ([0-9a-f]{64})", proc.stdout).group(1)


def test_four_agencies_form_a_network_with_the_ceremony_commands_alone(tmp_path):
    agencies = init_agencies(tmp_path)
    proc = assemble(tmp_path, agencies)
    assert proc.returncode == 0, proc.stderr
    announced = genesis_hash(proc)
    hashes = set()
    for agency in agencies.values():  # every operator checks and installs it on their own
        proc = finalize(agency, tmp_path / "assembled", "--expect-hash", announced)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        hashes.add(genesis_hash(proc))
        assert "council 3 of 4" in proc.stdout and "3 peers written" in proc.stdout
    assert hashes == {announced}
    procs = []
    try:
        for agency in agencies.values():
            with open(agency["dir"] / "node.log", "wb") as log:
                procs.append(subprocess.Popen([sys.executable, "-m", "node.cli", "node", "start", "--config",
                                               str(agency["dir"] / "node.toml")], stdout=log,
                                              stderr=subprocess.STDOUT, env=cli_env(), stdin=subprocess.DEVNULL,
                                              start_new_session=True))
        deadline = time.monotonic() + 60
        statuses = {}
        while len(statuses) < len(agencies) and time.monotonic() < deadline:
            for name, agency in agencies.items():
                try:
                    with urllib.request.urlopen(agency["api"] + "/v1/status", timeout=1) as r:
                        statuses[name] = json.loads(r.read())
                except OSError:
                    time.sleep(0.2)
        assert len(statuses) == len(agencies), "not every node came up"
        assert {s["genesis_hash"] for s in statuses.values()} == {announced}
        # three of the four agencies' council keys sign a governance transaction: it commits
        keys = [a for name in AGENCIES[:3] for a in ("--key", str(agencies[name]["council"]))]
        proc = cli("council", "register-post", "--post", "MD-LEU", *keys, "--node", agencies["police"]["api"],
                   timeout_s=90)
        assert proc.returncode == 0 and "committed at height" in proc.stdout, proc.stdout + proc.stderr
        height = int(re.search(r"at height (\d+)", proc.stdout).group(1))
        for agency in agencies.values():
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with urllib.request.urlopen(agency["api"] + "/v1/status", timeout=2) as r:
                    if json.loads(r.read())["height"] >= height:
                        break
                time.sleep(0.2)
            else:
                raise AssertionError(f"{agency['dir'].name} did not reach height {height}")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.fixture
def three(tmp_path):
    return init_agencies(tmp_path, AGENCIES[:3])


def test_rejects_a_join_statement_altered_after_signing(tmp_path, three):
    path = three["police"]["dir"] / "join.json"
    doc = json.loads(path.read_text())
    doc["p2p"] = "203.0.113.9:8800"  # someone redirects the police node's traffic
    path.write_text(json.dumps(doc))
    proc = assemble(tmp_path, three)
    assert proc.returncode == 2 and "does not verify" in proc.stderr


def test_finalize_refuses_a_genesis_that_left_the_node_out(tmp_path, three):
    proc = assemble(tmp_path, {k: three[k] for k in ("ministry", "police")})
    assert proc.returncode == 0, proc.stderr
    proc = finalize(three["childcare"], tmp_path / "assembled")
    assert proc.returncode == 1 and "left out" in proc.stderr
    assert not (three["childcare"]["dir"] / "genesis.toml").exists()


def test_finalize_refuses_a_validator_nobody_signed_for(tmp_path, three):
    assert assemble(tmp_path, three).returncode == 0
    genesis = tmp_path / "assembled" / "genesis.toml"
    genesis.write_text(genesis.read_text() + '\n[[validators]]\nkey = "' + "ab" * 32 + '"\nstake = 1000\nlabel = "x"\n')
    proc = finalize(three["ministry"], tmp_path / "assembled")
    assert proc.returncode == 1 and "without a statement" in proc.stderr


def test_finalize_refuses_a_hash_other_than_the_one_read_out(tmp_path, three):
    assert assemble(tmp_path, three).returncode == 0
    proc = finalize(three["ministry"], tmp_path / "assembled", "--expect-hash", "00" * 32)
    assert proc.returncode == 1 and "REFUSED" in proc.stderr


def test_rejects_node_init_over_an_existing_node(tmp_path, three):
    proc = cli("node", "init", "--dir", str(three["police"]["dir"]), "--chain-id", CHAIN, "--public-p2p",
               "127.0.0.1:1", "--fast-kdf")
    assert proc.returncode == 2 and "holds a node already" in proc.stderr


def test_assemble_refuses_a_stake_beyond_the_largest_voting_power(tmp_path):
    agencies = init_agencies(tmp_path, names=("ministry",))
    proc = assemble(tmp_path, agencies, "--stake", "ministry=99999999999999999999999")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "--stake" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "assembled").exists()


@pytest.mark.parametrize("chain_id", ["c" * 65, 'a"b', "a\\tb"])
def test_assemble_never_writes_a_genesis_that_finalize_would_refuse(tmp_path, chain_id):
    agencies = init_agencies(tmp_path, names=("ministry",), chain_id=chain_id)
    joins = ("--join", str(agencies["ministry"]["dir"] / "join.json"))
    proc = cli("genesis", "assemble", "--chain-id", chain_id, *joins, "--out", str(tmp_path / "assembled"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "assembled").exists()


def test_finalize_refuses_an_expected_hash_that_is_not_one(tmp_path):
    agencies = init_agencies(tmp_path, names=("ministry",))
    assert assemble(tmp_path, agencies).returncode == 0
    proc = finalize(agencies["ministry"], tmp_path / "assembled", "--expect-hash", "zz")
    assert proc.returncode == 2 and "64 hex digits" in proc.stderr and proc.stdout == "", proc
