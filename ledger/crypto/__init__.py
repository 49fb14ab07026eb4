"""Keys and signatures: Ed25519 signing bound to a chain id and a domain (key files: node/keyfile.py)."""

from ledger.crypto.keys import (
    PUBLIC_KEY_SIZE,
    SIGNATURE_SIZE,
    SigningKey,
    sign_bytes,
    verify,
)

__all__ = ["PUBLIC_KEY_SIZE", "SIGNATURE_SIZE", "SigningKey", "sign_bytes", "verify"]
