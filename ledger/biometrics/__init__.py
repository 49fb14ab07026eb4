"""Biometric key binding: identity commitments that tolerate scan noise.

A child's identity commitment on the chain is an Ed25519 public key whose private key can only
be re-derived from a fresh scan of the child's eye plus helper data kept off the chain. See
``THREAT_MODEL.md`` in this directory for what each party can and cannot learn.

Public surface::

    new_secret() -> 39 random bytes: 32-byte salt, 56-bit biometric part (one per enrolment)
    enrol(captures, masks, secret) -> Enrolment(helper, commitment)   (one capture or several)
    recover(template, mask, helper, *, max_shift=8, expected_commitment=None)
        -> Recovered(secret, shift, distance)
    reproduce(...) -> secret (the same search)
    derive_signing_key(secret) -> nacl.signing.SigningKey
    transaction_key(secret) -> ledger.crypto.keys.SigningKey (the same key, to sign transactions)
    HelperData.to_bytes() / HelperData.from_bytes(data)
    Gallery: put / remove / identify / match / save / load
"""

from .errors import (
    BiometricError,
    GalleryError,
    InsufficientOverlap,
    InvalidSecret,
    InvalidTemplate,
    MalformedHelperData,
    ReproductionFailed,
    UnsupportedHelperVersion,
)
from .fuzzy_commitment import (
    BLOCKS,
    MAX_MATCH_HD,
    MAX_SHIFT,
    MIN_COMPARED_BITS,
    OUTER_REDUNDANCY,
    RS_K,
    Enrolment,
    Recovered,
    combine,
    enrol,
    recover,
    reproduce,
)
from .gallery import Gallery, GalleryMatch
from .helper_data import HELPER_VERSION, HelperData
from .keys import (
    BIO_BITS,
    KEY_BITS,
    SALT_BYTES,
    SECRET_BYTES,
    commitment_of,
    derive_signing_key,
    new_secret,
    transaction_key,
)
from .template import TEMPLATE_BITS, TEMPLATE_BYTES, as_bits, rotate

__all__ = [
    "BIO_BITS",
    "BLOCKS",
    "HELPER_VERSION",
    "KEY_BITS",
    "MAX_MATCH_HD",
    "MAX_SHIFT",
    "MIN_COMPARED_BITS",
    "OUTER_REDUNDANCY",
    "RS_K",
    "SALT_BYTES",
    "SECRET_BYTES",
    "TEMPLATE_BITS",
    "TEMPLATE_BYTES",
    "BiometricError",
    "Enrolment",
    "Gallery",
    "GalleryError",
    "GalleryMatch",
    "HelperData",
    "InsufficientOverlap",
    "InvalidSecret",
    "InvalidTemplate",
    "MalformedHelperData",
    "Recovered",
    "ReproductionFailed",
    "UnsupportedHelperVersion",
    "as_bits",
    "combine",
    "commitment_of",
    "derive_signing_key",
    "enrol",
    "new_secret",
    "recover",
    "reproduce",
    "rotate",
    "transaction_key",
]
