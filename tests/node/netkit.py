"""Real node processes on 127.0.0.1 for tests: create a devnet, start, kill, restart, wait.

Every wait is bounded in time and raises with what it was waiting for.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger.crypto.keys import SigningKey
from ledger.tx.envelope import Transaction
from node import devnet
from node.client.tls import urlopen
from node.client.txs import TxFactory
from node.keyfile import load_key_file

ROOT = Path(__file__).resolve().parents[2]

#: networks that have run a process, newest last (a failing test's report shows their logs)
RECENT: list[Net] = []


class Net:
    def __init__(self, directory: Path, validators: int = 1, *, harness: dict[str, str] | None = None,
                 **create_kwargs: Any) -> None:
        """``harness`` runs the named nodes through another entry point (a module under tests/,
        e.g. ``tests.node.byzantine_node``) that changes their behaviour from outside."""
        self._attach(directory, devnet.create(directory, validators, **create_kwargs), harness)

    @classmethod
    def existing(cls, directory: Path, *, harness: dict[str, str] | None = None) -> Net:
        """The network a directory holds already (a copy of another one, say); nothing runs yet."""
        net = cls.__new__(cls)
        net._attach(directory, devnet.load(directory), harness)
        return net

    def _attach(self, directory: Path, nodes: list[devnet.NodeInfo], harness: dict[str, str] | None) -> None:
        self.dir = directory
        self.nodes = {n.name: n for n in nodes}
        self.harness = dict(harness or {})
        self.procs: dict[str, subprocess.Popen] = {}
        self.passphrase = (directory / "passphrase").read_bytes().strip()
        doc = json.loads((directory / devnet.DESCRIPTION).read_text())
        self.chain_id = doc["chain_id"]
        self.council = [load_key_file(directory / p, self.passphrase) for p in doc["council"]]
        self.txs = TxFactory(self.chain_id)

    # ---- processes
    def start(self, *names: str, wait: bool = True, args: tuple[str, ...] = ()) -> None:
        """Start the named nodes (all by default); ``args`` go after ``node start --config FILE``."""
        names = names or tuple(self.nodes)
        if self in RECENT:
            RECENT.remove(self)
        RECENT.append(self)
        del RECENT[:-3]
        self.started_at = time.time()
        for name in names:
            if name in self.procs and self.procs[name].poll() is None:
                continue
            if name in self.harness or args:
                self.procs[name] = self._launch_in_harness(name, self.harness.get(name, "node.cli"), args)
            else:
                self.procs.update(devnet.launch(self.dir, [self.nodes[name]]))
        if wait:
            try:
                devnet.wait_ready([self.nodes[n] for n in names], timeout_s=30)
            except BaseException:
                self.stop()  # a test that fails here never reaches its own stop: leave no node running
                raise

    def _launch_in_harness(self, name: str, module: str, args: tuple[str, ...] = ()) -> subprocess.Popen:
        command = [*devnet.node_command(self.dir, name), *args]
        command[command.index("node.cli")] = module
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        with open(self.dir / name / "node.log", "ab") as out:
            return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                    cwd=ROOT, env=env)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(sig)
        proc.wait(15)

    def stop(self) -> None:
        devnet.stop(self.procs)
        self.procs.clear()

    def node_key(self, name: str) -> SigningKey:
        return load_key_file(self.dir / name / "node.key", self.passphrase)

    def url(self, name: str = "val-0") -> str:
        return self.nodes[name].url

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes.values()]

    def log(self, name: str) -> str:
        return (self.dir / name / "node.log").read_text(errors="replace")

    def log_tails(self, lines: int = 15) -> str:
        """The last lines of every node's log, for a failing test's report."""
        out = []
        for name in self.nodes:
            try:
                tail = self.log(name).splitlines()[-lines:]
            except OSError:
                continue
            out.append(f"--- {name} ({self.dir.name})")
            out.extend(line[:400] for line in tail)
        return "\n".join(out)

    # ---- observation
    def get(self, name: str, path: str) -> Any:
        with urlopen(self.url(name) + path, timeout=5) as r:
            return json.loads(r.read())

    def height(self, name: str = "val-0") -> int:
        return self.get(name, "/v1/status")["height"]

    def wait_until(self, what: str, predicate: Callable[[], bool], timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if predicate():
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"waited {timeout_s:.0f} s for {what}")

    def wait_height(self, height: int, *names: str, timeout_s: float = 30.0) -> None:
        for name in names or tuple(self.procs):
            self.wait_until(f"{name} to reach height {height}", lambda name=name: self.height(name) >= height,
                            timeout_s)


@dataclass
class Traveller:
    """An adult at a registered border post: every crossing is permitted at once, so a stream
    of them has no dependencies. ``setup`` registers the post and terminal and enrols them."""

    terminal: SigningKey
    person: SigningKey
    identity: bytes
    post: str
    setup: list[Transaction]

    def crossing(self, txs: TxFactory) -> Transaction:
        return txs.crossing(self.terminal, self.person, self.identity, post=self.post, direction="exit",
                            event_time=time.time_ns() // 1_000_000, destination="RO")


def adult_traveller(net: Net, post: str) -> Traveller:
    authority, terminal, person = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
    identity = os.urandom(16)
    t = net.txs
    setup = [
        t.register_authority(net.council[:2], authority.public),
        t.register_post(net.council[:2], post),
        t.register_terminal(net.council[:2], terminal.public, post),
        t.enrol(authority, person, identity, majority_day=0, guardians=[SigningKey.generate().public],
                approvals=1, deadline_ms=60_000, veto=False),
    ]
    return Traveller(terminal, person, identity, post, setup)


def run(coro):
    return asyncio.run(coro)
