"""SHA-256 with a domain-separation tag per object type.

``tagged_hash(TAG, data)`` = SHA-256(len(tag) || tag || data), so a transaction can never be
mistaken for a header or a vote that happens to share its bytes. Merkle trees are the exception:
they follow RFC 6962 (leaf prefix 0x00, node prefix 0x01) so that proofs are the standard ones.
"""

from __future__ import annotations

import hashlib

HASH_SIZE = 32

# One tag per object type; never reuse a tag for a different structure.
TAG_TX = b"custos/tx"
TAG_HEADER = b"custos/header"
TAG_COMMIT = b"custos/commit"
TAG_EVIDENCE = b"custos/evidence"
TAG_VALIDATORS = b"custos/validators"
TAG_GENESIS = b"custos/genesis"


_PREFIXED: dict[bytes, hashlib._Hash] = {}


def tagged_state(tag: bytes) -> hashlib._Hash:
    """The SHA-256 state after ``len(tag) || tag``, kept for every later hash under the tag:
    copy it and add the data (what :func:`tagged_hash` does, for a loop that hashes many)."""
    start = _PREFIXED.get(tag)
    if start is None:
        start = _PREFIXED[tag] = hashlib.sha256(len(tag).to_bytes(1, "big") + tag)
    return start


def tagged_hash(tag: bytes, data: bytes) -> bytes:
    start = _PREFIXED.get(tag)
    if start is None:
        start = tagged_state(tag)
    h = start.copy()
    h.update(data)
    return h.digest()
