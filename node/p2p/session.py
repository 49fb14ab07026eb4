"""The authenticated channel after a handshake: per-direction keys and sealed frames.

The handshake's hellos carry ephemeral X25519 keys, and both signatures cover them (they are
part of the transcript), so only the two authenticated nodes can compute the shared secret.
From it and the transcript hash come two keys, one per direction. Every frame after the
handshake is sealed with ChaCha20-Poly1305 (IETF) under its direction's key and a counter
nonce, so an on-path attacker can neither read nor inject, alter, replay, reorder or drop a
frame without the connection noticing (the counter must match exactly: websockets run over
TCP, which keeps order).
"""

from __future__ import annotations

import hashlib

import nacl.bindings
import nacl.exceptions

from ledger.errors import DecodeError
from node.p2p.errors import HandshakeRejected, Reason

KEY_SIZE = 32
TAG_SIZE = 16
_PERSON = b"custos-p2p-keys"
_MAX_COUNTER = 2**64 - 1


def ephemeral_keypair(secret: bytes) -> tuple[bytes, bytes]:
    """``(secret, public)`` for an X25519 key from 32 random bytes."""
    if len(secret) != KEY_SIZE:
        raise ValueError("an X25519 secret is 32 bytes")
    return secret, nacl.bindings.crypto_scalarmult_base(secret)


def derive_keys(secret: bytes, their_ephemeral: bytes, transcript: bytes, *, initiator: bool) -> tuple[bytes, bytes]:
    """``(send_key, receive_key)`` from our ephemeral secret, theirs public and the transcript."""
    try:
        shared = nacl.bindings.crypto_scalarmult(secret, their_ephemeral)
    except (nacl.exceptions.RuntimeError, nacl.exceptions.ValueError, ValueError, TypeError):
        # libsodium refuses points of small order (the shared secret would be all zeros)
        raise HandshakeRejected(Reason.BAD_EPHEMERAL, "the peer's ephemeral key is unusable") from None
    okm = hashlib.blake2b(shared + transcript, digest_size=2 * KEY_SIZE, person=_PERSON).digest()
    initiator_to_responder, responder_to_initiator = okm[:KEY_SIZE], okm[KEY_SIZE:]
    if initiator:
        return initiator_to_responder, responder_to_initiator
    return responder_to_initiator, initiator_to_responder


class _Direction:
    __slots__ = ("_counter", "key")

    def __init__(self, key: bytes) -> None:
        self.key = key
        self._counter = 0

    def next_nonce(self) -> bytes:
        if self._counter >= _MAX_COUNTER:  # pragma: no cover - 2**64 frames
            raise DecodeError("frame counter exhausted; the connection must be renewed")
        nonce = b"\x00\x00\x00\x00" + self._counter.to_bytes(8, "little")
        self._counter += 1
        return nonce


class Session:
    """The result of a successful handshake: who the peer is, and how to seal and open frames.

    ``initiator`` is True when this node dialed the connection.
    """

    __slots__ = ("_receive", "_send", "initiator", "peer_key", "transcript")

    def __init__(self, peer_key: bytes, *, initiator: bool, transcript: bytes, send_key: bytes,
                 receive_key: bytes) -> None:
        self.peer_key = peer_key
        self.initiator = initiator
        self.transcript = transcript
        self._send = _Direction(send_key)
        self._receive = _Direction(receive_key)

    def seal(self, plaintext: bytes) -> bytes:
        nonce = self._send.next_nonce()
        return nacl.bindings.crypto_aead_chacha20poly1305_ietf_encrypt(plaintext, None, nonce, self._send.key)

    def open(self, sealed: bytes) -> bytes:
        """The plaintext of the next frame; :class:`DecodeError` if it was not sealed by the peer
        for exactly this position in the stream."""
        if len(sealed) < TAG_SIZE:
            raise DecodeError("frame shorter than its authentication tag")
        nonce = self._receive.next_nonce()
        try:
            return nacl.bindings.crypto_aead_chacha20poly1305_ietf_decrypt(sealed, None, nonce, self._receive.key)
        except (nacl.exceptions.CryptoError, ValueError):
            raise DecodeError("frame failed authentication") from None
