"""The ``custos`` command line.

Exit codes (fixed for scripts that call it): 0 ok, 1 the chain (or a proof) is invalid, 2 usage or input error,
3 cannot reach a node. A user's mistake (a bad option, path, date or key) is one line on stderr and exit 2,
never a traceback; a traceback means a bug in Custos (exit 4).
"""

from __future__ import annotations

import argparse
import logging
import sys

from ledger.errors import CustosError
from node.cli import common, keys, node_cmd
from node.client.light import Unproven
from node.version import version

EXIT_BUG = 4


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error said in one line (``custos guardian watch: --for: ...``)."""

    def error(self, message: str):
        self.exit(common.EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="custos", description="Custos: a permissioned ledger that protects children at borders.")
    parser.add_argument("--version", action="version", version=f"custos {version()}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("--log-format", choices=("text", "json"), default=None,
                        help="log lines as text or as one JSON object each (default text; a node's config may say)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in common.command_modules():
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    for arg in sys.argv[1:] if argv is None else argv:
        if not _is_utf8(arg):  # bytes the locale could not decode, kept as lone surrogates
            print(f"custos: argument {arg!a} is not valid UTF-8", file=sys.stderr)
            return common.EXIT_USAGE
    args = parser.parse_args(argv)
    from node.ops.logs import configure

    configure(logging.WARNING - 10 * args.verbose, args.log_format or "text")
    try:
        return int(args.func(args) or 0)
    except common.Unreachable as exc:
        print(f"custos: cannot reach node: {exc}", file=sys.stderr)
        return common.EXIT_UNREACHABLE
    except (common.InvalidChain, Unproven) as exc:
        print(f"custos: {exc}", file=sys.stderr)
        return common.EXIT_INVALID
    except CustosError as exc:
        print(f"custos: {exc.diagnostics()}", file=sys.stderr)
        return common.EXIT_USAGE
    except BrokenPipeError:  # the reader of our output went away (`custos ... | head`)
        sys.stderr.close()
        return common.EXIT_OK
    except OSError as exc:  # a path the user named: missing, unreadable, unwritable
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"custos: {where}{exc.strerror or exc}", file=sys.stderr)
        return common.EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except Exception:  # a bug: show everything, and say it is not the user's fault
        import traceback

        traceback.print_exc()
        print("custos: internal error (a bug in Custos, not in what you typed); please report the traceback above",
              file=sys.stderr)
        return EXIT_BUG


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


__all__ = ["keys", "main", "node_cmd"]
