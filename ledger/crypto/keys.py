"""Ed25519 signatures that bind the chain id and the signed object's domain.

What is signed is never the raw object: it is the canonical encoding of
``["custos-sig/1", domain, chain_id, digest]``. A signature made for one network, or for one
kind of object, therefore never verifies as another (a vote cannot pass as a transaction, a
testnet approval cannot be replayed on the production chain).
"""

from __future__ import annotations

import nacl.bindings
import nacl.exceptions
import nacl.signing

from ledger.encoding import encode
from ledger.errors import CryptoError

PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
SEED_SIZE = 32

# Signature domains: one per kind of signed object.
DOMAIN_TX = "tx"
DOMAIN_VOTE = "vote"
DOMAIN_PROPOSAL = "proposal"
DOMAIN_PEER = "peer-handshake"
DOMAIN_READ = "read-request"
DOMAIN_SUBSCRIBE = "subscribe"

_SIG_VERSION = "custos-sig/1"


def sign_bytes(domain: str, chain_id: str, digest: bytes) -> bytes:
    """The exact message an Ed25519 key signs for ``digest`` in ``domain`` on ``chain_id``."""
    return encode([_SIG_VERSION, domain, chain_id, digest])


class SigningKey:
    """An Ed25519 private key. ``public`` is the 32-byte public key used as identity on chain."""

    __slots__ = ("_sk", "public")

    def __init__(self, seed: bytes) -> None:
        if not isinstance(seed, bytes) or len(seed) != SEED_SIZE:
            raise CryptoError("an Ed25519 seed is exactly 32 bytes")
        self._sk = nacl.signing.SigningKey(seed)
        self.public: bytes = bytes(self._sk.verify_key)

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(bytes(nacl.signing.SigningKey.generate()))

    @property
    def seed(self) -> bytes:
        return bytes(self._sk)

    def sign(self, domain: str, chain_id: str, digest: bytes) -> bytes:
        return self._sk.sign(sign_bytes(domain, chain_id, digest)).signature

    def sign_raw(self, message: bytes) -> bytes:
        return self._sk.sign(message).signature

    def __repr__(self) -> str:  # never print the seed
        return f"SigningKey(public={self.public.hex()[:16]}...)"


def verify_raw(public: bytes, message: bytes, signature: bytes) -> bool:
    """Check an Ed25519 signature; False for any malformed key or signature."""
    if len(public) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        nacl.bindings.crypto_sign_open(signature + message, public)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError):
        return False
    return True


def verify(public: bytes, domain: str, chain_id: str, digest: bytes, signature: bytes) -> bool:
    return verify_raw(public, sign_bytes(domain, chain_id, digest), signature)
