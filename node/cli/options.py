"""Arguments and helpers shared by the client commands (council, enrol, terminal, guardian).

Nodes are named with ``--node URL`` (repeatable: the client fails over between them), or
``--devnet DIR`` (the nodes of a local devnet), or ``$CUSTOS_NODES`` (comma-separated).
An ``https://`` node's certificate is verified against the system's CAs plus those named with
``--ca FILE`` (repeatable), in ``$CUSTOS_CA``, or made by the devnet named with ``--devnet``
(node.client.tls).
Times are ISO 8601 (``2025-06-01``, ``2025-06-01T08:30Z``), ``now``, or relative (``+2h``,
``-30m``, ``+7d``); durations always carry their unit (``250ms``, ``90s``, ``15m``, ``24h``,
``7d``): a bare number is refused.

A transaction that needs several signatures (council k-of-n, a consent by two guardians) can
travel as a *partially signed transaction file* between the people who sign it::

    {"format": "custos-partial-tx/1", "chain_id": "...", "kind": "...", "id": "<hex>",
     "signers": ["<hex>", ...], "tx": "<hex of the envelope>"}
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import re
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from ledger.crypto.keys import SigningKey
from ledger.errors import CustosError
from ledger.tx.envelope import Transaction, add_signatures, decode_tx
from node.cli.common import Unreachable, read_passphrase
from node.client.http import NodeUnreachable
from node.client.tls import trust
from node.keyfile import load_key_file, public_key_of, read_passphrase_file

DEFAULT_NODE = "http://127.0.0.1:8700"
PARTIAL_FORMAT = "custos-partial-tx/1"


class InputError(CustosError):
    code = "input"


# --------------------------------------------------------------------------- nodes and keys


def add_node_args(parser) -> None:
    parser.add_argument("--node", action="append", metavar="URL",
                        help="a node's API base URL; repeat to fail over (default $CUSTOS_NODES, else "
                             f"{DEFAULT_NODE})")
    parser.add_argument("--devnet", type=Path, metavar="DIR",
                        help="use the nodes of the devnet in DIR (and trust the CA it made)")
    parser.add_argument("--ca", type=Path, action="append", metavar="FILE",
                        help="trust this CA certificate (PEM) for the nodes' TLS; repeatable (also $CUSTOS_CA)")


def node_urls(args) -> list[str]:
    """The nodes named by ``--node`` (repeatable), else ``--devnet DIR``, else ``$CUSTOS_NODES``,
    else the default node."""
    return chosen_node_urls(args) or [DEFAULT_NODE]


def chosen_node_urls(args) -> list[str] | None:
    """The nodes the user named on this command line or in ``$CUSTOS_NODES``; None if none.
    Trusts the CAs named with ``--ca`` and the devnet's."""
    for ca in getattr(args, "ca", None) or ():
        if not Path(ca).is_file():
            raise InputError(f"--ca {ca}: no such file")
        trust(ca)
    if getattr(args, "node", None):
        return [node_url(u, "--node") for u in args.node]
    devnet_dir = getattr(args, "devnet", None)
    if devnet_dir is not None:
        from node import devnet

        try:
            nodes = devnet.load(Path(devnet_dir))
        except devnet.BadDevnet:
            raise
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InputError(f"cannot read {devnet_dir}/devnet.json: {exc}") from None
        return [node_url(n.url, f"{devnet_dir}/devnet.json") for n in nodes]
    env = os.environ.get("CUSTOS_NODES")
    if env:
        return [node_url(u.strip(), "$CUSTOS_NODES") for u in env.split(",") if u.strip()]
    return None


def node_url(url: str, where: str) -> str:
    """``url`` without a trailing slash if it is a node's API base URL (``http(s)://HOST[:PORT][/PATH]``);
    else an InputError naming it and where it came from (``where``)."""
    from urllib.parse import urlsplit

    bad = f"{where}: {url!r} is not a node URL (http://HOST:PORT or https://HOST:PORT)"
    if not url.isascii():  # an IDN host is written in its ASCII (xn--) form
        raise InputError(f"{where}: {url!a} is not a node URL (write it in ASCII)")
    try:
        parts = urlsplit(url)
        port = parts.port  # a ValueError if not a number or out of range
    except ValueError:
        raise InputError(bad) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise InputError(bad)
    if port == 0:
        raise InputError(f"{where}: {url!r} names port 0")
    return url.rstrip("/")


def add_purpose_args(parser, default: str) -> None:
    """``--purpose CODE`` and ``--ref REFERENCE``: why the reads of this command are made."""
    from node.access.purpose import PURPOSES

    parser.add_argument("--purpose", default=default, choices=tuple(PURPOSES), metavar="CODE",
                        help=f"why you read (logged with every read; default {default}): {', '.join(PURPOSES)}")
    parser.add_argument("--ref", metavar="REFERENCE",
                        help="your case or order reference; only its salted hash leaves this machine")


def purpose_arg(args, key: SigningKey):
    """The :class:`~node.access.purpose.Purpose` the command's reads state."""
    from node.access.purpose import BadPurpose, Purpose

    try:
        return Purpose.stated(key, args.purpose, args.ref)
    except BadPurpose as exc:
        raise InputError(str(exc)) from None


def passphrase_for(path: Path, args) -> bytes:
    """The passphrase of the key file at ``path``: ``--passphrase-file`` if given; for a key file
    of the devnet named by ``--devnet`` (its council keys), the devnet's own passphrase; else
    ``$CUSTOS_PASSPHRASE`` or a prompt. ``--devnet`` never replaces the passphrase of a key of
    the user's own."""
    devnet_dir = getattr(args, "devnet", None)
    if getattr(args, "passphrase_file", None) is None and devnet_dir is not None:
        secret = Path(devnet_dir) / "passphrase"
        if secret.exists() and Path(path).resolve().is_relative_to(Path(devnet_dir).resolve()):
            return read_passphrase_file(secret)
    return read_passphrase(args)


def load_key(path: Path, args) -> SigningKey:
    return load_key_file(path, passphrase_for(path, args))


def load_keys(paths: list[Path], args) -> list[SigningKey]:
    secrets: dict[bool, bytes] = {}  # asked once for the devnet's keys and once for the user's
    keys = []
    for p in paths:
        own = getattr(args, "devnet", None) is None or not Path(p).resolve().is_relative_to(
            Path(args.devnet).resolve())
        if own not in secrets:
            secrets[own] = passphrase_for(p, args)
        keys.append(load_key_file(p, secrets[own]))
    return keys


def public_key_arg(text: str) -> bytes:
    """A public key given as 64 hex digits or as a key file (read without its passphrase)."""
    if re.fullmatch(r"[0-9a-fA-F]{64}", text):
        return bytes.fromhex(text)
    if Path(text).exists():
        return public_key_of(text)
    raise InputError(f"{text!r} is neither a public key (64 hex digits) nor a key file")


def identity_arg(text: str) -> bytes:
    """A child's identity id: 32 hex digits, or a card file."""
    if re.fullmatch(r"[0-9a-fA-F]{32}", text):
        return bytes.fromhex(text)
    if Path(text).exists():
        from node.client.cards import read_card

        return read_card(Path(text))[0]
    raise InputError(f"{text!r} is neither an identity id (32 hex digits) nor a card file")


def identity_hex(text: str) -> bytes:
    """An argparse ``type``: a chosen identity id, 32 hex digits."""
    if not re.fullmatch(r"[0-9a-fA-F]{32}", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not an identity id (32 hex digits)")
    return bytes.fromhex(text)


def max_shift_arg(text: str) -> int:
    """An argparse ``type``: angular positions a scan is turned each way, 0..63 (an iris code has 64
    columns of angle: a turn of 64 is no turn, and the biometric code refuses more)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of positions (0..63)") from None
    if not 0 <= value <= 63:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range: a scan turns 0..63 positions each way")
    return value


def country(text: str) -> str:
    """An argparse ``type``: an ISO 3166-1 alpha-2 country code (two ASCII letters), upper-cased.
    ``str.upper`` alone would make 'ß' into 'SS', a code the user never typed."""
    if not re.fullmatch(r"[A-Za-z]{2}", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a country code (ISO 3166 alpha-2: two letters, e.g. RO)")
    return text.upper()


def hostport(text: str) -> str:
    """An argparse ``type``: an address ``HOST:PORT``, as a node's config takes it."""
    from node.config import check_hostport

    try:
        return check_hostport(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def hash_arg(text: str, what: str) -> bytes:
    if not re.fullmatch(r"[0-9a-fA-F]{64}", text):
        raise InputError(f"a {what} is 64 hex digits")
    return bytes.fromhex(text)


def companion_arg(document: str | None, pseudonym_key: bytes) -> bytes | None:
    """The chain's tag for an accompanying adult's document number (issuing country first, for
    example ``MDA AB123456``), keyed with the child's pseudonym key.

    Terminals (key from the child's card) and guardians (key from their ward file) compute the
    same tag, so a consent naming a companion matches the request that names the same one; the
    chain never holds the number or anything a dictionary of numbers could reverse.
    """
    if document is None or document == "":
        return None
    from ledger.privacy.tags import companion_tag

    return companion_tag(pseudonym_key, document)


def order_arg(reference: str) -> tuple[bytes, bytes]:
    """(salted hash, salt) of an order's reference; only the hash goes on the chain."""
    from ledger.privacy.tags import ORDER_SALT_BYTES, order_hash

    salt = os.urandom(ORDER_SALT_BYTES)
    return order_hash(salt, reference), salt


def parse_day(text: str) -> int:
    """Days since 1970-01-01 (UTC) from an ISO date such as 2031-06-15."""
    try:
        day = datetime.date.fromisoformat(text.strip())
    except ValueError:
        raise InputError(f"{text!r} is not a date (ISO 8601, like 2031-06-15)") from None
    return day.toordinal() - datetime.date(1970, 1, 1).toordinal()


def iso_day(day: int) -> str:
    return datetime.date.fromordinal(day + datetime.date(1970, 1, 1).toordinal()).isoformat()


# --------------------------------------------------------------------------- times

_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*")
#: the longest duration any option takes: 100 years (a timer, a deadline, a window of a watch)
MAX_DURATION_MS = 36_525 * 86_400_000
#: the latest time any option takes: the end of year 9999, the last the ISO 8601 forms can write
MAX_TIME_MS = 253_402_300_799_999


def parse_duration(text: str) -> int:
    """Milliseconds from a duration with its unit: ``250ms``, ``90s``, ``15m``, ``2h``, ``7d``.

    A bare number is refused: ``--deadline 60`` once meant 60 ms where 60 s was meant."""
    m = _DURATION.fullmatch(text)
    if not m:
        raise InputError(f"{text!r} is not a duration (e.g. 90s, 15m, 2h, 7d)")
    if m.group(2) is None and float(m.group(1)) != 0:  # zero needs no unit
        raise InputError(f"{text!r} has no unit: write {m.group(1)}s, {m.group(1)}m or {m.group(1)}h "
                         "(units: ms, s, m, h, d)")
    ms = float(m.group(1)) * _UNITS[m.group(2) or "ms"]  # 400 nines: inf, which round() cannot take
    if not ms <= MAX_DURATION_MS:
        raise InputError(f"{text!r} is too long a duration (at most 36525d, 100 years)")
    return round(ms)


def duration(text: str) -> int:
    """An argparse ``type``: a duration with its unit, in milliseconds."""
    try:
        return parse_duration(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def seconds(text: str) -> float:
    """An argparse ``type``: a duration with its unit, in seconds."""
    return duration(text) / 1000


def parse_time(text: str, now_ms: int | None = None) -> int:
    """Milliseconds since the epoch (UTC) from ISO 8601 (``2025-06-01``, ``2025-06-01T08:30Z``,
    ``2025-06-01T10:30+02:00``; no zone means UTC), ``now``, or ``+2h`` / ``-30m`` from now."""
    now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    t = text.strip()
    if t == "now":
        return now
    if t[:1] in "+-" and len(t) > 1:
        delta = parse_duration(t[1:])
        return _in_range(text, now + delta if t[0] == "+" else now - delta)
    try:
        when = datetime.datetime.fromisoformat(t)
    except ValueError:
        raise InputError(f"{text!r} is not a time: write an ISO 8601 date or time (2025-06-01, "
                         "2025-06-01T08:30Z), 'now', or a duration from now ('+2h', '-30m')") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    try:
        return _in_range(text, int(when.timestamp() * 1000))
    except OverflowError:  # 9999-12-31T23:59-05:00 is past the end of year 9999 in UTC
        return _in_range(text, MAX_TIME_MS + 1)


def _in_range(text: str, ms: int) -> int:
    """``ms`` if it lies between 1970 and the end of year 9999 (UTC); the chain has no time outside."""
    if not 0 <= ms <= MAX_TIME_MS:
        raise InputError(f"{text!r} is out of range: a time lies between 1970-01-01 and 9999-12-31 (UTC)")
    return ms


def iso(ms: int | None) -> str:
    if ms is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ms / 1000))


# --------------------------------------------------------------------------- partially signed transactions


def write_partial(path: Path, tx: Transaction, chain_id: str) -> None:
    doc = {"format": PARTIAL_FORMAT, "chain_id": chain_id, "kind": tx.kind, "id": tx.id.hex(),
           "signers": sorted(s.hex() for s in tx.signers), "tx": tx.raw.hex()}
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(path)


def read_partial(path: Path) -> tuple[Transaction, str]:
    try:
        doc = json.loads(Path(path).read_text())
        if doc.get("format") != PARTIAL_FORMAT:
            raise ValueError("format")
        return decode_tx(bytes.fromhex(doc["tx"])), str(doc["chain_id"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"{path} is not a partially signed transaction file ({exc})") from None


def cosign(tx: Transaction, keys: list[SigningKey], chain_id: str) -> Transaction:
    return add_signatures(tx, keys, chain_id)


# --------------------------------------------------------------------------- running and printing


def run(coro: Coroutine) -> Any:
    """Run a client coroutine; a node that cannot be reached becomes exit code 3."""
    try:
        return asyncio.run(coro)
    except NodeUnreachable as exc:
        raise Unreachable(str(exc)) from None


def emit_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def warn(line: str) -> None:
    """A warning for the person at the terminal (stderr: JSON output stays clean)."""
    sys.stderr.write(f"warning: {line}\n")
    sys.stderr.flush()


def refuse(line: str) -> None:
    """A refusal (a node's, a check's): one line on stderr; stdout keeps the command's output."""
    sys.stderr.write(f"custos: {line}\n")
    sys.stderr.flush()


def new_file(path: Path, option: str) -> Path:
    """``path`` if a file may be created there: it names a file (not ``.`` or ``/``), nothing is
    there yet (neither a file, which would be lost, nor a directory), and its directory exists.
    Checked before anything is sent, so a refusal changes nothing on the chain or on disk."""
    if path.name in ("", ".", ".."):
        raise InputError(f"{option} {path}: name a file, not a directory")
    if path.is_dir():
        raise InputError(f"{option} {path} is a directory: name a file in it")
    if path.exists() or path.is_symlink():
        raise InputError(f"{option} {path} exists: refusing to overwrite it; choose a new name")
    if not path.parent.is_dir():
        raise InputError(f"{option} {path}: {path.parent} is not a directory")
    return path


def say(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def confirm(question: str, assume_yes: bool) -> bool:
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        raise InputError("not a terminal: confirm with --yes")
    answer = input(f"{question} [y/N] ").strip().lower()
    return answer in ("y", "yes")
