"""``custos devnet up|demo``: a local multi-validator network and the demo story against it."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from node import devnet


def register(sub) -> None:
    dn = sub.add_parser("devnet", help="run a local network of validators on 127.0.0.1")
    dsub = dn.add_subparsers(dest="devnet_command", metavar="ACTION")
    dsub.required = True
    up = dsub.add_parser("up", help="create (first time) and run a local network until Ctrl-C")
    up.add_argument("--validators", type=int, default=4, help="number of validator processes (default 4)")
    up.add_argument("--dir", type=Path, default=Path("devnet"), help="network directory (default ./devnet)")
    up.add_argument("--heartbeat-ms", type=int, default=5_000, help="an idle chain adds a block this often")
    up.set_defaults(func=cmd_up)
    demo = dsub.add_parser("demo", help="play the whole story against a running devnet")
    demo.add_argument("--dir", type=Path, default=Path("devnet"), help="network directory (default ./devnet)")
    demo.set_defaults(func=cmd_demo)


def cmd_up(args: argparse.Namespace) -> int:
    if not 1 <= args.validators <= len(devnet.STAKES):
        print(f"custos: --validators must lie in 1..{len(devnet.STAKES)}", file=sys.stderr)
        return 2
    directory: Path = args.dir
    if (directory / devnet.DESCRIPTION).exists():
        nodes = devnet.load(directory)
        print(f"restarting the devnet in {directory} ({len(nodes)} validators)", flush=True)
    else:
        nodes = devnet.create(directory, args.validators, heartbeat_ms=args.heartbeat_ms)
        print(f"created a devnet of {len(nodes)} validators in {directory}", flush=True)
    procs = devnet.launch(directory, nodes)
    stopping = False

    def _stop(signum, frame):  # noqa: ARG001 - signal handler signature
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        devnet.wait_ready(nodes, timeout_s=60)
        for node in nodes:
            print(f"{node.name}  api {node.url}  p2p {node.p2p}  stake {node.stake}  data {directory / node.name}",
                  flush=True)
        print("devnet running; Ctrl-C stops it", flush=True)
        while not stopping:
            for name, p in procs.items():
                if p.poll() is not None:
                    print(f"custos: node {name} exited with code {p.returncode}; see {directory / name / 'node.log'}",
                          file=sys.stderr, flush=True)
                    stopping = True
            time.sleep(0.2)
    except TimeoutError as exc:
        print(f"custos: {exc}", file=sys.stderr)
        devnet.stop(procs)
        return 3
    print("stopping the devnet ...", flush=True)
    devnet.stop(procs)
    print("devnet stopped", flush=True)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from node.demo import run_demo

    return run_demo(args.dir)
