"""The peer handshake: mutual authentication bound to the chain, without any I/O.

Both ends of a new connection send a :class:`Hello` at once::

    Hello = {version, key, chain_id, genesis_hash, challenge (32 fresh random bytes),
             ephemeral (a fresh X25519 public key)}

Each end checks the other's hello (:func:`check_hello`: same chain and genesis, a permitted key,
the key configured for the address it dialed, not its own challenge reflected back), then signs,
with its node key in the :data:`~ledger.crypto.keys.DOMAIN_PEER` domain bound to the chain id,
the digest of the *transcript* (both hellos in initiator, responder order: both challenges, both
keys, both ephemeral keys, chain id and genesis hash) together with its own role, and sends
that as :class:`Auth`. Each verifies the other's signature (:func:`check_auth`). A signature
thus proves possession of the key, for this chain, for this very connection (the other side's
fresh challenge is in it), in this role; it cannot be replayed into another connection nor
reflected back to its signer. The ephemeral keys then give the connection's frame keys
(:mod:`node.p2p.session`).

:class:`Handshake` is the state machine one end runs; it only turns bytes into bytes, so the
tests drive it without sockets.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from ledger.crypto.keys import DOMAIN_PEER, SigningKey, verify
from ledger.encoding import Bytes, Int, Schema, Str, encode
from ledger.errors import DecodeError
from ledger.hashing import tagged_hash
from node.p2p.errors import HandshakeRejected, Reason
from node.p2p.session import Session, derive_keys, ephemeral_keypair

VERSION = 1
#: no handshake message is larger than this (a hello is about 200 bytes)
MAX_HANDSHAKE_BYTES = 512

ROLE_INITIATOR = "initiator"
ROLE_RESPONDER = "responder"

TAG_TRANSCRIPT = b"custos/p2p-transcript"
TAG_AUTH = b"custos/p2p-auth"


@dataclass(frozen=True, slots=True)
class Hello:
    version: int
    key: bytes
    chain_id: str
    genesis_hash: bytes
    challenge: bytes
    ephemeral: bytes


HELLO = Schema(Hello, {
    "version": Int(min=0, max=255),
    "key": Bytes(32),
    "chain_id": Str(min=1, max=64),
    "genesis_hash": Bytes(32),
    "challenge": Bytes(32),
    "ephemeral": Bytes(32),
})


@dataclass(frozen=True, slots=True)
class Auth:
    signature: bytes


AUTH = Schema(Auth, {"signature": Bytes(64)})


def transcript_hash(initiator: Hello, responder: Hello) -> bytes:
    """The digest of both hellos, initiator first: what both signatures are about."""
    return tagged_hash(TAG_TRANSCRIPT, encode([HELLO.wire(initiator), HELLO.wire(responder)]))


def auth_digest(transcript: bytes, role: str) -> bytes:
    """What the end in ``role`` signs: the transcript and its own role."""
    return tagged_hash(TAG_AUTH, encode([transcript, role]))


def check_hello(ours: Hello, theirs: Hello, *, permitted: Callable[[bytes], bool],
                expected_key: bytes | None) -> None:
    """Raise :class:`HandshakeRejected` unless ``theirs`` may go on to authenticate."""
    # the same protocol version
    if theirs.version != VERSION:
        raise HandshakeRejected(Reason.VERSION, f"version {theirs.version}, this node speaks {VERSION}")
    # not a connection to ourselves (a peer entry pointing back at this node)
    if theirs.key == ours.key:
        raise HandshakeRejected(Reason.SELF, "the peer presents this node's own key")
    # our own challenge or ephemeral key sent back: a reflection, never a fresh peer
    if theirs.challenge == ours.challenge or theirs.ephemeral == ours.ephemeral:
        raise HandshakeRejected(Reason.REFLECTED, "the peer echoed this node's challenge")
    # the same network ...
    if theirs.chain_id != ours.chain_id:
        raise HandshakeRejected(Reason.WRONG_CHAIN, f"chain id {theirs.chain_id!r}, expected {ours.chain_id!r}")
    # ... from the same genesis
    if theirs.genesis_hash != ours.genesis_hash:
        raise HandshakeRejected(Reason.WRONG_GENESIS,
                                f"genesis {theirs.genesis_hash.hex()}, expected {ours.genesis_hash.hex()}")
    # a dialed address must answer with the key configured for it
    if expected_key is not None and theirs.key != expected_key:
        raise HandshakeRejected(Reason.UNEXPECTED_KEY,
                                f"key {theirs.key.hex()[:16]}..., expected {expected_key.hex()[:16]}...")
    # only permitted keys take part in the network
    if not permitted(theirs.key):
        raise HandshakeRejected(Reason.UNKNOWN_KEY, f"key {theirs.key.hex()[:16]}... is not permitted")


def sign_auth(key: SigningKey, chain_id: str, transcript: bytes, role: str) -> Auth:
    return Auth(key.sign(DOMAIN_PEER, chain_id, auth_digest(transcript, role)))


def check_auth(theirs: Hello, auth: Auth, transcript: bytes, their_role: str) -> None:
    """Raise :class:`HandshakeRejected` unless ``auth`` is the peer's signature of this transcript."""
    digest = auth_digest(transcript, their_role)
    if not verify(theirs.key, DOMAIN_PEER, theirs.chain_id, digest, auth.signature):
        raise HandshakeRejected(Reason.BAD_SIGNATURE, "the peer's handshake signature does not verify")


def _decode(schema: Schema, data: bytes, what: str):
    try:
        return schema.decode(data, max_size=MAX_HANDSHAKE_BYTES)
    except DecodeError as exc:
        raise HandshakeRejected(Reason.MALFORMED, f"{what}: {exc}") from None


class Handshake:
    """One end of one handshake: ``hello_bytes``, then ``receive_hello``, then ``receive_auth``.

    ``permitted(key)`` says whether a key may join; ``expected_key`` is the key configured for
    a dialed address (None for an inbound connection). ``random`` supplies the fresh challenge
    and ephemeral secret (tests may pass a deterministic source).
    """

    def __init__(self, key: SigningKey, chain_id: str, genesis_hash: bytes, *, initiator: bool,
                 permitted: Callable[[bytes], bool], expected_key: bytes | None = None,
                 random: Callable[[int], bytes] = os.urandom) -> None:
        self._key = key
        self._initiator = initiator
        self._permitted = permitted
        self._expected_key = expected_key
        self._secret, ephemeral = ephemeral_keypair(random(32))
        self.hello = Hello(version=VERSION, key=key.public, chain_id=chain_id, genesis_hash=genesis_hash,
                           challenge=random(32), ephemeral=ephemeral)
        self._theirs: Hello | None = None
        self._transcript: bytes | None = None

    @property
    def initiator(self) -> bool:
        return self._initiator

    @property
    def peer_key(self) -> bytes | None:
        """The key the peer claims (known once its hello is in; proven only by ``receive_auth``)."""
        return self._theirs.key if self._theirs is not None else None

    def hello_bytes(self) -> bytes:
        return HELLO.encode(self.hello)

    def receive_hello(self, data: bytes) -> bytes:
        """Check the peer's hello; return our :class:`Auth` to send."""
        if self._theirs is not None:
            raise HandshakeRejected(Reason.MALFORMED, "a second hello")
        theirs = _decode(HELLO, data, "hello")
        try:
            check_hello(self.hello, theirs, permitted=self._permitted, expected_key=self._expected_key)
        except HandshakeRejected as exc:
            exc.peer_key = theirs.key
            raise
        self._theirs = theirs
        if self._initiator:
            self._transcript = transcript_hash(self.hello, theirs)
        else:
            self._transcript = transcript_hash(theirs, self.hello)
        role = ROLE_INITIATOR if self._initiator else ROLE_RESPONDER
        return AUTH.encode(sign_auth(self._key, self.hello.chain_id, self._transcript, role))

    def receive_auth(self, data: bytes) -> Session:
        """Verify the peer's signature; return the established :class:`Session`."""
        if self._theirs is None or self._transcript is None:
            raise HandshakeRejected(Reason.MALFORMED, "a signature before the hello")
        auth = _decode(AUTH, data, "auth")
        their_role = ROLE_RESPONDER if self._initiator else ROLE_INITIATOR
        try:
            check_auth(self._theirs, auth, self._transcript, their_role)
        except HandshakeRejected as exc:
            exc.peer_key = self._theirs.key
            raise
        send_key, receive_key = derive_keys(self._secret, self._theirs.ephemeral, self._transcript,
                                            initiator=self._initiator)
        self._secret = b""
        return Session(self._theirs.key, initiator=self._initiator, transcript=self._transcript,
                       send_key=send_key, receive_key=receive_key)
