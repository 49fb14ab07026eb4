"""Validators formed by the genesis ceremony, talking to each other through the WAN proxy.

``WanNet(DIR).form()`` plays the ceremony with the real commands (``keys new``, ``node init``,
``genesis assemble``, ``genesis finalize``), one council key per agency; then points each
node's peer list at its own proxy listener per link (the one thing the ceremony cannot know:
that this "WAN" runs on one machine). ``start()`` runs the proxy and the nodes as processes.
The directory also gets a ``devnet.json`` so the devnet tools (``scripts/load.py``,
``custos devnet status``) work on it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from node import devnet
from node.cli import main as custos
from node.cli.ceremony_cmd import replace_toml_list
from node.devnet import NodeInfo


def _custos(*args: str) -> str:
    """Run a ``custos`` command in this process; its output, or an error with it."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = custos(list(args))
        except SystemExit as exc:
            code = int(exc.code or 0)
    if code != 0:
        raise RuntimeError(f"custos {' '.join(args)} exited {code}: {out.getvalue()} {err.getvalue()}")
    return out.getvalue()


class WanNet:
    def __init__(self, directory: Path, validators: int = 4, *, chain_id: str = "custos-wan", seed: int = 1,
                 loss: float = 0.01, heartbeat_ms: int = 1000) -> None:
        self.dir = Path(directory)
        self.names = [f"val-{i}" for i in range(validators)]
        self.chain_id = chain_id
        self.seed = seed
        self.loss = loss
        self.heartbeat_ms = heartbeat_ms
        self.nodes: dict[str, NodeInfo] = {}
        self.procs: dict[str, subprocess.Popen] = {}
        self.proxy: subprocess.Popen | None = None
        self.genesis_hashes: set[str] = set()

    # ---------------------------------------------------------------- the ceremony
    def form(self) -> None:
        d = self.dir
        d.mkdir(parents=True, exist_ok=True)
        secret = d / "passphrase"
        secret.write_text("wan test bed\n")
        secret.chmod(0o600)
        n = len(self.names)
        ports = devnet.free_ports(3 * n + n * (n - 1))
        (d / "council").mkdir(exist_ok=True)
        joins = []
        for i, name in enumerate(self.names):
            api, p2p, metrics = ports[3 * i:3 * i + 3]
            council = d / "council" / f"member-{i}.key"
            _custos("keys", "new", str(council), "--fast-kdf", "--passphrase-file", str(secret))
            _custos("node", "init", "--dir", str(d / name), "--name", name, "--chain-id", self.chain_id,
                    "--label", f"agency {i}", "--public-p2p", f"127.0.0.1:{p2p}", "--listen-p2p", f"127.0.0.1:{p2p}",
                    "--listen-api", f"127.0.0.1:{api}", "--listen-metrics", f"127.0.0.1:{metrics}",
                    "--council-key", str(council), "--fast-kdf", "--passphrase-file", str(secret))
            joins += ["--join", str(d / name / "join.json")]
        out = _custos("genesis", "assemble", "--chain-id", self.chain_id, *joins, "--council-threshold", "2",
                      "--out", str(d / "assembled"))
        announced = re.search(r"genesis hash ([0-9a-f]{64})", out).group(1)  # type: ignore[union-attr]
        for name in self.names:
            out = _custos("genesis", "finalize", "--dir", str(d / name), "--from", str(d / "assembled"),
                          "--expect-hash", announced)
            self.genesis_hashes.add(re.search(r"genesis hash ([0-9a-f]{64})", out).group(1))  # type: ignore[union-attr]
        bundle = json.loads((d / "assembled" / "peers.json").read_text())
        keys = {j["name"]: j["key"] for j in bundle["joins"]}
        for i, name in enumerate(self.names):
            api, p2p, metrics = ports[3 * i:3 * i + 3]
            self.nodes[name] = NodeInfo(name, f"127.0.0.1:{api}", f"127.0.0.1:{p2p}", keys[name], 100,
                                        f"127.0.0.1:{metrics}")
        links, next_port = [], 3 * n
        for src in self.names:
            peers = []
            for dst in self.names:
                if src == dst:
                    continue
                listen = f"127.0.0.1:{ports[next_port]}"
                next_port += 1
                links.append({"src": src, "dst": dst, "listen": listen, "target": self.nodes[dst].p2p})
                peers.append(f'{{ address = "{listen}", key = "{keys[dst]}" }}')
            config = d / src / "node.toml"
            text = replace_toml_list(config.read_text(), "peers", peers)
            config.write_text(text + f"\n[consensus]\nheartbeat_ms = {self.heartbeat_ms}\n")
        (d / "links.json").write_text(json.dumps(links, indent=2) + "\n")
        (d / devnet.DESCRIPTION).write_text(json.dumps({
            "chain_id": self.chain_id, "genesis_hash": announced,
            "council": [f"council/member-{i}.key" for i in range(n)],
            "nodes": [node.__dict__ for node in self.nodes.values()]}, indent=2) + "\n")

    # ---------------------------------------------------------------- processes
    def start(self) -> dict:
        self.proxy = subprocess.Popen([sys.executable, "-m", "node.testbed.wanproxy", "--links",
                                       str(self.dir / "links.json"), "--seed", str(self.seed), "--loss",
                                       str(self.loss)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                      start_new_session=True)
        assert self.proxy.stdout is not None
        ready = self.proxy.stdout.readline()
        if not ready.startswith("ready "):
            raise RuntimeError(f"the WAN proxy did not start: {ready!r}")
        self.procs = devnet.launch(self.dir, list(self.nodes.values()))
        try:
            devnet.wait_ready(list(self.nodes.values()), timeout_s=60)
        except TimeoutError as exc:
            dead = {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}
            logs = {n: (self.dir / n / "node.log").read_text(errors="replace")[-1500:] for n in dead}
            raise RuntimeError(f"{exc}; exited: {dead}; their logs: {logs}") from None
        return json.loads(ready[len("ready "):])

    def _command(self, line: str) -> str:
        assert self.proxy is not None and self.proxy.stdin is not None and self.proxy.stdout is not None
        self.proxy.stdin.write(line + "\n")
        self.proxy.stdin.flush()
        return self.proxy.stdout.readline().strip()

    def partition(self, *groups: list[str]) -> None:
        if self._command("partition " + "|".join(",".join(g) for g in groups)) != "ok":
            raise RuntimeError("the WAN proxy refused the partition")

    def heal(self) -> None:
        if self._command("heal") != "ok":
            raise RuntimeError("the WAN proxy refused to heal")

    def proxy_stats(self) -> dict:
        return json.loads(self._command("stats"))

    def stop(self) -> None:
        devnet.stop(self.procs)
        self.procs.clear()
        if self.proxy is not None:
            try:
                self._command("quit")
            except (OSError, AssertionError):
                pass
            try:
                self.proxy.wait(10)
            except subprocess.TimeoutExpired:
                self.proxy.kill()
                self.proxy.wait()
            self.proxy = None
