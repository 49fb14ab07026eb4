"""``custos devnet up|status|kill|restart|demo``: a local multi-validator network.

``up`` creates the network (first time) and supervises it until Ctrl-C: a node that dies is
reported and restarted with backoff (``--no-restart`` leaves it down) while the others keep
running. ``status``, ``kill NODE`` and ``restart NODE`` act on the network another ``up``
supervises (see :mod:`node.devnet_supervisor` for how they share state).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

from node import devnet
from node import devnet_supervisor as sv
from node.cli.common import EXIT_OK, EXIT_UNREACHABLE
from node.cli.options import InputError, duration
from node.client.tls import urlopen

RESTART_WAIT_S = 60.0


def register(sub) -> None:
    dn = sub.add_parser("devnet", help="run a local network of validators on 127.0.0.1")
    dsub = dn.add_subparsers(dest="devnet_command", metavar="ACTION")
    dsub.required = True
    up = dsub.add_parser("up", help="create (first time) and run a local network until Ctrl-C")
    up.add_argument("--validators", type=int, default=4, help="number of validator processes (default 4)")
    _dir(up)
    up.add_argument("--heartbeat", type=duration, default=None, metavar="DURATION",
                    help="an idle chain adds a block this often (e.g. 1s, 5s; default 5s)")
    up.add_argument("--reuse", action="store_true",
                    help="run the network already in --dir (without it a used directory is refused)")
    up.add_argument("--no-restart", action="store_true",
                    help="leave a node that dies down instead of restarting it with backoff")
    up.add_argument("--plain-http", action="store_true",
                    help="serve the nodes' APIs in plain HTTP, without a local CA (for a browser on this machine "
                         "that cannot be told to trust one; see docs/TRANSPORT.md)")
    up.set_defaults(func=cmd_up)

    status = dsub.add_parser("status", help="each node's state, pid, restarts and height")
    _dir(status)
    status.add_argument("--json", action="store_true", help="one JSON document")
    status.set_defaults(func=cmd_status)

    kill = dsub.add_parser("kill", help="kill one node (the supervisor restarts it unless --hold)")
    kill.add_argument("node", metavar="NODE", help="the node's name, e.g. val-3")
    _dir(kill)
    kill.add_argument("--signal", default="KILL", choices=("KILL", "TERM", "INT"),
                      help="the signal to send (default KILL: a crash)")
    kill.add_argument("--hold", action="store_true", help="keep it down until `custos devnet restart NODE`")
    kill.set_defaults(func=cmd_kill)

    restart = dsub.add_parser("restart", help="stop a node (if running) and start it again now")
    restart.add_argument("node", metavar="NODE", help="the node's name, e.g. val-3")
    _dir(restart)
    restart.add_argument("--no-wait", action="store_true", help="do not wait until it answers again")
    restart.set_defaults(func=cmd_restart)

    demo = dsub.add_parser("demo", help="play the whole story against a running devnet")
    _dir(demo)
    demo.set_defaults(func=cmd_demo)


def _dir(p) -> None:
    p.add_argument("--dir", type=Path, default=Path("devnet"), help="network directory (default ./devnet)")


def _existing(directory: Path) -> list[devnet.NodeInfo]:
    if not (directory / devnet.DESCRIPTION).exists():
        raise InputError(f"no devnet in {directory} (create one with `custos devnet up --dir {directory}`)")
    try:
        return devnet.load(directory)
    except devnet.BadDevnet:
        raise
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise InputError(f"{directory / devnet.DESCRIPTION} is unreadable: {exc}") from None


def _node(directory: Path, name: str) -> devnet.NodeInfo:
    nodes = {n.name: n for n in _existing(directory)}
    if name not in nodes:
        raise InputError(f"no node {name!r} in {directory}; its nodes are {', '.join(nodes)}")
    return nodes[name]


# --------------------------------------------------------------------------- up


def cmd_up(args: argparse.Namespace) -> int:
    if not 1 <= args.validators <= len(devnet.STAKES):
        raise InputError(f"--validators must lie in 1..{len(devnet.STAKES)}")
    heartbeat_ms = args.heartbeat if args.heartbeat is not None else 5_000
    directory: Path = args.dir
    exists = (directory / devnet.DESCRIPTION).exists()
    if exists and not args.reuse:
        raise InputError(f"{directory} holds a devnet already: run it again with --reuse, or choose another --dir")
    if not exists and directory.exists() and any(directory.iterdir()):
        raise InputError(f"{directory} is not empty and holds no devnet: choose an empty or new --dir")
    directory.mkdir(parents=True, exist_ok=True)
    try:
        lock = sv.acquire_lock(directory)
    except sv.DevnetBusy as exc:
        raise InputError(f"{exc}: stop it first (Ctrl-C), or see `custos devnet status --dir {directory}`") from None
    try:
        if exists:
            nodes = _existing(directory)
            print(f"restarting the devnet in {directory} ({len(nodes)} nodes)", flush=True)
        else:
            nodes = devnet.create(directory, args.validators, heartbeat_ms=heartbeat_ms, tls=not args.plain_http)
            print(f"created a devnet of {len(nodes)} validators in {directory}", flush=True)
        ca = devnet.ca_file(directory)
        if ca is not None:
            print(f"the nodes' API certificates are issued by the devnet's CA {ca}; clients trust it with "
                  f"--devnet {directory} or --ca {ca}", flush=True)
        return _supervise(directory, nodes, restart=not args.no_restart)
    finally:
        lock.close()


def _supervise(directory: Path, nodes: list[devnet.NodeInfo], *, restart: bool) -> int:
    def say(line: str) -> None:
        print(line, flush=True)

    def warn(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    supervisor = sv.Supervisor(directory, nodes, restart=restart, say=say, warn=warn)
    stopping = False

    def _stop(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    supervisor.start_all()
    code = EXIT_OK
    try:
        devnet.wait_ready(nodes, timeout_s=60)
        for node in nodes:
            metrics = f"  metrics {node.metrics}" if node.metrics else ""
            say(f"{node.name}  api {node.url}  p2p {node.p2p}{metrics}  stake {node.stake}  "
                f"data {directory / node.name}")
        say(f"devnet running; Ctrl-C stops it ({'dead nodes are restarted' if restart else '--no-restart'}; "
            f"`custos devnet status --dir {directory}`)")
        while not stopping:
            supervisor.poll()
            if supervisor.all_down():
                warn("custos: every node is down; stopping the devnet")
                code = 1
                break
            time.sleep(sv.POLL_S)
    except TimeoutError as exc:
        warn(f"custos: {exc}")
        code = EXIT_UNREACHABLE
    say("stopping the devnet ...")
    supervisor.stop()
    say("devnet stopped")
    return code


# --------------------------------------------------------------------------- status, kill, restart


def _height(node: devnet.NodeInfo) -> int | None:
    try:
        with urlopen(node.url + "/v1/status", timeout=1) as r:
            return int(json.loads(r.read())["height"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def cmd_status(args: argparse.Namespace) -> int:
    directory: Path = args.dir
    nodes = _existing(directory)
    running = sv.supervisor_running(directory)
    state = sv.read_state(directory) if running else {}
    rows = []
    for node in nodes:
        s = state.get("nodes", {}).get(node.name, {})
        height = _height(node)
        rows.append({"name": node.name, "state": s.get("state", "answering" if height is not None else "stopped"),
                     "pid": s.get("pid"), "restarts": s.get("restarts", 0), "last_exit": s.get("last_exit"),
                     "height": height, "api": node.url, "metrics": node.metrics or None, "stake": node.stake})
    if args.json:
        print(json.dumps({"dir": str(directory), "supervisor": state.get("supervisor") if running else None,
                          "nodes": rows}, indent=2))
    else:
        print(f"devnet {directory}: " + (f"supervised by pid {state.get('supervisor')}" if running
                                         else "no supervisor runs (`custos devnet up --reuse` starts one)"))
        for r in rows:
            exit_note = f"  last {sv.describe_exit(r['last_exit'])}" if r["last_exit"] is not None else ""
            print(f"  {r['name']:<7} {r['state']:<9} pid {r['pid'] or '-':<8} height "
                  f"{r['height'] if r['height'] is not None else '-':<7} restarts {r['restarts']}  "
                  f"{r['api']}{exit_note}")
    if all(r["height"] is None for r in rows):
        return EXIT_UNREACHABLE
    return EXIT_OK


def _supervised(directory: Path) -> dict:
    if not sv.supervisor_running(directory):
        raise InputError(f"no devnet supervisor runs in {directory}: start one with "
                         f"`custos devnet up --reuse --dir {directory}`")
    return sv.read_state(directory)


def cmd_kill(args: argparse.Namespace) -> int:
    directory: Path = args.dir
    _node(directory, args.node)
    state = _supervised(directory)
    pid = state.get("nodes", {}).get(args.node, {}).get("pid")
    if not sv.node_alive(directory, args.node, pid):
        raise InputError(f"node {args.node} is not running (see `custos devnet status --dir {directory}`)")
    if args.hold:
        (directory / args.node / sv.HOLD).touch()
    os.kill(pid, signal.Signals["SIG" + args.signal])
    then = "it stays down until `custos devnet restart " + args.node + "`" if args.hold else \
        "the supervisor restarts it" if state.get("restart", True) else "it stays down (--no-restart)"
    print(f"sent SIG{args.signal} to {args.node} (pid {pid}); {then}")
    return EXIT_OK


def cmd_restart(args: argparse.Namespace) -> int:
    directory: Path = args.dir
    node = _node(directory, args.node)
    state = _supervised(directory)
    old_pid = state.get("nodes", {}).get(args.node, {}).get("pid")
    (directory / args.node / sv.RESTART).touch()
    print(f"asked the supervisor to restart {args.node}", flush=True)
    if args.no_wait:
        return EXIT_OK
    deadline = time.monotonic() + RESTART_WAIT_S
    while time.monotonic() < deadline:
        s = sv.read_state(directory).get("nodes", {}).get(args.node, {})
        if s.get("state") == "running" and s.get("pid") not in (None, old_pid):
            print(f"{args.node} running again (pid {s['pid']}), height {_height(node)}")
            return EXIT_OK
        time.sleep(0.2)
    print(f"custos: {args.node} did not answer within {RESTART_WAIT_S:.0f} s; see {directory / args.node / 'node.log'}",
          file=sys.stderr)
    return EXIT_UNREACHABLE


def cmd_demo(args: argparse.Namespace) -> int:
    from node.demo import run_demo

    return run_demo(args.dir)
