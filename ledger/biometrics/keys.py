"""Everything derived from the bound secret, each under its own domain tag.

The secret (:data:`SECRET_BYTES` = 39 bytes) has two parts: a 32-byte *salt* that the helper
data carries (and the card seals, see ``THREAT_MODEL.md``) and a 56-bit *biometric part* that
only a scan of the enrolled eye releases from the helper data. The signing key, the helper
data's check value, the bit permutation and the filler for occluded positions all come from
the whole secret through HKDF-SHA256 with distinct ``info`` tags, so no derived value says
anything about another and an enrolment is a deterministic function of (captures, secret),
which makes test vectors possible.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from nacl.signing import SigningKey

from .errors import InvalidSecret

if TYPE_CHECKING:
    from ledger.crypto.keys import SigningKey as TxSigningKey

SALT_BYTES = 32
BIO_BYTES = 7
SECRET_BYTES = SALT_BYTES + BIO_BYTES
BIO_BITS = BIO_BYTES * 8
#: security level against the chain and against a card holder (Ed25519, X25519); the secret
#: itself carries 312 random bits
KEY_BITS = 128

SIGNING_KEY_INFO = b"custos/biometric-key/v2"
CHECK_KEY_INFO = b"custos/biometric-check/v2"
PERMUTATION_SEED_INFO = b"custos/biometric-permutation/v2"
FILL_INFO = b"custos/biometric-fill/v2"


def new_secret() -> bytes:
    """A fresh secret for one enrolment (salt, then biometric part). Never reuse one: two
    enrolments sharing a secret share their permutation, and their helper data become linkable
    (see THREAT_MODEL.md)."""
    return os.urandom(SECRET_BYTES)


def split_secret(secret: bytes) -> tuple[bytes, bytes]:
    """(salt, biometric part) of a secret."""
    secret = check_secret(secret)
    return secret[:SALT_BYTES], secret[SALT_BYTES:]


def check_secret(secret: bytes) -> bytes:
    if not isinstance(secret, (bytes, bytearray)):
        raise InvalidSecret(f"secret must be bytes, got {type(secret).__name__}")
    if len(secret) != SECRET_BYTES:
        raise InvalidSecret(f"secret must be exactly {SECRET_BYTES} bytes, got {len(secret)}")
    return bytes(secret)


def hkdf(secret: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(secret)


def derive_signing_key(secret: bytes) -> SigningKey:
    """The Ed25519 key a terminal signs with after unlocking the child's helper data."""
    return SigningKey(hkdf(check_secret(secret), SIGNING_KEY_INFO, 32))


def transaction_key(secret: bytes) -> TxSigningKey:
    """The same key as :func:`derive_signing_key`, as the signer transactions are built with."""
    from ledger.crypto.keys import SigningKey as TxSigningKey

    return TxSigningKey(hkdf(check_secret(secret), SIGNING_KEY_INFO, 32))


def commitment_of(secret: bytes) -> bytes:
    """The identity commitment on the chain: the 32-byte Ed25519 public key."""
    return bytes(derive_signing_key(secret).verify_key)


def check_value(secret: bytes, authenticated: bytes) -> bytes:
    """HMAC-SHA256 over the helper data's other fields under a secret-derived key.

    Unlike a bare hash of the secret this also binds the helper data itself: flipping even
    bits the error correction would absorb makes the check fail. Unlike storing the public
    key, it does not tie a card's helper data to a chain record for someone without the eye.
    """
    key = hkdf(secret, CHECK_KEY_INFO, 32)
    return hmac.new(key, authenticated, hashlib.sha256).digest()
