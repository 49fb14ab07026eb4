"""Tags and hashes that let the chain compare personal data without holding it.

* A **child tag** names a child without its identity id: erasure orders, tombstones and the
  access log carry the tag, so once a child's records are erased nothing left on a node holds the
  id. The tag is a hash of a random 128-bit id, so it cannot be reversed by enumeration.
* A **companion tag** stands for the accompanying adult's document number. It is keyed with the
  child's *pseudonym key*: 32 random bytes chosen at enrolment, held by the enrolment authority,
  the child's guardians and (sealed) the child's card, never by the chain. A guardian naming a
  companion in a consent and a terminal reading the same document at the border compute the same
  tag; a reader of the chain alone cannot test guesses (a dictionary of document numbers is
  useless without the key), and tags of one adult differ from child to child.
* An **order hash** commits to an off-chain reference (a court order, an erasure order) with a
  random salt the issuer keeps: shown the reference and the salt, anyone can check it; without
  them the hash reveals nothing, however guessable the reference.

All functions are pure; salts and keys are drawn by the callers (clients), never here.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata

from ledger.errors import InvalidValue
from ledger.hashing import tagged_hash

TAG_CHILD = b"custos/child"
TAG_ORDER = b"custos/order"
COMPANION_DOMAIN = b"custos/companion/v1\x00"
PSEUDONYM_KEY_BYTES = 32
ORDER_SALT_BYTES = 16
COMPANION_TAG_BYTES = 16
MAX_DOCUMENT_CHARS = 64
MAX_REFERENCE_BYTES = 1024


def child_tag(identity: bytes) -> bytes:
    """The tag that names a child in erasure orders, tombstones and the access log."""
    if len(identity) != 16:
        raise InvalidValue("an identity id is 16 bytes")
    return tagged_hash(TAG_CHILD, identity)


def normalise_document(text: str) -> str:
    """One spelling per document: ``"md ab-123 456"`` and ``"MDAB123456"`` are the same.

    Unicode compatibility forms are folded (NFKC), case is folded to upper, and spaces,
    hyphens, dots and slashes are dropped. The issuing country belongs in the text (for example
    ``MDA AB123456``): two countries may issue the same number.
    """
    folded = unicodedata.normalize("NFKC", text).upper()
    kept = "".join(ch for ch in folded if ch not in " \t-./")
    if not kept:
        raise InvalidValue("the document number is empty")
    if len(kept) > MAX_DOCUMENT_CHARS:
        raise InvalidValue(f"the document number is longer than {MAX_DOCUMENT_CHARS} characters")
    if not all(ch.isalnum() for ch in kept):
        raise InvalidValue("a document number has letters and digits only")
    return kept


def companion_tag(pseudonym_key: bytes, document: str) -> bytes:
    """The 16-byte tag of an accompanying adult's document, keyed with the child's pseudonym key."""
    if len(pseudonym_key) != PSEUDONYM_KEY_BYTES:
        raise InvalidValue(f"a pseudonym key is {PSEUDONYM_KEY_BYTES} bytes")
    message = COMPANION_DOMAIN + normalise_document(document).encode()
    return hmac.new(pseudonym_key, message, hashlib.sha256).digest()[:COMPANION_TAG_BYTES]


def order_hash(salt: bytes, reference: str) -> bytes:
    """The salted hash of an off-chain order reference (court order, erasure order)."""
    if len(salt) != ORDER_SALT_BYTES:
        raise InvalidValue(f"an order salt is {ORDER_SALT_BYTES} bytes")
    raw = reference.strip().encode()
    if not raw:
        raise InvalidValue("the order reference is empty")
    if len(raw) > MAX_REFERENCE_BYTES:
        raise InvalidValue(f"the order reference is longer than {MAX_REFERENCE_BYTES} bytes")
    return tagged_hash(TAG_ORDER, salt + raw)
