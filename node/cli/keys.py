"""``custos keys new|show``: create and inspect encrypted key files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ledger.crypto.keys import SigningKey
from node.cli.common import add_passphrase_arg, read_passphrase
from node.keyfile import INTERACTIVE, MINIMAL, public_key_of, read_key_doc, write_key_file


def register(sub) -> None:
    keys = sub.add_parser("keys", help="create and inspect key files")
    ksub = keys.add_subparsers(dest="keys_command", metavar="ACTION")
    ksub.required = True
    new = ksub.add_parser("new", help="create a new Ed25519 key, encrypted with a passphrase")
    new.add_argument("path", type=Path, help="where to write the key file (never overwritten)")
    new.add_argument("--label", default="", help="a note stored beside the key (not secret)")
    new.add_argument("--fast-kdf", action="store_true",
                     help="cheapest Argon2id parameters: for throwaway test keys only")
    add_passphrase_arg(new)
    new.set_defaults(func=cmd_new)
    show = ksub.add_parser("show", help="print a key file's public key (no passphrase needed)")
    show.add_argument("path", type=Path)
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_show)


def cmd_new(args: argparse.Namespace) -> int:
    passphrase = read_passphrase(args, confirm=True)
    key = SigningKey.generate()
    write_key_file(args.path, key, passphrase, label=args.label, cost=MINIMAL if args.fast_kdf else INTERACTIVE)
    print(key.public.hex())
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    public = public_key_of(args.path)
    doc = read_key_doc(args.path)
    if args.json:
        print(json.dumps({"public": public.hex(), "label": doc.get("label", ""), "file": str(args.path)}))
    else:
        print(public.hex() + (f"  {doc['label']}" if doc.get("label") else ""))
    return 0
