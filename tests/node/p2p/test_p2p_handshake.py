"""The peer handshake and the sealed session, without sockets.

Hostile fixtures are named for the attack: a hello from another chain or genesis, a challenge
reflected back, a signature replayed from another session or reflected to its signer, a key
not in the permitted set, a dialed address answering with another key, a small-order
ephemeral key, and frames tampered with, replayed or reordered after the handshake.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

import msgpack
import pytest

from ledger.crypto.keys import SigningKey
from ledger.encoding import encode
from ledger.errors import DecodeError
from node.p2p.errors import HandshakeRejected, Reason
from node.p2p.handshake import (
    AUTH,
    HELLO,
    ROLE_RESPONDER,
    Auth,
    Handshake,
    sign_auth,
    transcript_hash,
)
from tests.node.p2p.p2pkit import CHAIN_ID, GENESIS

ALICE = SigningKey(bytes(range(32)))
BOB = SigningKey(bytes(range(1, 33)))
MALLORY = SigningKey(bytes(range(2, 34)))
PERMITTED = {ALICE.public, BOB.public}


def permitted(key: bytes) -> bool:
    return key in PERMITTED


def pair(*, dialer=ALICE, listener=BOB, expected: bytes | None = None, dialer_chain=CHAIN_ID,
         dialer_genesis=GENESIS):
    """A dialer (initiator) and a listener (responder) handshake."""
    a = Handshake(dialer, dialer_chain, dialer_genesis, initiator=True, permitted=permitted,
                  expected_key=listener.public if expected is None else expected)
    b = Handshake(listener, CHAIN_ID, GENESIS, initiator=False, permitted=permitted)
    return a, b


def complete(a: Handshake, b: Handshake):
    a_auth = a.receive_hello(b.hello_bytes())
    b_auth = b.receive_hello(a.hello_bytes())
    return a.receive_auth(b_auth), b.receive_auth(a_auth)


def rejected(excinfo: pytest.ExceptionInfo, reason: str) -> None:
    assert excinfo.value.reason == reason, str(excinfo.value)


# ---------------------------------------------------------------- the good pair


def test_good_pair_authenticates_both_keys_and_shares_frame_keys():
    a, b = pair()
    sa, sb = complete(a, b)
    assert sa.peer_key == BOB.public and sb.peer_key == ALICE.public
    assert sa.initiator and not sb.initiator
    assert sa.transcript == sb.transcript
    for i in range(3):
        assert sb.open(sa.seal(b"to bob %d" % i)) == b"to bob %d" % i
        assert sa.open(sb.seal(b"to alice %d" % i)) == b"to alice %d" % i


def test_every_handshake_is_fresh():
    a1, b1 = pair()
    a2, b2 = pair()
    assert a1.hello.challenge != a2.hello.challenge
    assert a1.hello.ephemeral != a2.hello.ephemeral
    s1, _ = complete(a1, b1)
    s2, _ = complete(a2, b2)
    assert s1.transcript != s2.transcript


def test_hello_is_small_and_canonical():
    a, _ = pair()
    data = a.hello_bytes()
    assert len(data) < 256
    assert HELLO.decode(data) == a.hello


# ---------------------------------------------------------------- hostile hellos


def test_rejects_wrong_chain_id():
    a, b = pair(dialer_chain="custos-other-network")
    with pytest.raises(HandshakeRejected) as exc:
        b.receive_hello(a.hello_bytes())
    rejected(exc, Reason.WRONG_CHAIN)
    with pytest.raises(HandshakeRejected) as exc:
        a.receive_hello(b.hello_bytes())
    rejected(exc, Reason.WRONG_CHAIN)


def test_rejects_wrong_genesis():
    a, b = pair(dialer_genesis=hashlib.sha256(b"a fork's genesis").digest())
    with pytest.raises(HandshakeRejected) as exc:
        b.receive_hello(a.hello_bytes())
    rejected(exc, Reason.WRONG_GENESIS)


def test_rejects_unknown_key():
    mallory = Handshake(MALLORY, CHAIN_ID, GENESIS, initiator=True, permitted=lambda _: True)
    _, b = pair()
    with pytest.raises(HandshakeRejected) as exc:
        b.receive_hello(mallory.hello_bytes())
    rejected(exc, Reason.UNKNOWN_KEY)
    assert exc.value.peer_key == MALLORY.public


def test_rejects_dialed_address_answering_with_another_key():
    a, _ = pair(expected=BOB.public)
    impostor = Handshake(MALLORY, CHAIN_ID, GENESIS, initiator=False, permitted=lambda _: True)
    with pytest.raises(HandshakeRejected) as exc:
        a.receive_hello(impostor.hello_bytes())
    rejected(exc, Reason.UNEXPECTED_KEY)


def test_rejects_even_a_permitted_key_if_not_the_one_configured_for_the_address():
    carol = SigningKey(bytes(range(3, 35)))
    a = Handshake(ALICE, CHAIN_ID, GENESIS, initiator=True, permitted=lambda _: True, expected_key=BOB.public)
    carol_hs = Handshake(carol, CHAIN_ID, GENESIS, initiator=False, permitted=lambda _: True)
    with pytest.raises(HandshakeRejected) as exc:
        a.receive_hello(carol_hs.hello_bytes())
    rejected(exc, Reason.UNEXPECTED_KEY)


def test_rejects_reflected_challenge():
    a, _ = pair()
    # a permitted key, but answering with the dialer's own challenge (a reflection/replay)
    bob = Handshake(BOB, CHAIN_ID, GENESIS, initiator=False, permitted=permitted)
    reflected = replace(bob.hello, challenge=a.hello.challenge)
    with pytest.raises(HandshakeRejected) as exc:
        a.receive_hello(HELLO.encode(reflected))
    rejected(exc, Reason.REFLECTED)


def test_rejects_own_hello_reflected_back():
    a = Handshake(ALICE, CHAIN_ID, GENESIS, initiator=True, permitted=lambda _: True)
    with pytest.raises(HandshakeRejected) as exc:
        a.receive_hello(a.hello_bytes())
    rejected(exc, Reason.SELF)


def test_rejects_unsupported_version():
    a, b = pair()
    future = replace(a.hello, version=2)
    with pytest.raises(HandshakeRejected) as exc:
        b.receive_hello(HELLO.encode(future))
    rejected(exc, Reason.VERSION)


@pytest.mark.parametrize("data", [
    b"",
    b"\xc1",
    encode({"key": b"x"}),
    b"\x00" * 600,
], ids=["empty", "invalid-msgpack", "missing-fields", "oversized"])
def test_rejects_malformed_hello(data):
    _, b = pair()
    with pytest.raises(HandshakeRejected) as exc:
        b.receive_hello(data)
    rejected(exc, Reason.MALFORMED)


def test_rejects_non_canonical_hello():
    a, b = pair()
    wire = HELLO.wire(a.hello)
    # same content, keys out of canonical order
    shuffled = msgpack.packb(dict(reversed(list(wire.items()))), use_bin_type=True)
    with pytest.raises(HandshakeRejected) as exc:
        b.receive_hello(shuffled)
    rejected(exc, Reason.MALFORMED)


# ---------------------------------------------------------------- hostile signatures


def test_rejects_bad_signature():
    a, b = pair()
    a.receive_hello(b.hello_bytes())
    b.receive_hello(a.hello_bytes())
    forged = AUTH.encode(Auth(b"\x01" * 64))
    with pytest.raises(HandshakeRejected) as exc:
        a.receive_auth(forged)
    rejected(exc, Reason.BAD_SIGNATURE)


def test_rejects_signature_by_another_key():
    a, b = pair()
    a.receive_hello(b.hello_bytes())
    b.receive_hello(a.hello_bytes())
    transcript = transcript_hash(a.hello, b.hello)
    by_mallory = AUTH.encode(sign_auth(MALLORY, CHAIN_ID, transcript, ROLE_RESPONDER))
    with pytest.raises(HandshakeRejected) as exc:
        a.receive_auth(by_mallory)
    rejected(exc, Reason.BAD_SIGNATURE)


def test_rejects_signature_replayed_from_another_session():
    a1, b1 = pair()
    a1.receive_hello(b1.hello_bytes())
    recorded = b1.receive_hello(a1.hello_bytes())  # Bob's genuine signature of session 1
    a2, b2 = pair()
    # a replayer reuses Bob's session-1 hello and signature against a fresh dialer
    a2.receive_hello(b1.hello_bytes())
    with pytest.raises(HandshakeRejected) as exc:
        a2.receive_auth(recorded)
    rejected(exc, Reason.BAD_SIGNATURE)


def test_rejects_signature_reflected_to_its_signer():
    a, b = pair()
    own = a.receive_hello(b.hello_bytes())
    b.receive_hello(a.hello_bytes())
    with pytest.raises(HandshakeRejected) as exc:
        a.receive_auth(own)
    rejected(exc, Reason.BAD_SIGNATURE)


def test_rejects_signature_made_for_another_chain():
    a, b = pair()
    a.receive_hello(b.hello_bytes())
    b.receive_hello(a.hello_bytes())
    transcript = transcript_hash(a.hello, b.hello)
    other_chain = AUTH.encode(sign_auth(BOB, "custos-other-network", transcript, ROLE_RESPONDER))
    with pytest.raises(HandshakeRejected) as exc:
        a.receive_auth(other_chain)
    rejected(exc, Reason.BAD_SIGNATURE)


def test_rejects_signature_before_hello():
    a, b = pair()
    with pytest.raises(HandshakeRejected) as exc:
        a.receive_auth(AUTH.encode(Auth(b"\x00" * 64)))
    rejected(exc, Reason.MALFORMED)


def test_rejects_small_order_ephemeral_key():
    a, _ = pair()
    # Bob himself (a permitted key) picks an all-zero ephemeral key and signs honestly
    bad = replace(Handshake(BOB, CHAIN_ID, GENESIS, initiator=False, permitted=permitted).hello,
                  ephemeral=b"\x00" * 32)
    a.receive_hello(HELLO.encode(bad))
    transcript = transcript_hash(a.hello, bad)
    with pytest.raises(HandshakeRejected) as exc:
        a.receive_auth(AUTH.encode(sign_auth(BOB, CHAIN_ID, transcript, ROLE_RESPONDER)))
    rejected(exc, Reason.BAD_EPHEMERAL)


# ---------------------------------------------------------------- the sealed session


def sessions():
    return complete(*pair())


def test_rejects_tampered_frame():
    sa, sb = sessions()
    sealed = bytearray(sa.seal(b"vote"))
    sealed[0] ^= 1
    with pytest.raises(DecodeError):
        sb.open(bytes(sealed))


def test_rejects_replayed_frame():
    sa, sb = sessions()
    first = sa.seal(b"one")
    assert sb.open(first) == b"one"
    with pytest.raises(DecodeError):
        sb.open(first)


def test_rejects_reordered_frames():
    sa, sb = sessions()
    one, two = sa.seal(b"one"), sa.seal(b"two")
    with pytest.raises(DecodeError):
        sb.open(two)
    assert one != two


def test_rejects_frame_reflected_to_its_sender():
    sa, _ = sessions()
    with pytest.raises(DecodeError):
        sa.open(sa.seal(b"echo"))


def test_rejects_frame_from_another_session():
    sa1, _ = sessions()
    _, sb2 = sessions()
    with pytest.raises(DecodeError):
        sb2.open(sa1.seal(b"elsewhere"))
