"""Helpers shared by the subcommands: exit codes, passphrases, output."""

from __future__ import annotations

import getpass
import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

from ledger.crypto.keys import SigningKey
from ledger.errors import CustosError, KeyFileError
from node.keyfile import load_key_file, read_passphrase_file

EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3

#: subcommand modules, each with ``register(subparsers)``; optional ones may be absent
_COMMANDS = ("keys", "node_cmd", "ceremony_cmd", "devnet", "council", "enrol", "terminal", "guardian", "audit",
             "oversight")


class Unreachable(CustosError):
    code = "unreachable"


class InvalidChain(CustosError):
    code = "invalid-chain"


def command_modules() -> list[ModuleType]:
    modules = []
    for name in _COMMANDS:
        try:
            modules.append(importlib.import_module(f"node.cli.{name}"))
        except ModuleNotFoundError as exc:
            if exc.name != f"node.cli.{name}":
                raise
    return modules


def add_passphrase_arg(parser) -> None:
    parser.add_argument("--passphrase-file", type=Path,
                        help="file holding the key's passphrase (default: $CUSTOS_PASSPHRASE, else a prompt)")


def read_passphrase(args, *, confirm: bool = False) -> bytes:
    path = getattr(args, "passphrase_file", None)
    if path is not None:
        try:
            return read_passphrase_file(path)
        except OSError as exc:
            raise KeyFileError(f"cannot read passphrase file {path}: {exc.strerror}") from None
    env = os.environ.get("CUSTOS_PASSPHRASE")
    if env is not None:
        return os.fsencode(env)  # its very bytes, as a passphrase file gives them (UTF-8 or not)
    if not sys.stdin.isatty():
        raise KeyFileError("no passphrase: use --passphrase-file or set CUSTOS_PASSPHRASE")
    first = getpass.getpass("passphrase: ").encode()
    if confirm and getpass.getpass("again: ").encode() != first:
        raise KeyFileError("the passphrases differ")
    return first


def load_key(path: str | Path, args) -> SigningKey:
    return load_key_file(path, read_passphrase(args))
