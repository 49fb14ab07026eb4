"""Client-side helpers for tests through real processes: key files, CLI runs, watchers, signed reads.

Every wait is bounded in time and raises with what it was waiting for.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ledger.crypto.keys import DOMAIN_READ, SigningKey
from ledger.tx.bodies import CROSSING
from ledger.tx.envelope import decode_tx
from node.access.purpose import DEFAULT_PURPOSE
from node.client.cards import enrol_scans, new_pseudonym_key, synthetic_eye, write_card, write_scan
from node.client.http import NodeClient
from node.client.signed import sign_request
from node.client.tls import urlopen
from node.keyfile import MINIMAL, write_key_file
from tests.node.netkit import Net, run

PASSPHRASE = b"correct horse battery staple"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def key_file(directory: Path, name: str, key: SigningKey | None = None) -> tuple[Path, SigningKey]:
    key = key or SigningKey.generate()
    path = directory / f"{name}.key"
    write_key_file(path, key, PASSPHRASE, label=name, cost=MINIMAL)
    return path, key


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["CUSTOS_PASSPHRASE"] = PASSPHRASE.decode()
    env["PYTHONUNBUFFERED"] = "1"
    return env


def cli(*args: str, timeout_s: float = 60.0, check: bool = False) -> subprocess.CompletedProcess:
    """Run ``custos ARGS`` in a fresh process; returns the completed process (text output)."""
    proc = subprocess.run([sys.executable, "-m", "node.cli", *args], capture_output=True, text=True,
                          timeout=timeout_s, env=cli_env(), stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise AssertionError(f"custos {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


class Background:
    """A long-running ``custos`` process whose stdout JSON lines are collected as they come."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self.proc = subprocess.Popen([sys.executable, "-m", "node.cli", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=cli_env(), stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        self.lines: queue.Queue[dict] = queue.Queue()
        self.seen: list[dict] = []
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.lines.put(json.loads(line))

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    def expect(self, what: str, predicate: Callable[[dict], bool], timeout_s: float = 20.0) -> dict:
        """The first (not yet returned) line matching ``predicate``."""
        for i, doc in enumerate(self.seen):
            if predicate(doc):
                return self.seen.pop(i)
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"waited {timeout_s:.0f} s for {what} from custos {' '.join(self.args)}; "
                                   f"stderr: {''.join(self.stderr)[-2000:]}")
            try:
                doc = self.lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    raise AssertionError(f"custos {' '.join(self.args)} exited {self.proc.returncode} while "
                                         f"waiting for {what}: {''.join(self.stderr)[-2000:]}") from None
                continue
            if predicate(doc):
                return doc
            self.seen.append(doc)

    def kill(self, sig: int = 9) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        self.proc.wait(15)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


# --------------------------------------------------------------------------- signed reads


_NODE_IDS: dict[str, bytes] = {}
_ROLES: dict[tuple[str, bytes], str | None] = {}
AUTO = "auto"


def node_id(url: str) -> bytes:
    """The public key of the node at ``url`` (a signed request binds it)."""
    if url not in _NODE_IDS:
        _NODE_IDS[url] = bytes.fromhex(raw_get(url, "/v1/status", {})[1]["node_id"])
    return _NODE_IDS[url]


def role_purpose(url: str, path: str, key: SigningKey, chain_id: str) -> str | None:
    """The purpose a client of ``key``'s role states by default for ``path`` (the role asked of
    the node: whoami): ``audit`` for integrity readers reading blocks or transactions."""
    memo = (url, key.public)
    if memo not in _ROLES:
        doc = raw_get(url, "/v1/access/whoami",
                      sign_request(key, chain_id, "GET", "/v1/access/whoami", node=node_id(url)))[1]
        _ROLES[memo] = doc.get("role")
    role = _ROLES[memo]
    integrity = role in ("auditor", "enrolment-authority", "council", "node")
    if integrity and path.startswith(("/v1/blocks", "/v1/txs")):
        return "audit"
    return DEFAULT_PURPOSE.get(role or "", "audit" if integrity else "case-work")


def signed_headers(url: str, path: str, key: SigningKey, chain_id: str, *, purpose: str | None = AUTO,
                   domain: str = DOMAIN_READ, time_ms: int | None = None, method: str = "GET",
                   body: bytes = b"") -> dict:
    """The headers of a request signed by ``key`` for the node at ``url``; ``purpose`` AUTO
    states the default purpose of the key's role, None states none."""
    if purpose == AUTO:
        purpose = role_purpose(url, path, key, chain_id)
    return sign_request(key, chain_id, method, path, node=node_id(url), purpose=purpose, domain=domain,
                        time_ms=time_ms, body=body)


def signed_get(url: str, path: str, key: SigningKey | None, chain_id: str, *, domain: str = DOMAIN_READ,
               headers: dict | None = None, time_ms: int | None = None,
               purpose: str | None = AUTO) -> tuple[int, dict, dict]:
    """GET ``path`` signed by ``key`` (unsigned if None): (status, JSON document, response headers)."""
    hdrs = dict(headers or {})
    if key is not None:
        hdrs.update(signed_headers(url, path, key, chain_id, purpose=purpose, domain=domain, time_ms=time_ms))
    return raw_get(url, path, hdrs)


def raw_get(url: str, path: str, headers: dict) -> tuple[int, dict, dict]:
    req = urllib.request.Request(url + path, headers=headers)
    try:
        with urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read()), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}"), dict(e.headers)


# --------------------------------------------------------------------------- a registered world


@dataclass
class Child:
    identity: bytes
    card: Path
    scans: list[Path]  # fresh rescans of the same eye
    biometric: SigningKey
    guardians: list[SigningKey]
    guardian_files: list[Path]


class World:
    """A post, its terminal, an enrolment authority and an auditor, registered on ``net``; key
    files under ``directory`` (all with :data:`PASSPHRASE`)."""

    def __init__(self, net: Net, directory: Path, post: str = "MD-LEU") -> None:
        self.net = net
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.post = post
        self.authority_file, self.authority = key_file(directory, "authority")
        self.terminal_file, self.terminal = key_file(directory, "terminal")
        self.auditor_file, self.auditor = key_file(directory, "auditor")
        self.card_key_file, self.card_key = key_file(directory, "card-opening")
        t = net.txs
        self.submit_all([
            t.register_authority(net.council[:2], self.authority.public, "enrolment office"),
            t.register_post(net.council[:2], post, "Leuseni"),
            t.register_terminal(net.council[:2], self.terminal.public, post, "booth 1"),
            t.register_auditor(net.council[:2], self.auditor.public, "auditor"),
        ])
        self._eyes = 0

    def submit_all(self, txs: list) -> list[dict]:
        return run(self.asubmit(txs))

    async def asubmit(self, txs: list) -> list[dict]:
        """Submit and wait for each commit (from inside a running event loop)."""
        out = []
        async with NodeClient(self.net.urls) as c:
            for tx in txs:
                r = await c.submit(tx.raw, wait=True)
                assert r["status"] == "committed", r
                out.append(r)
        return out

    def enrol(self, name: str, *, guardians: int = 2, approvals: int = 2, deadline_ms: int = 60_000,
              veto: bool = True, adult: bool = False, rescans: int = 4) -> Child:
        """Enrol a child directly with transactions (the CLI path has its own test)."""
        self._eyes += 1
        captures = synthetic_eye(zlib.crc32(f"{name}/{self._eyes}".encode()), rescans)
        enrolled = enrol_scans(captures[:1])
        biometric = enrolled.key
        identity = os.urandom(16)
        card = self.dir / f"{name}.card"
        write_card(card, identity, enrolled.helper_bytes, new_pseudonym_key(), self.card_key.public)
        scans = []
        for i, (code, mask) in enumerate(captures[1:]):
            path = self.dir / f"{name}-scan-{i}.json"
            write_scan(path, code, mask)
            scans.append(path)
        keys, files = [], []
        for i in range(guardians):
            path, key = key_file(self.dir, f"{name}-guardian-{i}")
            keys.append(key)
            files.append(path)
        majority = 0 if adult else now_ms() // 86_400_000 + 10 * 365
        self.submit_all([self.net.txs.enrol(self.authority, biometric, identity, majority_day=majority,
                                            guardians=[k.public for k in keys], approvals=approvals,
                                            deadline_ms=deadline_ms, veto=veto)])
        return Child(identity, card, scans, biometric, keys, files)

    def node_args(self) -> list[str]:
        out = []
        for url in self.net.urls:
            out += ["--node", url]
        return out

    def init_terminal(self, directory: Path) -> Path:
        cli("terminal", "init", "--dir", str(directory), "--key", str(self.terminal_file), "--post", self.post,
            "--card-key", str(self.card_key_file), *self.node_args(), check=True)
        return directory


def full_block(net: Net, height: int, key: SigningKey | None = None, name: str = "val-0") -> dict:
    """The whole block at ``height`` (transactions' bytes included), read as an integrity reader
    (a council member unless ``key`` is given)."""
    status, doc, _ = signed_get(net.url(name), f"/v1/blocks/{height}", key or net.council[0], net.chain_id)
    assert status == 200 and doc.get("view") == "full", (status, doc)
    return doc


def crossings_by(net: Net, terminal: bytes) -> list[bytes]:
    """Every committed crossing request ``terminal`` signed, read straight from the blocks."""
    out = []
    for height in range(1, net.height() + 1):
        for raw_hex in full_block(net, height)["txs"]:
            tx = decode_tx(bytes.fromhex(raw_hex))
            if tx.kind == CROSSING and tx.body.terminal == terminal:
                out.append(tx.id)
    return out
