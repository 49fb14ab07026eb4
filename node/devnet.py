"""A local network of validator processes on 127.0.0.1, for development and the demo.

``create`` lays out a directory::

    DIR/devnet.json          the network's description: nodes, ports, keys (read by `devnet demo`)
    DIR/genesis.toml         unequal stakes, a 2-of-3 council
    DIR/passphrase           the devnet's key-file passphrase (mode 0600; devnet only)
    DIR/council/member-N.key the council's keys
    DIR/tls/ca.pem           with ``tls``: the local CA's certificate, which clients trust
    DIR/val-N/node.toml      each node's config (API, p2p and metrics listeners); its LevelDB under DIR/val-N/chain
    DIR/val-N/node.key
    DIR/val-N/tls/           with ``tls``: the node's API certificate (127.0.0.1, localhost) and key

Directories are 0700 and every file but the certificates and the genesis 0600: the devnet's
keys and passphrase are its user's alone.

``launch`` starts one ``custos node start`` process per node and ``stop`` ends them with SIGTERM
(SIGKILL after a grace period). Running ``up`` again on an existing directory restarts the same
network where it stopped.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ledger.crypto.keys import SigningKey
from ledger.errors import CustosError
from ledger.genesis import Genesis, GenesisValidator, genesis_to_toml
from ledger.state.records import DEFAULT_PARAMS, Council
from ledger.storage.files import private_dir, write_atomically
from node.client.tls import trust
from node.keyfile import MINIMAL, write_key_file

DESCRIPTION = "devnet.json"
CA_FILE = "tls/ca.pem"
#: stakes of the first validators; unequal on purpose, so voting power is not a head count, yet
#: with four or more validators none holds a third of the stake: any one may fail (or stall)
#: and the others still hold the more than 2/3 that commits
STAKES = (300, 270, 230, 200, 280, 220, 260, 240)


@dataclass(frozen=True)
class NodeInfo:
    name: str
    api: str
    p2p: str
    key: str
    stake: int
    #: the node's Prometheus/OpenMetrics listener, HOST:PORT ("" in devnets made before it existed)
    metrics: str = ""
    #: the API speaks TLS, with a certificate from the devnet's CA
    tls: bool = False

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.api}"


#: where devnets' ports are taken from: below the ephemeral ranges (Linux hands out 32768-60999 for
#: outgoing connections, Windows and macOS 49152-65535), so that no client connection's source port
#: takes a port between the moment it is chosen and the moment its node binds it
PORT_RANGE = (20_000, 32_000)
#: each process takes its ports from its own stretch of the range: test workers from the first
#: half, one each, and any other process (a devnet, a benchmark) from the second, by its pid
PORT_STRETCHES = 24
#: where this process's next port is, counted from its stretch's start (processes that share a
#: stretch start apart)
_port_turn = itertools.count(os.getpid() * 7)


def _port_stretch() -> range:
    half = PORT_STRETCHES // 2
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ...
    slot = int(worker[2:]) % half if worker[2:].isdigit() else half + os.getpid() % half
    size = (PORT_RANGE[1] - PORT_RANGE[0]) // PORT_STRETCHES
    start = PORT_RANGE[0] + slot * size
    return range(start, start + size)


def free_ports(n: int) -> list[int]:
    """``n`` ports free now (nothing bound to them), for nodes to bind soon after; taken in turn from
    this process's stretch of :data:`PORT_RANGE`, so that ports freed lately are the last reused."""
    stretch = _port_stretch()
    ports: list[int] = []
    for _ in range(len(stretch)):
        port = stretch[next(_port_turn) % len(stretch)]
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == n:
            return ports
    raise OSError(f"fewer than {n} free ports in {stretch.start}-{stretch.stop - 1}")


def create(directory: Path, validators: int = 4, *, chain_id: str = "custos-devnet",
           heartbeat_ms: int = 5_000, extra_consensus: dict | None = None, observers: int = 0,
           node_consensus: dict[str, dict] | None = None, tls: bool = False) -> list[NodeInfo]:
    """Create a new devnet in ``directory`` (which must not hold one already).

    ``observers`` adds non-voting nodes (``obs-N``) that follow the chain by block sync;
    ``node_consensus`` overrides consensus settings per node name; ``tls`` makes a local CA
    and serves each node's API over TLS with a certificate it issued (this process trusts the CA
    from then on; others find it through ``devnet.json``).
    """
    private_dir(directory)
    if (directory / DESCRIPTION).exists():
        raise FileExistsError(f"{directory} holds a devnet already")
    passphrase = secrets.token_hex(16).encode()
    pass_file = directory / "passphrase"
    fd = os.open(pass_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(passphrase + b"\n")
    private_dir(directory / "council")
    council = [SigningKey.generate() for _ in range(3)]
    for i, key in enumerate(council):
        write_key_file(directory / "council" / f"member-{i}.key", key, passphrase, label=f"council {i}", cost=MINIMAL)
    ports = free_ports(3 * (validators + observers))
    nodes: list[NodeInfo] = []
    keys = []
    for i in range(validators + observers):
        key = SigningKey.generate()
        keys.append(key)
        name, stake = (f"val-{i}", STAKES[i % len(STAKES)]) if i < validators else (f"obs-{i - validators}", 0)
        api, p2p, metrics = ports[3 * i:3 * i + 3]
        nodes.append(NodeInfo(name, f"127.0.0.1:{api}", f"127.0.0.1:{p2p}", key.public.hex(), stake,
                              f"127.0.0.1:{metrics}", tls))
    voters = [n for n in nodes if n.stake > 0]
    watchers = [n for n in nodes if n.stake == 0]
    genesis = Genesis(
        chain_id=chain_id,
        genesis_time=time.time_ns() // 1_000_000,
        council=Council(threshold=2, members=tuple(sorted(k.public for k in council))),
        validators=tuple(sorted((GenesisValidator(bytes.fromhex(n.key), n.stake, n.name) for n in voters),
                                key=lambda v: v.key)),
        params=DEFAULT_PARAMS,
    )
    (directory / "genesis.toml").write_text(genesis_to_toml(genesis))
    ca = None
    if tls:
        from node.tls import LocalCA  # cryptography's x509, only when a CA is made

        ca = LocalCA.create(chain_id)
        private_dir(directory / "tls")
        ca.write_cert(directory / CA_FILE)
    for node, key in zip(nodes, keys, strict=True):
        node_dir = directory / node.name
        private_dir(node_dir)
        if ca is not None:
            private_dir(node_dir / "tls")
            ca.issue(node.name, node_dir / "tls" / "cert.pem", node_dir / "tls" / "key.pem")
        write_key_file(node_dir / "node.key", key, passphrase, label=node.name, cost=MINIMAL)
        observer = node.stake == 0
        peers = [p for p in voters if p.name != node.name]  # observers dial validators, not each other
        allow = [] if observer else [w.key for w in watchers]
        consensus = {**(extra_consensus or {}), **(node_consensus or {}).get(node.name, {})}
        write_atomically(node_dir / "node.toml",
                         _node_config(node, peers, allow, observer, heartbeat_ms, consensus).encode())
    description = {
        "chain_id": chain_id,
        "genesis_hash": genesis.hash.hex(),
        "council": [f"council/member-{i}.key" for i in range(3)],
        "nodes": [n.__dict__ for n in nodes],
    }
    if tls:
        description["ca"] = CA_FILE
        trust(directory / CA_FILE)
    (directory / DESCRIPTION).write_text(json.dumps(description, indent=2) + "\n")
    return nodes


def _node_config(node: NodeInfo, peers: list[NodeInfo], allow: list[str], observer: bool, heartbeat_ms: int,
                 extra: dict) -> str:
    lines = [
        f"# devnet node {node.name}; paths are relative to this file",
        "[node]",
        f'name = "{node.name}"',
        'data_dir = "."',
        'genesis = "../genesis.toml"',
        'key_file = "node.key"',
        'passphrase_file = "../passphrase"',
        f'role = "{"observer" if observer else "validator"}"',
        "",
        "[api]",
        f'listen = "{node.api}"',
        f"ready_max_block_age_ms = {max(5_000, 5 * heartbeat_ms)}",
        *(['tls_cert = "tls/cert.pem"', 'tls_key = "tls/key.pem"'] if node.tls else []),
        "",
        "[metrics]",
        f'listen = "{node.metrics}"',
        "",
        "[p2p]",
        f'listen = "{node.p2p}"',
        "peers = [",
        *[f'  {{ address = "{p.p2p}", key = "{p.key}" }},' for p in peers],
        "]",
        f"allow = {json.dumps(allow)}",
        "",
        "[consensus]",
        f"heartbeat_ms = {heartbeat_ms}",
        *[f"{k} = {json.dumps(v)}" for k, v in sorted(extra.items())],
    ]
    return "\n".join(lines) + "\n"


class BadDevnet(CustosError, ValueError):
    """A ``devnet.json`` that is not the description :func:`create` writes; names the file."""

    code = "devnet"

    def diagnostics(self) -> str:
        return str(self)


#: the fields of a node in ``devnet.json``, with their types (the last two may be absent)
_NODE_FIELDS = {"name": str, "api": str, "p2p": str, "key": str, "stake": int, "metrics": str, "tls": bool}


def describe(directory: Path) -> dict:
    """The devnet's description (``DIR/devnet.json``), checked for the shape :func:`create` writes:
    a :class:`BadDevnet` naming the file if it is not JSON or not that shape (OSError if unreadable)."""
    path = Path(directory) / DESCRIPTION
    raw = path.read_bytes()
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        raise BadDevnet(f"{path} is not a devnet description (not JSON)") from None

    def bad(what: str) -> BadDevnet:
        return BadDevnet(f"{path} is not a devnet description: {what}")

    if not isinstance(doc, dict):
        raise bad("not a JSON object")
    nodes = doc.get("nodes")
    if not isinstance(nodes, list) or not nodes:
        raise bad('"nodes" is not a list of nodes')
    for n in nodes:
        if not isinstance(n, dict) or not set(_NODE_FIELDS) - {"metrics", "tls"} <= set(n) <= set(_NODE_FIELDS):
            raise bad(f"a node is not an object with the fields {', '.join(_NODE_FIELDS)}")
        for field, kind in _NODE_FIELDS.items():
            if field in n and (type(n[field]) is not kind):
                raise bad(f"a node's {field!r} is not {'a number' if kind is int else 'a ' + kind.__name__}")
    council = doc.get("council", [])
    if not isinstance(council, list) or not all(isinstance(p, str) and p for p in council):
        raise bad('"council" is not a list of key files')
    for field in ("ca", "chain_id", "genesis_hash"):
        if doc.get(field) is not None and not isinstance(doc[field], str):
            raise bad(f"{field!r} is not a string")
    return doc


def load(directory: Path) -> list[NodeInfo]:
    """The devnet's nodes; this process trusts its CA from then on."""
    doc = describe(directory)
    if doc.get("ca"):
        trust(directory / doc["ca"])
    return [NodeInfo(**n) for n in doc["nodes"]]


def ca_file(directory: Path) -> Path | None:
    """The devnet's CA certificate, if it made one."""
    doc = describe(directory)
    return directory / doc["ca"] if doc.get("ca") else None


def node_command(directory: Path, name: str) -> list[str]:
    command = [sys.executable, "-m", "node.cli", "node", "start", "--config", str(directory / name / "node.toml")]
    if not (directory / name / "chain").exists():
        command.append("--init")  # the node's first start: it makes its signer state
    return command


def launch(directory: Path, nodes: list[NodeInfo], *, log_dir: Path | None = None) -> dict[str, subprocess.Popen]:
    procs = {}
    for node in nodes:
        log = (log_dir or directory / node.name) / "node.log"
        with open(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as out:
            procs[node.name] = subprocess.Popen(node_command(directory, node.name), stdout=out,
                                                stderr=subprocess.STDOUT, start_new_session=True)
    return procs


def wait_ready(nodes: list[NodeInfo], timeout_s: float = 30.0) -> None:
    """Wait until every node answers /healthz (bounded in time)."""
    from node.client.tls import urlopen

    deadline = time.monotonic() + timeout_s
    pending = list(nodes)
    while pending:
        node = pending[0]
        try:
            with urlopen(node.url + "/healthz", timeout=1) as r:
                if r.status == 200:
                    pending.pop(0)
                    continue
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"node {node.name} did not come up within {timeout_s:.0f} s")
        time.sleep(0.1)


def stop(procs: dict[str, subprocess.Popen], grace_s: float = 10.0) -> None:
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for p in procs.values():
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
