"""A nemesis for real validator processes, in the manner of Jepsen: seeded, bounded, checked.

While terminals submit crossings (:class:`tests.node.faultkit.Load`), the nemesis perturbs
one validator at a time (a validator holds less than a third of the stake, so the others
always can commit), then waits until the network has healed by itself: every validator
connected to every other, dialling all of them, and all committing again. Perturbations:

* ``pause``: SIGSTOP for a few seconds, then SIGCONT (a VM stall, a long collector pass);
* ``kill``: SIGKILL, then a start again (a crash);
* ``restart``: SIGTERM, then a start again (an upgrade);
* ``isolate``: every peer link of the validator cut, in both directions, then healed (a
  partition; its API stays reachable, so it keeps acknowledging crossings meanwhile);
* ``damage``: the validator is stopped and restarted, and a copy of its data directory taken
  meanwhile is damaged (tables truncated, LevelDB's CURRENT file or the signer state
  removed): a node started on the copy must refuse with one line, and the auditor must not
  pass it, never with a traceback.

The checks that follow a run are the test's: every acknowledged crossing is in the chain
exactly once, the validators agree, and each one's data directory audits VALID. A run is
replayed from its seed (``CUSTOS_NEMESIS_SEED``); its figures are a JSON document.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import plyvel

from tests.node.faultkit import pause, recovered, resume
from tests.node.links import Links
from tests.node.netkit import ROOT, Net

KINDS = ("pause", "kill", "restart", "isolate", "damage")
DAMAGES = ("truncated-tables", "no-current-file", "no-signer-state")


@dataclass
class Figures:
    seed: int
    recovery_bound_s: float
    perturbations: int = 0
    by_kind: Counter = field(default_factory=Counter)
    recoveries_s: list[float] = field(default_factory=list)
    acknowledged: int = 0
    committed: int = 0
    lost: int = 0
    duplicated: int = 0
    refused_copies: int = 0

    def to_json(self) -> dict:
        return {
            "seed": self.seed, "perturbations": self.perturbations, "by_kind": dict(self.by_kind),
            "acknowledged": self.acknowledged, "committed": self.committed, "lost": self.lost,
            "duplicated": self.duplicated, "damaged_copies_refused": self.refused_copies,
            "recovery_bound_s": self.recovery_bound_s,
            "longest_recovery_s": round(max(self.recoveries_s, default=0.0), 2),
            "median_recovery_s": round(sorted(self.recoveries_s)[len(self.recoveries_s) // 2], 2)
            if self.recoveries_s else None,
        }


class Nemesis:
    def __init__(self, net: Net, links: Links, seed: int, *, recovery_bound_s: float = 45.0,
                 pause_s: tuple[float, float] = (4.0, 16.0), isolate_s: tuple[float, float] = (3.0, 8.0)) -> None:
        """Pauses last ``pause_s`` (up to past the 15 s after which its peers have surely
        dropped a silent node), partitions ``isolate_s``."""
        self.net = net
        self.links = links
        self.rng = random.Random(seed)
        self.pause_s = pause_s
        self.isolate_s = isolate_s
        self.validators = sorted(n for n in net.nodes if n.startswith("val-"))
        self.figures = Figures(seed, recovery_bound_s)
        self.log: list[str] = []

    def plan(self, count: int) -> list[tuple[str, str]]:
        """``count`` perturbations: every kind in turn (each round shuffled), random targets."""
        kinds: list[str] = []
        while len(kinds) < count:
            round_ = list(KINDS)
            self.rng.shuffle(round_)
            kinds += round_
        return [(kind, self.rng.choice(self.validators)) for kind in kinds[:count]]

    async def run(self, count: int) -> Figures:
        for kind, target in self.plan(count):
            started = time.monotonic()
            await getattr(self, "_" + kind)(target)
            took = await recovered(self.net, self.validators, self.figures.recovery_bound_s)
            self.figures.perturbations += 1
            self.figures.by_kind[kind] += 1
            self.figures.recoveries_s.append(took)
            self.log.append(f"{kind} {target}: {time.monotonic() - started - took:.1f} s, healed in {took:.1f} s")
        return self.figures

    # ---------------------------------------------------------------- perturbations
    async def _pause(self, target: str) -> None:
        pause(self.net, target)
        try:
            await asyncio.sleep(self.rng.uniform(*self.pause_s))
        finally:
            resume(self.net, target)

    async def _kill(self, target: str) -> None:
        await asyncio.to_thread(self.net.kill, target, signal.SIGKILL)
        await asyncio.sleep(self.rng.uniform(0.2, 2.0))
        await asyncio.to_thread(self.net.start, target)

    async def _restart(self, target: str) -> None:
        await asyncio.to_thread(self.net.kill, target, signal.SIGTERM)
        await asyncio.to_thread(self.net.start, target)

    async def _isolate(self, target: str) -> None:
        self.links.isolate(target)
        try:
            await asyncio.sleep(self.rng.uniform(*self.isolate_s))
        finally:
            self.links.heal(target)

    async def _damage(self, target: str) -> None:
        scratch = Path(tempfile.mkdtemp(prefix="custos-nemesis-"))
        try:
            await asyncio.to_thread(self.net.kill, target, signal.SIGKILL)
            for part in ("chain", "consensus"):
                shutil.copytree(self.net.dir / target / part, scratch / part, ignore=shutil.ignore_patterns("LOCK"))
            await asyncio.to_thread(self.net.start, target)  # the real one comes back on its intact store
            how = self.rng.choice(DAMAGES)
            await asyncio.to_thread(self._check_copy_refused, target, scratch, how)
            self.figures.refused_copies += 1
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _check_copy_refused(self, target: str, copy: Path, how: str) -> None:
        db = plyvel.DB(str(copy / "chain"))
        db.compact_range()  # the records go from LevelDB's log into the table files damaged next
        db.close()
        if how == "truncated-tables":
            for table in (copy / "chain").glob("*.ldb"):
                with open(table, "r+b") as f:
                    f.truncate(self.rng.randrange(table.stat().st_size // 2 + 1))
        elif how == "no-current-file":
            (copy / "chain" / "CURRENT").unlink()
        else:
            (copy / "consensus" / "privval.json").unlink()
        config = copy / "node.toml"
        config.write_text("\n".join([
            "[node]", 'name = "damaged-copy"', f'data_dir = "{copy}"', f'genesis = "{self.net.dir / "genesis.toml"}"',
            f'key_file = "{self.net.dir / target / "node.key"}"', f'passphrase_file = "{self.net.dir / "passphrase"}"',
            "[api]", 'listen = "127.0.0.1:0"', "[p2p]", 'listen = "127.0.0.1:0"', ""]))
        node = subprocess.run([sys.executable, "-m", "node.cli", "node", "start", "--config", str(config)],
                              capture_output=True, text=True, timeout=60, cwd=ROOT)
        if node.returncode != 2 or "Traceback" in node.stderr:
            raise AssertionError(f"a node on a copy with {how} did not refuse cleanly ({node.returncode}):\n"
                                 f"{node.stderr[-2000:]}")
        if how == "no-signer-state":
            return  # the chain itself is whole: an audit rightly passes it
        audit = subprocess.run([sys.executable, "-m", "node.cli", "audit", "verify", "--data-dir", str(copy),
                                "--json", "--no-progress"], capture_output=True, text=True, timeout=120, cwd=ROOT)
        if audit.returncode == 0 or "Traceback" in audit.stderr:
            raise AssertionError(f"the audit of a copy with {how} passed or failed badly ({audit.returncode}):\n"
                                 f"{audit.stdout[-1000:]}{audit.stderr[-2000:]}")


def audit_valid(net: Net, name: str) -> dict:
    """Audit a stopped node's data directory; the report (raises unless VALID)."""
    audit = subprocess.run([sys.executable, "-m", "node.cli", "audit", "verify", "--data-dir", str(net.dir / name),
                            "--genesis", str(net.dir / "genesis.toml"), "--json", "--no-progress"],
                           capture_output=True, text=True, timeout=600, cwd=ROOT)
    if audit.returncode != 0:
        raise AssertionError(f"{name} does not audit VALID:\n{audit.stdout[-2000:]}{audit.stderr[-2000:]}")
    return json.loads(audit.stdout)
