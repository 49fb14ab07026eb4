"""The ``custos`` command line.

Exit codes (fixed for scripts that call it): 0 ok, 1 the chain (or a proof) is invalid, 2 usage or input error,
3 cannot reach a node.
"""

from __future__ import annotations

import argparse
import logging
import sys

from ledger.errors import CustosError
from node.cli import common, keys, node_cmd


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="custos", description="Custos: a permissioned ledger that protects children at borders.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in common.command_modules():
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * args.verbose
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return int(args.func(args) or 0)
    except common.Unreachable as exc:
        print(f"custos: cannot reach node: {exc}", file=sys.stderr)
        return common.EXIT_UNREACHABLE
    except common.InvalidChain as exc:
        print(f"custos: {exc}", file=sys.stderr)
        return common.EXIT_INVALID
    except CustosError as exc:
        print(f"custos: {exc.diagnostics()}", file=sys.stderr)
        return common.EXIT_USAGE
    except KeyboardInterrupt:
        return 130


__all__ = ["main", "keys", "node_cmd"]
