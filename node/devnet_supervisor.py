"""Keeps a devnet's node processes running: a node that dies is reported and restarted with
backoff, while the others go on.

The supervisor is the ``custos devnet up`` process. It shares what it knows through files in
the devnet directory, so that ``custos devnet status|kill|restart`` (other processes) need no
channel to it:

    DIR/devnet.lock          held (flock) while a supervisor runs: a second one is refused
    DIR/devnet.state.json    the supervisor's pid and, per node, pid, state, restarts, last exit
    DIR/NODE/hold            present: the node stays down until ``devnet restart NODE``
    DIR/NODE/restart         present: the supervisor stops the node (if running) and starts it now

A node's states: ``starting`` (process up, API not answering yet), ``running``, ``backoff``
(died; restarts at ``restart_at``), ``held`` (stopped on request), ``down`` (died under
``--no-restart``). Backoff doubles from 1 s to 30 s and starts over once a node has run for
:data:`STABLE_S`.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from ledger.storage.files import write_atomically
from node import devnet
from node.client.tls import urlopen
from node.devnet import NodeInfo

LOCK = "devnet.lock"
STATE = "devnet.state.json"
HOLD = "hold"
RESTART = "restart"
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
#: a node that ran this long without dying starts its next backoff from the first step again
STABLE_S = 30.0
POLL_S = 0.2


class DevnetBusy(Exception):
    """Another supervisor runs in this directory."""


@dataclass
class NodeState:
    state: str = "starting"
    pid: int | None = None
    restarts: int = 0
    last_exit: int | None = None
    since: float = 0.0  # wall-clock time of the last state change (for people reading the file)
    restart_at: float | None = None  # wall clock, in state backoff


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


def acquire_lock(directory: Path):
    """The directory's supervisor lock (an open file; closing it releases the lock)."""
    f = open(directory / LOCK, "a+")  # noqa: SIM115  (held open: the lock lives as long as the file)
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise DevnetBusy(f"a devnet supervisor already runs in {directory}") from None
    return f


def supervisor_running(directory: Path) -> bool:
    """Whether some process holds the directory's supervisor lock."""
    path = directory / LOCK
    if not path.exists():
        return False
    with open(path, "a+") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        return False


def read_state(directory: Path) -> dict:
    try:
        return json.loads((directory / STATE).read_text())
    except (OSError, ValueError):
        return {}


def node_alive(directory: Path, name: str, pid: int | None) -> bool:
    """Whether ``pid`` is still this devnet node's process (not a recycled pid)."""
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return str(directory.resolve() / name / "node.toml").encode() in cmdline


class Supervisor:
    """Runs every node of a devnet; :meth:`poll` is one step of its loop."""

    def __init__(self, directory: Path, nodes: list[NodeInfo], *, restart: bool = True,
                 say: Callable[[str], None] = print, warn: Callable[[str], None] = print,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.dir = directory.resolve()
        self.nodes = {n.name: n for n in nodes}
        self.restart = restart
        self.say, self.warn = say, warn
        self.clock = clock
        self.procs: dict[str, subprocess.Popen] = {}
        self.states = {n.name: NodeState() for n in nodes}
        self._started_at: dict[str, float] = {}
        self._backoff = {n.name: FIRST_BACKOFF_S for n in nodes}
        self._due: dict[str, float] = {}
        self._stopping: set[str] = set()  # nodes this supervisor is stopping on purpose

    # ---------------------------------------------------------------- processes
    def start_all(self) -> None:
        for name in self.nodes:
            (self.dir / name / HOLD).unlink(missing_ok=True)
            (self.dir / name / RESTART).unlink(missing_ok=True)
            self._start(name)
        self._write()

    def _start(self, name: str) -> None:
        self.procs.update(devnet.launch(self.dir, [self.nodes[name]]))
        self._started_at[name] = self.clock()
        self._set(name, "starting", pid=self.procs[name].pid)

    def _set(self, name: str, state: str, **fields) -> None:
        s = self.states[name]
        s.state = state
        s.since = time.time()
        for key, value in fields.items():
            setattr(s, key, value)

    def _ready(self, name: str) -> bool:
        try:
            with urlopen(self.nodes[name].url + "/healthz", timeout=0.3) as r:
                return r.status == 200
        except OSError:
            return False

    def poll(self) -> None:
        """Notice exits, start nodes whose backoff is over, follow hold and restart requests."""
        changed = False
        now = self.clock()
        for name, node in self.nodes.items():
            node_dir = self.dir / name
            state = self.states[name]
            proc = self.procs.get(name)
            if (node_dir / RESTART).exists():
                changed = True
                (node_dir / HOLD).unlink(missing_ok=True)
                if proc is not None and proc.poll() is None:
                    self._stopping.add(name)
                    self._terminate(proc)
                (node_dir / RESTART).unlink(missing_ok=True)
                self._due[name] = now  # at once, no backoff: a person asked for it
                self._set(name, "backoff", restart_at=time.time())
                proc = None
                self.procs.pop(name, None)
            if proc is not None and proc.poll() is not None:
                changed = True
                code = proc.returncode
                del self.procs[name]
                state.last_exit = code
                if name in self._stopping:
                    self._stopping.discard(name)
                elif (node_dir / HOLD).exists():
                    self.say(f"node {name} {describe_exit(code)}; held down until `custos devnet restart {name}`")
                    self._set(name, "held", pid=None)
                elif not self.restart:
                    self.warn(f"custos: node {name} {describe_exit(code)}; left down (--no-restart), the others "
                              f"keep running; see {node_dir / 'node.log'}")
                    self._set(name, "down", pid=None)
                else:
                    if now - self._started_at.get(name, now) >= STABLE_S:
                        self._backoff[name] = FIRST_BACKOFF_S
                    delay = self._backoff[name]
                    self._backoff[name] = min(MAX_BACKOFF_S, delay * 2)
                    self._due[name] = now + delay
                    self.warn(f"custos: node {name} {describe_exit(code)}; restarting in {delay:.0f} s "
                              f"(restart {state.restarts + 1}); see {node_dir / 'node.log'}")
                    self._set(name, "backoff", pid=None, restart_at=time.time() + delay)
            if name not in self.procs and state.state == "backoff" and now >= self._due.get(name, now):
                if (node_dir / HOLD).exists():
                    self._set(name, "held", pid=None, restart_at=None)
                else:
                    state.restarts += 1
                    self._start(name)
                    state.restart_at = None
                changed = True
            elif state.state == "starting" and name in self.procs and self._ready(name):
                self._set(name, "running")
                if state.restarts:
                    self.say(f"node {name} is back (restart {state.restarts}), api {node.url}")
                changed = True
        if changed:
            self._write()

    def all_down(self) -> bool:
        return all(s.state in ("down", "held") for s in self.states.values()) and not self.procs

    def stop(self) -> None:
        devnet.stop(self.procs)
        self.procs.clear()
        for name in self.nodes:
            self._set(name, "stopped", pid=None, restart_at=None)
        self._write(running=False)

    @staticmethod
    def _terminate(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _write(self, running: bool = True) -> None:
        doc = {"supervisor": os.getpid() if running else None, "restart": self.restart,
               "nodes": {name: asdict(s) for name, s in self.states.items()}}
        write_atomically(self.dir / STATE, (json.dumps(doc, indent=2) + "\n").encode(), mode=0o644)
