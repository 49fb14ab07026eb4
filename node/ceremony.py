"""The genesis ceremony: agencies that each run a node form one network without trusting a
coordinator with anything but the typing.

1. Each operator runs ``custos node init``: a node key, a node config with the addresses the
   others will dial, and a *join statement* (``join.json``) signed by the node key and bound to
   the agreed chain id. It names the node, its public p2p and API addresses, its role, and the
   council keys the agency brings.
2. One of them (any) runs ``custos genesis assemble`` over every join statement: each signature
   is checked, and a genesis (validators with their stakes, the council, the parameters) and a
   bundle of the join statements (``peers.json``) are written.
3. Every operator runs ``custos genesis finalize`` on that output. It checks, independently of
   the coordinator, that every validator and council key of the genesis comes from a signed join
   statement, that the operator's own statement is in it unaltered, then installs the genesis
   and the peer list in the node's directory and prints the genesis hash. The operators compare
   that hash (by phone, in a meeting): when they all read the same one, they run the same chain.

The coordinator cannot add a validator (it has no one's node key), change an address (the
statements are signed), or give one operator a different genesis than another (the hash
comparison shows it). It can leave a statement out; the operator left out sees it at step 3.

A join statement (``custos-join/1``) is JSON; its signature covers the canonical JSON (sorted
keys, no spaces) of every other field, under the domain ``genesis-join`` and the chain id.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

from ledger.crypto.keys import SigningKey, verify
from ledger.errors import CustosError, DecodeError
from ledger.genesis import Genesis, GenesisValidator, genesis_from_toml, genesis_to_toml
from ledger.state.records import DEFAULT_PARAMS, Council

JOIN_FORMAT = "custos-join/1"
BUNDLE_FORMAT = "custos-peers/1"
DOMAIN_JOIN = "genesis-join"
DEFAULT_STAKE = 100
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_LABEL = re.compile(r"^[^\"\\\x00-\x1f]{0,64}$")
_HOSTPORT = re.compile(r"^[A-Za-z0-9.\-\[\]:]+:\d{1,5}$")


class CeremonyError(CustosError):
    """A join statement, genesis or bundle that does not hold up; says which and why."""

    code = "ceremony"


@dataclass(frozen=True)
class Join:
    chain_id: str
    name: str
    label: str
    role: str
    key: bytes
    p2p: str
    api: str
    council: tuple[bytes, ...]
    time: int
    signature: bytes

    def unsigned(self) -> dict:
        return {"format": JOIN_FORMAT, "chain_id": self.chain_id, "name": self.name, "label": self.label,
                "role": self.role, "key": self.key.hex(), "p2p": self.p2p, "api": self.api,
                "council": [k.hex() for k in self.council], "time": self.time}

    def to_json(self) -> dict:
        return {**self.unsigned(), "signature": self.signature.hex()}


def _digest(unsigned: dict) -> bytes:
    return hashlib.sha256(json.dumps(unsigned, sort_keys=True, separators=(",", ":")).encode()).digest()


def make_join(key: SigningKey, *, chain_id: str, name: str, label: str, role: str, p2p: str, api: str,
              council: list[bytes], now_ms: int | None = None) -> Join:
    join = Join(chain_id, name, label, role, key.public, p2p, api, tuple(council),
                time.time_ns() // 1_000_000 if now_ms is None else now_ms, b"")
    check_fields(join)
    signature = key.sign(DOMAIN_JOIN, chain_id, _digest(join.unsigned()))
    return Join(**{**join.__dict__, "signature": signature})


def check_fields(join: Join) -> None:
    where = f"join statement of {join.name!r}"
    if not _NAME.match(join.name):
        raise CeremonyError(f"{where}: a node name is 1-63 lowercase letters, digits and dashes")
    if not _LABEL.match(join.label):
        raise CeremonyError(f"{where}: a label is at most 64 characters, without quotes or backslashes")
    if join.role not in ("validator", "observer"):
        raise CeremonyError(f"{where}: role must be validator or observer")
    if not _HOSTPORT.match(join.p2p):
        raise CeremonyError(f"{where}: p2p address {join.p2p!r} is not HOST:PORT")
    if not join.api.startswith(("http://", "https://")):
        raise CeremonyError(f"{where}: API address {join.api!r} is not an http(s) URL")
    if len(join.key) != 32 or any(len(k) != 32 for k in join.council):
        raise CeremonyError(f"{where}: keys are 32 bytes")


def parse_join(doc: object, source: str = "join statement") -> Join:
    """A join statement from its JSON form, signature checked."""
    try:
        if not isinstance(doc, dict) or doc.get("format") != JOIN_FORMAT:
            raise ValueError(f"not a {JOIN_FORMAT} document")
        join = Join(chain_id=str(doc["chain_id"]), name=str(doc["name"]), label=str(doc.get("label", "")),
                    role=str(doc["role"]), key=bytes.fromhex(doc["key"]), p2p=str(doc["p2p"]), api=str(doc["api"]),
                    council=tuple(bytes.fromhex(k) for k in doc.get("council", [])), time=int(doc["time"]),
                    signature=bytes.fromhex(doc["signature"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise CeremonyError(f"{source} is malformed: {exc}") from None
    check_fields(join)
    if join.to_json() != doc:
        raise CeremonyError(f"{source} has fields in a form the signature does not cover (re-create it)")
    if not verify(join.key, DOMAIN_JOIN, join.chain_id, _digest(join.unsigned()), join.signature):
        raise CeremonyError(f"{source}: the signature of node {join.name!r} does not verify (altered, or signed "
                            f"for another chain id)")
    return join


def read_join(path: Path) -> Join:
    try:
        doc = json.loads(Path(path).read_text())
    except OSError as exc:
        raise CeremonyError(f"cannot read join statement {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise CeremonyError(f"{path} is not JSON: {exc}") from None
    return parse_join(doc, str(path))


def assemble(joins: list[Join], *, chain_id: str, stakes: dict[str, int] | None = None,
             extra_council: tuple[bytes, ...] | list[bytes] = (), threshold: int | None = None,
             genesis_time: int) -> Genesis:
    """The genesis for these join statements (checked: one chain id, unique names and keys)."""
    stakes = dict(stakes or {})
    if not joins:
        raise CeremonyError("no join statements")
    names, keys = set(), set()
    for j in joins:
        if j.chain_id != chain_id:
            raise CeremonyError(f"node {j.name!r} joined chain {j.chain_id!r}, not {chain_id!r}")
        if j.name in names or j.key in keys:
            raise CeremonyError(f"node {j.name!r} (or its key) appears twice")
        names.add(j.name)
        keys.add(j.key)
    unknown = set(stakes) - {j.name for j in joins if j.role == "validator"}
    if unknown:
        raise CeremonyError(f"--stake names no validator: {', '.join(sorted(unknown))}")
    validators = [GenesisValidator(j.key, stakes.get(j.name, DEFAULT_STAKE), j.label or j.name)
                  for j in joins if j.role == "validator"]
    if not validators:
        raise CeremonyError("no validator among the join statements")
    members = sorted({k for j in joins for k in j.council} | set(extra_council))
    if not members:
        raise CeremonyError("no council member: give council keys at `custos node init --council-key` or here "
                            "with --council KEY")
    k = threshold if threshold is not None else len(members) // 2 + 1
    if not 1 <= k <= len(members):
        raise CeremonyError(f"the council threshold must lie in 1..{len(members)}")
    genesis = Genesis(chain_id=chain_id, genesis_time=genesis_time,
                      council=Council(threshold=k, members=tuple(members)),
                      validators=tuple(sorted(validators, key=lambda v: v.key)), params=DEFAULT_PARAMS)
    # what `genesis finalize` will read back: a genesis it would refuse is never written
    try:
        again = genesis_from_toml(genesis_to_toml(genesis).encode(), "the assembled genesis")
    except (DecodeError, OverflowError, ValueError) as exc:
        raise CeremonyError(f"the genesis would not be valid: {exc}") from None
    if again != genesis:
        raise CeremonyError("the chain id or a validator's label does not survive the genesis file (TOML): "
                            "use letters, digits and -_. in them")
    return genesis


def write_assembly(out: Path, genesis: Genesis, joins: list[Join]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "genesis.toml").write_text(genesis_to_toml(genesis))
    bundle = {"format": BUNDLE_FORMAT, "chain_id": genesis.chain_id, "genesis_hash": genesis.hash.hex(),
              "joins": [j.to_json() for j in sorted(joins, key=lambda j: j.name)]}
    (out / "peers.json").write_text(json.dumps(bundle, indent=2) + "\n")


def check_assembly(genesis: Genesis, bundle: object, own: Join) -> list[Join]:
    """What ``finalize`` checks before a node adopts a genesis; returns the verified statements."""
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT or not isinstance(bundle.get("joins"),
                                                                                               list):
        raise CeremonyError(f"peers.json is not a {BUNDLE_FORMAT} bundle")
    joins = [parse_join(doc, f"join statement {i} of peers.json") for i, doc in enumerate(bundle["joins"])]
    if own.chain_id != genesis.chain_id:
        raise CeremonyError(f"this node joined chain {own.chain_id!r}; the genesis is for {genesis.chain_id!r}")
    mine = [j for j in joins if j.key == own.key]
    if not mine:
        raise CeremonyError("this node's join statement is not in the bundle: it was left out")
    if mine[0] != own:
        raise CeremonyError("this node's join statement in the bundle differs from the one it signed")
    signed_validators = {j.key for j in joins if j.role == "validator"}
    genesis_validators = {v.key for v in genesis.validators}
    if genesis_validators != signed_validators:
        extra = genesis_validators - signed_validators
        missing = signed_validators - genesis_validators
        raise CeremonyError("the genesis validators differ from the signed statements"
                            + (f"; without a statement: {', '.join(k.hex()[:16] for k in extra)}" if extra else "")
                            + (f"; left out: {', '.join(k.hex()[:16] for k in missing)}" if missing else ""))
    brought = {k for j in joins for k in j.council}
    if not brought <= set(genesis.council.members):
        raise CeremonyError("council keys that agencies brought are missing from the genesis council")
    if own.role == "validator" and own.key not in genesis_validators:
        raise CeremonyError("this node is not a validator of the genesis")
    return joins
