"""``custos council …``: governance transactions signed by k of the council's n members.

Each action takes the members' key files (``--key``, repeated). With fewer keys than the
threshold, ``--out FILE`` writes the partially signed transaction, which the other members sign
with ``custos council cosign FILE --key … [--submit]``. With ``--devnet DIR`` and no ``--key``
the devnet's own council keys sign (development only).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ledger.errors import DecodeError
from ledger.params import PARAMS, Params
from ledger.privacy.tags import child_tag
from ledger.tx.bodies import ERASE_BASES, REVOKE_REASONS
from node.cli.common import EXIT_OK, EXIT_USAGE
from node.cli.options import (
    InputError,
    add_node_args,
    cosign,
    emit_json,
    identity_arg,
    load_keys,
    node_urls,
    order_arg,
    public_key_arg,
    read_partial,
    refuse,
    run,
    say,
    write_partial,
)
from node.client.http import NodeClient, ProblemError
from node.client.txs import TxFactory


def register(sub) -> None:
    council = sub.add_parser("council", help="governance: register authorities, posts, terminals, auditors; keys")
    csub = council.add_subparsers(dest="council_command", metavar="ACTION")
    csub.required = True

    def action(name: str, help_: str, build) -> argparse.ArgumentParser:
        p = csub.add_parser(name, help=help_)
        _common(p)
        p.set_defaults(func=cmd_action, build=build)
        return p

    p = action("register-authority", "register an enrolment authority's key",
               lambda t, ks, a: t.register_authority(ks, public_key_arg(a.public), a.label))
    _public(p)
    p = action("register-post", "register a border post",
               lambda t, ks, a: t.register_post(ks, a.post, a.label))
    p.add_argument("--post", required=True, help="the post's id (e.g. MD-LEU)")
    p.add_argument("--label", default="", help="a readable name")
    p = action("register-terminal", "register a terminal's key for a post",
               lambda t, ks, a: t.register_terminal(ks, public_key_arg(a.public), a.post, a.label))
    _public(p)
    p.add_argument("--post", required=True)
    p = action("register-auditor", "register an auditor's key",
               lambda t, ks, a: t.register_auditor(ks, public_key_arg(a.public), a.label))
    _public(p)
    p = action("register-oversight", "register an oversight body's key (a data-protection authority: it reads "
                                     "the access logs of children's records, nothing else)",
               lambda t, ks, a: t.register_oversight(ks, public_key_arg(a.public), a.label))
    _public(p)
    p = action("set-validator", "bond stake to a validator (0 removes it)",
               lambda t, ks, a: t.set_validator(ks, public_key_arg(a.public), a.stake))
    p.add_argument("--public", required=True, help="the validator's public key (hex or key file)")
    p.add_argument("--stake", type=int, required=True)
    p = action("revoke-key", "revoke a key (authority, terminal, auditor, guardian, validator)",
               lambda t, ks, a: t.revoke_key(ks, public_key_arg(a.public), a.reason))
    p.add_argument("--public", required=True, help="the key to revoke (hex or key file)")
    p.add_argument("--reason", default="unspecified", choices=REVOKE_REASONS,
                   help="why, as one of the chain's codes")
    p = action("rotate-key", "move every role of a key to a new key",
               lambda t, ks, a: t.rotate_key(ks, public_key_arg(a.old), public_key_arg(a.new)))
    p.add_argument("--old", required=True)
    p.add_argument("--new", required=True)
    p = action("schedule-upgrade", "from a future height on, blocks follow a newer protocol version",
               lambda t, ks, a: t.schedule_upgrade(ks, a.at, a.version))
    p.add_argument("--at", type=int, required=True, metavar="HEIGHT", help="the first height under the new version")
    p.add_argument("--version", type=int, required=True)
    p = action("set-params", "change chain parameters from a future height on", _set_params)
    p.add_argument("--at", type=int, required=True, metavar="HEIGHT", help="the first height with the new values")
    p.add_argument("--set", action="append", required=True, metavar="NAME=VALUE",
                   help="a parameter and its new value (repeat); the others keep their current values")
    p = action("set-council", "replace the council's members and threshold",
               lambda t, ks, a: t.set_council(ks, a.threshold, [public_key_arg(m) for m in a.member]))
    p.add_argument("--member", action="append", required=True, metavar="KEY",
                   help="a member's public key (hex or key file); repeat for each member of the new council")
    p.add_argument("--threshold", type=int, required=True, help="signatures governance will need")
    p = action("rotate-validator", "move a validator's stake to its new consensus key (after the validator delay)",
               lambda t, ks, a: t.rotate_validator(ks, public_key_arg(a.old), public_key_arg(a.new)))
    p.add_argument("--old", required=True, help="the validator's current key (hex or key file)")
    p.add_argument("--new", required=True, help="its new key (hex or key file)")
    p = action("erase", "order a child's personal records erased from every node", _erase)
    p.add_argument("--identity", required=True, help="the child's identity id (32 hex digits) or card file")
    p.add_argument("--order", required=True, metavar="REF",
                   help="the erasure order's reference: only a salted hash goes on the chain")
    p.add_argument("--basis", default="court-order", choices=ERASE_BASES, help="the legal basis (default court-order)")

    co = csub.add_parser("cosign", help="add signatures to a partially signed transaction file")
    co.add_argument("file", type=Path)
    co.add_argument("--submit", action="store_true", help="submit it once signed")
    _common(co, out=False)
    co.set_defaults(func=cmd_cosign)


def _public(p) -> None:
    p.add_argument("--public", required=True, help="the public key (64 hex digits or a key file)")
    p.add_argument("--label", default="", help="a readable name (no personal data)")


def _common(p, out: bool = True) -> None:
    p.add_argument("--key", action="append", type=Path, default=[], metavar="FILE",
                   help="a council member's key file; repeat for k of n")
    if out:
        p.add_argument("--out", type=Path, help="write the partially signed transaction here instead of submitting")
    p.add_argument("--json", action="store_true", help="print the node's answer as JSON")
    p.add_argument("--passphrase-file", type=Path, help="file with the key files' passphrase")
    add_node_args(p)


def _set_params(factory: TxFactory, keys: list, args: argparse.Namespace):
    """New parameters: the ones in force now, with the named ones changed."""
    current = run(_chain_params(args))
    values = PARAMS.wire(current)
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep or name not in values:
            raise InputError(f"--set takes NAME=VALUE with NAME one of {', '.join(sorted(values))}")
        try:
            values[name] = int(value)
        except ValueError:
            raise InputError(f"{name} takes an integer, not {value!r}") from None
    try:
        params = PARAMS.check(values, "params")
    except DecodeError as exc:
        raise InputError(f"invalid parameters: {exc}") from None
    return factory.set_params(keys, args.at, params)


async def _chain_params(args) -> Params:
    async with NodeClient(node_urls(args)) as c:
        status = await c.status()
    params = status.get("params")
    if not isinstance(params, dict):
        raise InputError("the node does not say which parameters are in force")
    return PARAMS.check(params, "params")


def _erase(factory: TxFactory, keys: list, args: argparse.Namespace):
    """The erasure order names the child by its tag and the order by a salted hash; the salt is
    printed once here, for the council's file of the order."""
    child = child_tag(identity_arg(args.identity))  # a bad --identity fails before a salt is shown
    order, salt = order_arg(args.order)
    say(f"erasure order {order.hex()[:16]}...: keep the salt {salt.hex()} with the order's file")
    return factory.erase(keys, child, order, args.basis)


def _council_keys(args) -> list:
    paths = list(args.key)
    if not paths and args.devnet is not None:
        from node import devnet

        paths = [Path(args.devnet) / p for p in devnet.describe(Path(args.devnet))["council"]]
    if not paths:
        raise InputError("name the signing council members with --key FILE (repeat for k of n)")
    return load_keys(paths, args)


async def _chain_id(args) -> str:
    async with NodeClient(node_urls(args)) as c:
        return str((await c.status())["chain_id"])


def cmd_action(args: argparse.Namespace) -> int:
    keys = _council_keys(args)
    chain_id = run(_chain_id(args))
    tx = args.build(TxFactory(chain_id), keys, args)
    if args.out is not None:
        write_partial(args.out, tx, chain_id)
        say(f"{tx.kind} {tx.id.hex()} signed by {len(tx.signers)}; written to {args.out}")
        return EXIT_OK
    return _submit(args, tx)


def cmd_cosign(args: argparse.Namespace) -> int:
    tx, chain_id = read_partial(args.file)
    if args.key:
        tx = cosign(tx, load_keys(args.key, args), chain_id)
        write_partial(args.file, tx, chain_id)
        say(f"{tx.kind} {tx.id.hex()} now signed by {len(tx.signers)}")
    if args.submit:
        return _submit(args, tx)
    return EXIT_OK


def _submit(args, tx) -> int:
    async def go() -> dict:
        async with NodeClient(node_urls(args)) as c:
            return await c.submit(tx.raw, wait=True)

    try:
        result = run(go())
    except ProblemError as exc:
        hint = "; too few council members signed: use --out FILE and `custos council cosign FILE --key ...`" \
            if exc.rule == "council-quorum" else ""
        refuse(f"refused: {exc.diagnostics()}{hint}")
        return EXIT_USAGE
    if args.json:
        emit_json(result)
    else:
        say(f"{tx.kind} {tx.id.hex()} {result['status']}" +
            (f" at height {result['height']}" if result.get("height") else ""))
    return EXIT_OK
