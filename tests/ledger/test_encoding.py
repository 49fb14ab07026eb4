"""Canonical msgpack: one encoding per value, and decoders that refuse every other one."""

from __future__ import annotations

from dataclasses import dataclass

import msgpack
import pytest
from chainkit import CHAIN_ID

from ledger.block import PREVOTE, VOTE, sign_vote
from ledger.crypto.keys import DOMAIN_TX, DOMAIN_VOTE, SigningKey, verify
from ledger.encoding import MAX_ENCODED, Bytes, Int, Schema, Str, decode, encode
from ledger.errors import DecodeError
from ledger.tx.bodies import BODIES, CROSSING, GOV_REGISTER_POST, CrossingRequest, RegisterPost
from ledger.tx.envelope import add_signatures, decode_tx, decode_tx_batch, make_tx


@pytest.mark.parametrize(
    "value, wire",
    [
        (None, b"\xc0"),
        (True, b"\xc3"),
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\xcc\x80"),
        (-1, b"\xff"),
        (-33, b"\xd0\xdf"),
        (2**64 - 1, b"\xcf" + b"\xff" * 8),
        (-(2**63), b"\xd3\x80" + b"\x00" * 7),
        (b"ab", b"\xc4\x02ab"),
        ("ab", b"\xa2ab"),
        ([1, [2]], b"\x92\x01\x91\x02"),
        ({"b": 1, "a": 2}, b"\x82\xa1a\x02\xa1b\x01"),  # keys sorted whatever the insertion order
        ({"é": 1, "z": 2}, b"\x82\xa1z\x02\xa2\xc3\xa9\x01"),  # by UTF-8 bytes, not by code point order of str
    ],
)
def test_values_have_one_encoding_and_decode_back(value, wire):
    assert encode(value) == wire
    assert decode(wire) == value


def test_tuples_encode_as_lists():
    assert encode((1, 2)) == encode([1, 2])


@pytest.mark.parametrize(
    "wire",
    [
        pytest.param(b"\x82\xa1b\x01\xa1a\x02", id="unsorted-keys"),
        pytest.param(b"\x82\xa1a\x01\xa1a\x01", id="duplicate-key-same-value"),
        pytest.param(b"\x82\xa1a\x01\xa1a\x02", id="duplicate-key-other-value"),
        pytest.param(b"\xcc\x01", id="padded-uint8"),
        pytest.param(b"\xcd\x00\x80", id="padded-uint16"),
        pytest.param(b"\xcf" + b"\x00" * 7 + b"\x01", id="padded-uint64"),
        pytest.param(b"\xd0\x01", id="positive-as-int8"),
        pytest.param(b"\xd0\xff", id="padded-negative-fixint"),
        pytest.param(b"\xd1\xff\x80", id="padded-int16"),
        pytest.param(b"\xd9\x01a", id="padded-str8"),
        pytest.param(b"\xc5\x00\x01a", id="padded-bin16"),
        pytest.param(b"\xdc\x00\x01\x01", id="padded-array16"),
        pytest.param(b"\xde\x00\x01\xa1a\x01", id="padded-map16"),
        pytest.param(b"\x01\x00", id="trailing-byte"),
        pytest.param(b"\xc0\xc0", id="two-values"),
        pytest.param(b"\xca\x3f\x80\x00\x00", id="float32"),
        pytest.param(b"\xcb\x3f\xf0" + b"\x00" * 6, id="float64"),
        pytest.param(b"\xd4\x01\x00", id="ext-fixext1"),
        pytest.param(b"\xd6\xff\x00\x00\x00\x00", id="ext-timestamp"),
        pytest.param(b"\xc7\x00\x05", id="ext-empty"),
        pytest.param(b"\x81\xc4\x01a\x01", id="bin-map-key"),
        pytest.param(b"\x81\x01\x01", id="int-map-key"),
        pytest.param(b"\xa2\xff\xfe", id="invalid-utf8"),
        pytest.param(b"\xa1", id="truncated"),
        pytest.param(b"\xc1", id="reserved-byte"),
        pytest.param(b"", id="empty"),
    ],
)
def test_rejects_non_canonical_or_foreign_encodings(wire):
    with pytest.raises(DecodeError):
        decode(wire)


def test_rejects_nesting_deeper_than_any_object_needs():
    for depth in (100, 1000, 5000):
        with pytest.raises(DecodeError):
            decode(b"\x91" * depth + b"\xc0")


def test_rejects_input_over_the_size_limit_before_parsing():
    with pytest.raises(DecodeError, match="exceed"):
        decode(encode(b"x" * 100), max_size=50)
    assert MAX_ENCODED >= 8 * 1024 * 1024


def test_rejects_a_map_with_more_fields_than_any_object_has():
    with pytest.raises(DecodeError):
        decode(b"\xde\x00\x41" + b"".join(encode(f"k{i:03d}") + b"\x00" for i in range(65)))


def test_rejects_input_that_is_not_bytes():
    with pytest.raises(DecodeError):
        decode("\xc0")  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [1.5, 2**64, -(2**63) - 1, {1: 2}, {b"k": 1}, object(), "\ud800", {"\ud800": 1}])
def test_refuses_to_encode_what_has_no_canonical_form(value):
    with pytest.raises(DecodeError):
        encode(value)


# --------------------------------------------------------------------------- schemas

@dataclass(frozen=True)
class Point:
    name: str
    tag: bytes
    n: int


POINT = Schema(Point, {"name": Str(max=8), "tag": Bytes(2), "n": Int(max=10)})


def test_schema_roundtrip_is_exact():
    p = Point(name="a", tag=b"xy", n=3)
    assert POINT.decode(POINT.encode(p)) == p


@pytest.mark.parametrize(
    "wire, field",
    [
        ({"name": b"a", "tag": b"xy", "n": 3}, "name"),  # bin where text is due
        ({"name": "a", "tag": "xy", "n": 3}, "tag"),  # text where bytes are due
        ({"name": "a", "tag": b"xyz", "n": 3}, "tag"),
        ({"name": "a", "tag": b"xy", "n": 11}, "n"),
        ({"name": "a", "tag": b"xy", "n": -1}, "n"),
        ({"name": "a", "tag": b"xy", "n": True}, "n"),
        ({"name": "a", "tag": b"xy", "n": None}, "n"),
        ({"name": "a" * 9, "tag": b"xy", "n": 3}, "name"),
    ],
)
def test_schema_errors_name_the_field(wire, field):
    with pytest.raises(DecodeError) as exc:
        POINT.decode(encode(wire))
    assert exc.value.path == field


@pytest.mark.parametrize(
    "wire",
    [{"name": "a", "tag": b"xy"}, {"name": "a", "tag": b"xy", "n": 1, "extra": 0}, [1, 2, 3]],
)
def test_schema_rejects_missing_unknown_or_mistyped_fields(wire):
    with pytest.raises(DecodeError):
        POINT.decode(encode(wire))


# --------------------------------------------------------------------------- transactions and signatures


@pytest.fixture
def request_tx():
    terminal, child = SigningKey.generate(), SigningKey.generate()
    body = CrossingRequest(terminal.public, b"\x01" * 16, "MD-01", "exit", 1_000, "RO", None)
    return make_tx(CROSSING, body, 7, [terminal, child], CHAIN_ID), terminal, child


def test_transaction_roundtrip(request_tx):
    tx, terminal, child = request_tx
    again = decode_tx(tx.raw)
    assert (again.kind, again.body, again.nonce, again.id, again.raw) == (tx.kind, tx.body, tx.nonce, tx.id, tx.raw)
    assert again.bad_signatures(CHAIN_ID) == []


def test_transaction_id_does_not_depend_on_who_signed(request_tx):
    tx, terminal, child = request_tx
    partial = make_tx(CROSSING, tx.body, tx.nonce, [terminal], CHAIN_ID)
    completed = add_signatures(partial, [child], CHAIN_ID)
    assert partial.id == completed.id == tx.id
    assert completed.signers == tx.signers and completed.bad_signatures(CHAIN_ID) == []
    assert decode_tx(completed.raw).id == tx.id


@pytest.mark.parametrize("signers", [1, 2, 15, 16])
def test_a_decoded_transaction_has_the_id_of_the_one_made(signers):
    """A decoded transaction's unsigned part is cut from its bytes, not packed again: the same
    bytes and id as the maker's, however many signatures follow (16 need a longer array header)."""
    keys = [SigningKey.generate() for _ in range(signers)]
    body = CrossingRequest(keys[0].public, b"\x01" * 16, "MD-01", "exit", 1_000, "RO", None)
    tx = make_tx(CROSSING, body, 2**64 - 1, keys, CHAIN_ID)
    again = decode_tx(tx.raw)
    wire = {"body": BODIES[CROSSING].wire(body), "kind": CROSSING, "nonce": 2**64 - 1}
    assert again._unsigned == tx._unsigned == encode(wire)
    assert again.id == tx.id and again.bad_signatures(CHAIN_ID) == []


def test_signatures_bind_the_chain_id(request_tx):
    tx, terminal, child = request_tx
    assert set(tx.bad_signatures("custos-other")) == {terminal.public, child.public}


def test_signatures_bind_the_domain():
    key = SigningKey.generate()
    vote = sign_vote(key, CHAIN_ID, PREVOTE, 1, 0, b"\x01" * 32)
    assert verify(key.public, DOMAIN_VOTE, CHAIN_ID, vote.digest(), vote.signature)
    assert not verify(key.public, DOMAIN_TX, CHAIN_ID, vote.digest(), vote.signature)
    assert VOTE.decode(VOTE.encode(vote)).verify(CHAIN_ID)


def _wire(tx):
    return decode(tx.raw)


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda w: w.update(kind="gov.mint-money"), id="unknown-kind"),
        pytest.param(lambda w: w.update(sigs=[]), id="no-signatures"),
        pytest.param(lambda w: w.update(sigs=list(reversed(w["sigs"]))), id="unsorted-signatures"),
        pytest.param(lambda w: w.update(sigs=[w["sigs"][0], w["sigs"][0]]), id="signature-twice"),
        pytest.param(lambda w: w.update(sigs=[{**w["sigs"][0], "sig": b"\x00" * 63}]), id="short-signature"),
        pytest.param(lambda w: w.update(nonce=-1), id="negative-nonce"),
        pytest.param(lambda w: w.update(extra=1), id="extra-envelope-field"),
        pytest.param(lambda w: w.pop("nonce"), id="missing-nonce"),
        pytest.param(lambda w: w["body"].update(direction="sideways"), id="bad-direction"),
        pytest.param(lambda w: w["body"].update(identity=b"\x01" * 15), id="short-identity"),
        pytest.param(lambda w: w["body"].update(note="hello"), id="unknown-body-field"),
    ],
)
def test_rejects_malformed_transactions(request_tx, mutate):
    wire = _wire(request_tx[0])
    mutate(wire)
    with pytest.raises(DecodeError):
        decode_tx(encode(wire))


def test_a_malformed_signature_is_named_by_its_place_in_the_list(request_tx):
    wire = _wire(request_tx[0])
    assert len(wire["sigs"]) == 2
    wire["sigs"][1] = {**wire["sigs"][1], "sig": b"\x00" * 63}
    with pytest.raises(DecodeError) as caught:
        decode_tx(encode(wire))
    assert "sigs[1].sig" in str(caught.value)


def test_rejects_a_transaction_over_the_size_limit():
    post = make_tx(GOV_REGISTER_POST, RegisterPost("MD-01", "x"), 1, [SigningKey.generate()], CHAIN_ID)
    wire = decode(post.raw)
    wire["body"]["label"] = "x" * 70_000
    with pytest.raises(DecodeError):
        decode_tx(encode(wire))


def test_rejects_a_body_field_out_of_bounds_before_signing():
    with pytest.raises(DecodeError):
        make_tx(GOV_REGISTER_POST, RegisterPost("", "empty post name"), 1, [SigningKey.generate()], CHAIN_ID)


@pytest.mark.parametrize("data", [b"", b"\xc1", b"\x92\x01\x02", b"\x91\xa3abc", b"\x81\xa1a\x01",
                                  msgpack.packb([b"x"] * 11)])
def test_rejects_a_transaction_batch_that_is_not_a_bounded_list_of_byte_strings(data):
    with pytest.raises(DecodeError):
        decode_tx_batch(data, max_items=10)


def test_a_transaction_batch_keeps_its_items_in_order():
    assert decode_tx_batch(msgpack.packb([b"a", b"bc"], use_bin_type=True), max_items=10) == [b"a", b"bc"]
