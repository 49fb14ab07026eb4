"""Hostile bytes against every decoder: only DecodeError may come out, and nothing is accepted
that does not re-encode to exactly the bytes given (one value, one encoding, no malleability).

The seeds are real encodings taken from a chain that ran a whole story (every transaction kind,
a block with evidence, every state record); hypothesis mutates them with bit flips, truncation,
insertion, deletion and splicing, and also feeds plain random bytes.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import msgpack
import pytest
from chainkit import DAY, Chain
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ledger import block as block_module
from ledger import genesis as genesis_module
from ledger import validators as validators_module
from ledger.block import (
    BLOCK,
    COMMIT,
    COMMIT_SIG,
    EVIDENCE,
    HEADER,
    VOTE,
    Block,
    sign_vote,
)
from ledger.crypto.keys import SigningKey
from ledger.encoding import Schema, decode, encode
from ledger.errors import DecodeError, KeyFileError
from ledger.genesis import GENESIS, GENESIS_VALIDATOR
from ledger.merkle import consistency_proof_of, leaf_hash, root_of
from ledger.snapshot import format as snapshot_module
from ledger.snapshot.make import chunk_bytes, plan
from ledger.state import records as records_module
from ledger.state.records import PARAMS
from ledger.storage import chainstore as chainstore_module
from ledger.tx import bodies as bodies_module
from ledger.tx import envelope as envelope_module
from ledger.tx.bodies import BODIES, POLICY
from ledger.tx.envelope import SIG, decode_tx, make_tx
from ledger.validators import VALIDATOR, ValidatorSet
from node.keyfile import MINIMAL, load_key_file, seal, unseal

AUNT = b"aunt".ljust(16, b"\x00")
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------- the decoders


@dataclass(frozen=True)
class Decoder:
    name: str
    decode: Callable[[bytes], Any]
    encode: Callable[[Any], bytes]  # the canonical bytes of what ``decode`` returned


def _tx_bytes(tx) -> bytes:
    return encode({"body": BODIES[tx.kind].wire(tx.body), "kind": tx.kind, "nonce": tx.nonce,
                   "sigs": [SIG.wire(s) for s in tx.sigs]})


def _schemas_of(*modules) -> dict[str, Schema]:
    """Every schema the modules define (each once, under the module that defines it)."""
    found: dict[str, Schema] = {}
    for module in modules:
        for name, value in vars(module).items():
            if isinstance(value, Schema) and value not in found.values():
                found[f"{module.__name__.split('.')[-1]}.{name}"] = value
    return found


SCHEMAS = _schemas_of(bodies_module, records_module, block_module, genesis_module, validators_module,
                      chainstore_module, envelope_module, snapshot_module)
SCHEMAS.update({f"body.{kind}": schema for kind, schema in BODIES.items()})

DECODERS = [
    Decoder("decode", decode, encode),
    Decoder("decode_tx", decode_tx, _tx_bytes),
    Decoder("Block.decode", Block.decode, Block.encode),
    Decoder("ValidatorSet", lambda data: ValidatorSet.from_wire(decode(data)), ValidatorSet.encode),
    *[Decoder(name, schema.decode, schema.encode) for name, schema in sorted(SCHEMAS.items())],
]
BY_NAME = {d.name: d for d in DECODERS}


def test_every_wire_and_record_schema_is_fuzzed():
    for name in ("block.BLOCK", "block.HEADER", "block.VOTE", "block.COMMIT", "block.EVIDENCE", "genesis.GENESIS",
                 "chainstore.TIP", "chainstore.TX_LOCATION", "records.REQUEST", "records.CONSENT", "records.ALERT",
                 "records.IDENTITY_RECORD", "records.CHAIN_INFO", "envelope.SIG"):
        assert name in BY_NAME
    assert {s for s in SCHEMAS.values()} >= {BLOCK, HEADER, VOTE, COMMIT, EVIDENCE}


def feed(decoder: Decoder, data: bytes) -> None:
    """``decoder`` refuses ``data`` with DecodeError, or accepts exactly the canonical bytes."""
    try:
        value = decoder.decode(data)
    except DecodeError:
        return
    assert decoder.encode(value) == data, f"{decoder.name} accepted bytes that re-encode differently"


# --------------------------------------------------------------------------- seeds from a real chain


def _story() -> list[bytes]:
    chain = Chain(validators=2)
    authority, terminal = chain.open_border()
    auditor = SigningKey.generate()
    chain.commit(chain.register_auditor(auditor.public), chain.set_validator(chain.add_validator().public, 500))
    child = chain.enrol_child(authority)
    adult = chain.enrol_child(authority, minor=False)
    consent = chain.grant_consent(child, companion=AUNT, destination=None)
    chain.commit(consent, chain.crossing(terminal, adult))
    covered = chain.crossing(terminal, child, companion=AUNT)
    pending = chain.crossing(terminal, child, direction="entry")
    chain.commit(covered, pending)
    chain.commit(chain.approve(child.guardians[0], pending, child))
    chain.commit(chain.deny(child.guardians[1], pending, child))  # denied: an alert
    chain.pending_crossing(terminal, child)
    chain.advance(2 * child.policy.deadline)  # it expires: an alert
    chain.commit(chain.grant_consent(child, direction="any"))
    chain.commit(chain.revoke_consent(child.guardians[0], consent, child),
                 chain.update_guardians(authority, child, [*child.guardians[:1], SigningKey.generate()]))
    chain.commit(chain.reenrol(authority, adult, SigningKey.generate()), chain.revoke(auditor.public))
    chain.commit(chain.rotate(terminal.public, SigningKey.generate().public))
    chain.commit(chain.gov(bodies_module.GOV_REGISTER_OVERSIGHT,
                           bodies_module.RegisterOversight(SigningKey.generate().public, "data protection")))
    node = chain.validator_keys[min(chain.validator_keys)]
    leaves = [leaf_hash(bytes([i])) for i in range(3)]
    for size, proof in ((2, []), (3, consistency_proof_of(leaves, 2))):
        body = bodies_module.AccessCheckpoint(node.public, size, root_of(leaves[:size]), tuple(proof))
        chain.commit(make_tx(bodies_module.ACCESS_CHECKPOINT, body, size, [node], chain.chain_id))
    chain.commit(chain.erase(adult))
    newcomer = SigningKey.generate()
    chain.commit(chain.set_params(chain.height + 3, replace(chain.genesis.params, retention_days=30)))
    chain.commit(chain.set_council(2, [*chain.council, newcomer]))
    chain.commit(chain.rotate_validator(max(chain.validator_keys), chain.add_validator().public))
    upgrade = Chain(protocol_version=1)
    upgrade.commit(upgrade.schedule_upgrade(upgrade.height + 3, 2))
    extra = [raw for h in range(1, upgrade.height + 1) for raw in upgrade.store.block(h).txs]
    cheat = chain.validator_keys[min(chain.validator_keys)]
    evidence = chain.double_vote(cheat, height=2)
    chain.commit(evidence=[evidence])
    chain.advance(DAY)

    store = chain.store
    seeds = [value for _, value in store.kv.iterate(b"", b"\xff")]  # every stored record and block
    for raw in extra:
        tx = decode_tx(raw)
        seeds += [raw, encode(BODIES[tx.kind].wire(tx.body))]
    for height in range(1, store.height + 1):
        block = store.block(height)
        seeds.append(HEADER.encode(block.header))
        seeds.extend(COMMIT_SIG.encode(s) for s in store.commit(height).signatures)
        seeds.extend(VALIDATOR.encode(v) for v in chain.validator_set(height))
        seeds.extend(block.txs)
        for raw in block.txs:
            tx = decode_tx(raw)
            seeds.append(encode(BODIES[tx.kind].wire(tx.body)))
            seeds.extend(SIG.encode(s) for s in tx.sigs)
    header = store.header(store.height)
    seeds.append(chainstore_module.ANCHOR.encode(chainstore_module.Anchor(store.height)))
    view = store.raw_view()
    snapshot = plan(view, header, target=2000)  # a state-sync manifest and its chunks
    seeds += [snapshot.encoded, *(chunk_bytes(view, snapshot, i) for i in range(snapshot.chunk_count)),
              snapshot_module.RECORD.encode(snapshot_module.Record(b"chain", store.state.get(b"chain") or b""))]
    seeds += [EVIDENCE.encode(evidence), VOTE.encode(evidence.a), VOTE.encode(evidence.b),
              VOTE.encode(sign_vote(cheat, chain.chain_id, "precommit", 3, 0, None)),
              POLICY.encode(child.policy), PARAMS.encode(chain.genesis.params), GENESIS.encode(chain.genesis),
              *[GENESIS_VALIDATOR.encode(v) for v in chain.genesis.validators]]
    return sorted(set(seeds))


SEEDS = _story()


def _try(decoder: Decoder, data: bytes) -> bool:
    try:
        decoder.decode(data)
    except DecodeError:
        return False
    return True


SEEDS_OF = {d.name: [s for s in SEEDS if _try(d, s)] for d in DECODERS}


def test_every_decoder_has_genuine_seeds_to_mutate():
    missing = [name for name, seeds in SEEDS_OF.items() if not seeds]
    assert missing == []
    for decoder in DECODERS:  # and the genuine encodings themselves round-trip
        for seed in SEEDS_OF[decoder.name]:
            assert decoder.encode(decoder.decode(seed)) == seed


# --------------------------------------------------------------------------- mutations


@st.composite
def mutation_of(draw, seeds: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete", "splice"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[at] = draw(st.sampled_from([0x00, 0x7F, 0x80, 0x90, 0xA0, 0xC0, 0xC2, 0xC4, 0xCA, 0xCC, 0xCF,
                                             0xD0, 0xD4, 0xD9, 0xDC, 0xDE, 0xFF]))
        elif op == "truncate":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=9))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 8))]
        elif op == "splice":
            other = draw(st.sampled_from(SEEDS))
            data = data[:at] + other[draw(st.integers(0, len(other))):]
    return bytes(data)


@pytest.mark.parametrize("decoder", DECODERS, ids=lambda d: d.name)
@FUZZ
@given(data=st.data())
def test_mutated_encodings_are_refused_or_canonical(decoder, data):
    feed(decoder, data.draw(mutation_of(SEEDS_OF[decoder.name])))


@settings(max_examples=1000, deadline=None)
@given(st.one_of(st.binary(max_size=300), mutation_of(SEEDS)))
def test_every_decoder_survives_arbitrary_bytes(data):
    for decoder in DECODERS:
        feed(decoder, data)


# --------------------------------------------------------------------------- generated checkers

#: values a field may be swapped for: each of the wrong type, or at the edge of a bound, somewhere
ODD = [None, True, False, 0, -1, 1, 2**63, 2**64 - 1, -(2**63), 1.5, b"", b"x" * 16, b"x" * 32, b"x" * 33,
       b"x" * 64, b"x" * 65, b"x" * 4097, b"x" * 16385, b"x" * 65537, "", "x", "exit", "x" * 300, [], [b""],
       [b"x" * 32], [b"b" * 32, b"a" * 32], {}, {"type": "vote", "body": {}}]


def edits(value: Any, depth: int = 0):
    """``value`` with one map entry or list item somewhere replaced, removed or added: every
    such edit down to four levels (the first two items of a list)."""
    yield from ODD
    if depth == 4:
        return
    if type(value) is dict:
        for key in value:
            yield {k: v for k, v in value.items() if k != key}
            for edited in edits(value[key], depth + 1):
                yield {**value, key: edited}
        yield {**value, "extra": 0}
    elif type(value) is list:
        for i in range(min(2, len(value))):
            for edited in edits(value[i], depth + 1):
                yield [*value[:i], edited, *value[i + 1:]]


def _outcome(read: Callable[[Any, str], Any], value: Any, path: str) -> tuple[str, Any]:
    try:
        return "ok", read(value, path)
    except DecodeError as exc:
        return "refused", str(exc)


@pytest.mark.parametrize("name", [name for name in sorted(SCHEMAS) if SEEDS_OF[name]])
def test_generated_checkers_agree_with_the_field_by_field_reading(name):
    """Each schema's generated checker accepts, converts and refuses exactly as the plain
    field-by-field check does, with the same first error; its wire form is the same too."""
    schema = SCHEMAS[name]
    refused = 0
    for seed in SEEDS_OF[name][:3]:
        for edited in edits(decode(seed)):
            for path in ("", "body"):
                fast = _outcome(schema.check, edited, path)
                assert fast == _outcome(schema.check_fields, edited, path), edited
                if fast[0] == "ok":
                    assert schema.wire(fast[1]) == schema.wire_fields(fast[1])
                refused += fast[0] == "refused"
    assert refused


def maps_out_of_order(value: Any):
    """``value`` with the keys of one of its maps (of two keys or more) reversed: each such map."""
    if type(value) is dict:
        if len(value) > 1:
            yield dict(reversed(value.items()))
        for key in value:
            for edited in maps_out_of_order(value[key]):
                yield {**value, key: edited}
    elif type(value) is list:
        for i, item in enumerate(value):
            for edited in maps_out_of_order(item):
                yield [*value[:i], edited, *value[i + 1:]]


def test_a_transaction_with_any_map_out_of_order_is_refused():
    """A transaction's maps are checked for key order one by one (the envelope, its body and
    what the body nests, each signature), not by a walk over the whole value."""
    kinds, tried = set(), 0
    for raw in SEEDS_OF["decode_tx"]:
        kinds.add(decode_tx(raw).kind)
        for edited in maps_out_of_order(decode(raw)):
            with pytest.raises(DecodeError, match=r"canonical form|fields must be exactly"):
                decode_tx(msgpack.packb(edited, use_bin_type=True))
            tried += 1
    assert len(kinds) >= 15 and tried > 100


PLAIN = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.binary(max_size=40)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=6) | st.binary(max_size=4) | st.integers(0, 3), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(value=PLAIN, bin_type=st.booleans())
def test_every_decoder_survives_msgpack_of_any_shape(value, bin_type):
    """Plain msgpack as another implementation might write it: keys in insertion order, keys that
    are bytes or integers, floats, text written as raw bytes."""
    try:
        data = msgpack.packb(value, use_bin_type=bin_type)
    except (ValueError, OverflowError):
        assume(False)
    for decoder in DECODERS:
        feed(decoder, data)


# --------------------------------------------------------------------------- key files

PASSPHRASE = b"fuzz"
KEY = SigningKey.generate()
KEY_TEXT = json.dumps(seal(KEY, PASSPHRASE, label="terminal 7", cost=MINIMAL), indent=2)


def _affordable(text: str) -> bool:
    """Skip mutations that merely ask Argon2id for a lot of time or memory (a valid, costly file)."""
    try:
        kdf = json.loads(text)["kdf"]
        return int(kdf["ops"]) <= 4 and int(kdf["mem"]) <= 1 << 20
    except Exception:
        return True


@st.composite
def mutated_text(draw) -> str:
    data = bytearray(KEY_TEXT.encode())
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data) - 1)) if data else 0
        op = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "splice"]))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.sampled_from([b"0", b"9", b"\"", b",", b"{", b"]", b"e999", b"null", b"\xff"]))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 6))]
        elif op == "splice":
            cut = draw(st.integers(0, len(data)))
            data = data[:at] + data[cut:]
    return data.decode("utf-8", "replace")


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_text())
def test_mutated_key_files_are_refused_or_give_the_same_key(text):
    assume(_affordable(text))
    fd, path = tempfile.mkstemp(suffix=".key")
    try:
        os.write(fd, text.encode("utf-8", "surrogatepass"))
        os.close(fd)
        try:
            key = load_key_file(path, PASSPHRASE)
        except KeyFileError:
            return
        assert key.public == KEY.public  # an accepted file can only be a cosmetic edit
    finally:
        os.unlink(path)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=80)
    | st.sampled_from(["argon2id", "custos-key/1", KEY.public.hex(), "00" * 16, "00" * 40]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=250, deadline=None)
@given(path=st.sampled_from([("format",), ("public",), ("label",), ("sealed",), ("kdf",), ("kdf", "name"),
                             ("kdf", "salt"), ("kdf", "ops"), ("kdf", "mem"), ()]),
       value=JSON, drop=st.booleans())
def test_key_documents_with_hostile_fields_are_refused(path, value, drop):
    doc = json.loads(KEY_TEXT)
    if not path:
        doc = value
    else:
        parent = doc["kdf"] if len(path) == 2 else doc
        if drop:
            del parent[path[-1]]
        else:
            parent[path[-1]] = value
    assume(_affordable(json.dumps(doc, allow_nan=True)))
    try:
        key = unseal(doc, PASSPHRASE)
    except KeyFileError:
        return
    assert key.public == KEY.public  # only a harmless edit (the label, an equal value) is accepted
