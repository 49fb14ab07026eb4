"""``custos node init`` and ``custos genesis assemble|finalize``: the genesis ceremony by which
several agencies form one network (see :mod:`node.ceremony` for what each step proves).

    custos node init --dir DIR --chain-id ID --public-p2p HOST:PORT [--council-key FILE] ...
    custos genesis assemble --chain-id ID --join A/join.json --join B/join.json ... --out OUT
    custos genesis finalize --dir DIR --from OUT [--expect-hash HEX]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

from ledger.crypto.keys import SigningKey
from ledger.validators import MAX_POWER
from node import ceremony
from node.cli.common import EXIT_INVALID, EXIT_OK, add_passphrase_arg, read_passphrase
from node.cli.options import InputError, hostport, parse_time, public_key_arg, refuse, say
from node.config import NodeConfig, load_config
from node.consensus.privval import PRIVVAL_FILE, initialise_signer_state
from node.genesis_file import load_genesis
from node.keyfile import INTERACTIVE, MINIMAL, public_key_of, write_key_file


def register_node_init(nsub) -> None:
    init = nsub.add_parser("init", help="create a node directory: key, config, signed join statement")
    init.add_argument("--dir", type=Path, required=True, help="the node's directory (created; must not hold a node)")
    init.add_argument("--chain-id", required=True, help="the chain id the agencies agreed on")
    init.add_argument("--name", help="the node's name (default: the directory's name)")
    init.add_argument("--label", default="", help="the agency, as the genesis shows it (e.g. 'border police')")
    init.add_argument("--public-p2p", type=hostport, required=True, metavar="HOST:PORT",
                      help="the address other nodes dial to reach this one")
    init.add_argument("--public-api", metavar="URL", help="the API URL clients use (default: http://HOST:8700 "
                                                          "with the host of --public-p2p)")
    init.add_argument("--listen-p2p", type=hostport, default="0.0.0.0:8800", metavar="HOST:PORT")
    init.add_argument("--listen-api", type=hostport, default="0.0.0.0:8700", metavar="HOST:PORT")
    init.add_argument("--listen-metrics", type=hostport, default="127.0.0.1:9700", metavar="HOST:PORT")
    init.add_argument("--council-key", action="append", default=[], metavar="KEY",
                      help="a council member's public key (hex or key file) this agency brings; repeatable")
    init.add_argument("--observer", action="store_true", help="follow the chain without voting")
    init.add_argument("--fast-kdf", action="store_true", help="cheapest key-file KDF: for throwaway test networks")
    add_passphrase_arg(init)
    init.set_defaults(func=cmd_node_init)


def register(sub) -> None:
    g = sub.add_parser("genesis", help="the genesis ceremony: assemble the join statements, finalize a node")
    gsub = g.add_subparsers(dest="genesis_command", metavar="ACTION")
    gsub.required = True
    asm = gsub.add_parser("assemble", help="check every join statement and write the genesis and peer bundle")
    asm.add_argument("--chain-id", required=True)
    asm.add_argument("--join", action="append", type=Path, required=True, metavar="FILE",
                     help="a join statement (join.json); one per node")
    asm.add_argument("--stake", action="append", default=[], metavar="NAME=N",
                     help=f"a validator's stake (default {ceremony.DEFAULT_STAKE} each)")
    asm.add_argument("--council", action="append", default=[], metavar="KEY",
                     help="a council member besides those the agencies brought (hex or key file)")
    asm.add_argument("--council-threshold", type=int, help="signatures governance needs (default: a majority)")
    asm.add_argument("--genesis-time", default="now", help="ISO 8601 time, or now (default)")
    asm.add_argument("--out", type=Path, required=True, help="directory for genesis.toml and peers.json")
    asm.set_defaults(func=cmd_assemble)
    fin = gsub.add_parser("finalize", help="verify an assembled genesis and install it in a node directory")
    fin.add_argument("--dir", type=Path, required=True, help="the node's directory (from `custos node init`)")
    fin.add_argument("--from", dest="source", type=Path, required=True, metavar="OUT",
                     help="the directory `genesis assemble` wrote")
    fin.add_argument("--expect-hash", metavar="HEX", help="refuse unless the genesis hash is this one")
    fin.set_defaults(func=cmd_finalize)


# --------------------------------------------------------------------------- node init


def _node_toml(args, name: str, passphrase_file: Path | None) -> str:
    lines = [
        f"# node {name} of chain {args.chain_id}; written by `custos node init`, peers by `custos genesis finalize`",
        "[node]",
        f'name = "{name}"',
        'data_dir = "data"',
        'genesis = "genesis.toml"',
        'key_file = "node.key"',
        *([f"passphrase_file = {json.dumps(str(passphrase_file))}"] if passphrase_file else
          ["# passphrase: $CUSTOS_PASSPHRASE (or set passphrase_file)"]),
        f'role = "{"observer" if args.observer else "validator"}"',
        "",
        "[api]",
        f'listen = "{args.listen_api}"',
        "",
        "[p2p]",
        f'listen = "{args.listen_p2p}"',
        "peers = []",
        "allow = []",
        "",
        "[metrics]",
        f'listen = "{args.listen_metrics}"',
        "",
        "[log]",
        'format = "text"',
    ]
    return "\n".join(lines) + "\n"


def cmd_node_init(args: argparse.Namespace) -> int:
    directory: Path = args.dir
    name = args.name or directory.resolve().name.lower()
    if (directory / "node.key").exists() or (directory / "node.toml").exists():
        raise InputError(f"{directory} holds a node already")
    public_api = args.public_api or f"http://{args.public_p2p.rpartition(':')[0]}:{args.listen_api.rpartition(':')[2]}"
    council = [public_key_arg(k) for k in args.council_key]
    key = SigningKey.generate()
    join = ceremony.make_join(key, chain_id=args.chain_id, name=name, label=args.label,
                              role="observer" if args.observer else "validator", p2p=args.public_p2p,
                              api=public_api.rstrip("/"), council=council)
    passphrase = read_passphrase(args, confirm=True)
    directory.mkdir(parents=True, exist_ok=True)
    write_key_file(directory / "node.key", key, passphrase, label=name, cost=MINIMAL if args.fast_kdf else INTERACTIVE)
    passphrase_file = args.passphrase_file.resolve() if args.passphrase_file else None
    (directory / "node.toml").write_text(_node_toml(args, name, passphrase_file))
    (directory / "join.json").write_text(json.dumps(join.to_json(), indent=2) + "\n")
    say(f"node {name}: key {key.public.hex()}")
    say(f"send {directory / 'join.json'} to whoever assembles the genesis; then run "
        f"`custos genesis finalize --dir {directory} --from DIR`")
    return EXIT_OK


# --------------------------------------------------------------------------- assemble, finalize


def _stakes(items: list[str]) -> dict[str, int]:
    stakes = {}
    for item in items:
        m = re.fullmatch(r"([a-z0-9-]+)=(\d+)", item)
        if not m or not 1 <= int(m.group(2)) <= MAX_POWER:
            raise InputError(f"--stake {item!r}: write NAME=N with N in 1..{MAX_POWER}")
        stakes[m.group(1)] = int(m.group(2))
    return stakes


def cmd_assemble(args: argparse.Namespace) -> int:
    joins = [ceremony.read_join(p) for p in args.join]
    genesis = ceremony.assemble(joins, chain_id=args.chain_id, stakes=_stakes(args.stake),
                                extra_council=[public_key_arg(k) for k in args.council],
                                threshold=args.council_threshold, genesis_time=parse_time(args.genesis_time))
    ceremony.write_assembly(args.out, genesis, joins)
    say(f"genesis of chain {genesis.chain_id}: {len(genesis.validators)} validators, council "
        f"{genesis.council.threshold} of {len(genesis.council.members)}")
    say(f"genesis hash {genesis.hash.hex()}")
    say(f"give {args.out}/genesis.toml and {args.out}/peers.json to every operator; each runs "
        "`custos genesis finalize` and reads out the hash it prints")
    return EXIT_OK


def replace_toml_list(text: str, name: str, items: list[str]) -> str:
    """``text`` (a node config) with its ``name = [...]`` list replaced by ``items``."""
    body = "[]" if not items else "[\n" + "".join(f"  {i},\n" for i in items) + "]"
    new, count = re.subn(rf"(?ms)^{name} = \[.*?\]$", f"{name} = {body}", text, count=1)
    if count != 1:
        raise InputError(f"the node config has no `{name} = [...]` line to fill in")
    return new


def _initialise_signer(config: NodeConfig, key: bytes, chain_id: str) -> None:
    """A new validator's signer state (nothing signed yet), so its first start needs no --init.
    Only for a node that never ran (no chain store): a node's own state is never replaced."""
    data = config.node.data_dir
    fresh = config.node.role == "validator" and not (data / "chain").exists()
    if fresh and initialise_signer_state(data / "consensus" / PRIVVAL_FILE, key, chain_id):
        say(f"signer state written to {data / 'consensus' / PRIVVAL_FILE}")


def cmd_finalize(args: argparse.Namespace) -> int:
    directory: Path = args.dir
    source: Path = args.source
    if args.expect_hash is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", args.expect_hash):
        raise InputError(f"--expect-hash {args.expect_hash!r}: a genesis hash is 64 hex digits")
    own = ceremony.read_join(directory / "join.json")
    if public_key_of(directory / "node.key") != own.key:
        raise InputError(f"{directory}/join.json is not signed by {directory}/node.key")
    genesis = load_genesis(source / "genesis.toml")
    try:
        bundle = json.loads((source / "peers.json").read_text())
    except ValueError as exc:
        raise InputError(f"{source}/peers.json is not JSON: {exc}") from None
    if args.expect_hash is not None and args.expect_hash.lower() != genesis.hash.hex():
        refuse(f"REFUSED: the genesis hash is {genesis.hash.hex()}, not the expected {args.expect_hash}")
        return EXIT_INVALID
    try:
        joins = ceremony.check_assembly(genesis, bundle, own)
    except ceremony.CeremonyError as exc:
        refuse(f"REFUSED: {exc}")
        return EXIT_INVALID
    config_path = directory / "node.toml"
    text = config_path.read_text()
    others = [j for j in joins if j.key != own.key]
    dial = [j for j in others if j.role == "validator"] if own.role == "observer" else others
    text = replace_toml_list(text, "peers", [f'{{ address = "{j.p2p}", key = "{j.key.hex()}" }}' for j in dial])
    text = replace_toml_list(text, "allow", [f'"{j.key.hex()}"' for j in others if j.role == "observer"])
    shutil.copyfile(source / "genesis.toml", directory / "genesis.toml")
    config_path.write_text(text)
    config = load_config(config_path)  # what was written must load
    _initialise_signer(config, own.key, genesis.chain_id)
    brought = {k for j in joins for k in j.council}
    say(f"chain {genesis.chain_id}: {len(genesis.validators)} validators, council {genesis.council.threshold} of "
        f"{len(genesis.council.members)}; {len(dial)} peers written to {config_path}")
    for v in genesis.validators:
        j = next(j for j in joins if j.key == v.key)
        say(f"  validator {j.name:<16} stake {v.stake:<6} p2p {j.p2p:<22} {v.key.hex()[:16]}")
    for m in genesis.council.members:
        unknown = "" if m in brought else "  (brought by no join statement: ask who holds it)"
        say(f"  council   {m.hex()[:16]}{unknown}")
    say(f"genesis hash {genesis.hash.hex()}")
    say("compare this hash with every other operator before starting: `custos node start --config "
        f"{config_path}`")
    return EXIT_OK
