"""``custos node start --config FILE``: run a validator or observer node (``node init``: see
:mod:`node.cli.ceremony_cmd`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from pathlib import Path

from node.cli.common import Unreachable
from node.config import load_config
from node.ops.logs import configure


def register(sub) -> None:
    node = sub.add_parser("node", help="run a node")
    nsub = node.add_subparsers(dest="node_command", metavar="ACTION")
    nsub.required = True
    start = nsub.add_parser("start", help="start a node from its config file; stops on Ctrl-C / SIGTERM")
    start.add_argument("--config", type=Path, required=True, help="node config (see configs/node.example.toml)")
    start.add_argument("--init", action="store_true",
                       help="a new validator's first start: create its signer state if there is none (never for "
                            "one that signed before: it could sign twice; `genesis finalize` does it for you)")
    start.add_argument("--state-sync", action="store_true",
                       help="a node with no chain yet joins from a recent snapshot its peers offer, checked against "
                            "a header certified from genesis, instead of replaying every block (auditors replay)")
    start.set_defaults(func=cmd_start)
    from node.cli.ceremony_cmd import register_node_init

    register_node_init(nsub)


def cmd_start(args: argparse.Namespace) -> int:
    from node.runner import run

    config = load_config(args.config)
    os.umask(0o077)  # every file the node makes (stores, logs, keys) is its user's alone
    level = logging.WARNING - 10 * args.verbose if args.verbose else getattr(logging, config.log.level.upper())
    configure(level, args.log_format or config.log.format)
    from node.statesync.join import NoOffers

    try:
        asyncio.run(run(config, init=args.init, state_sync=args.state_sync))
    except NoOffers as exc:
        raise Unreachable(str(exc)) from None
    return 0
