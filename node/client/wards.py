"""A ward file: what a guardian keeps about a child, given by the enrolment authority.

::

    {"format": "custos-ward/1", "identity": "<16 bytes hex>", "pseudonym_key": "<32 bytes hex>"}

The pseudonym key lets the guardian name an accompanying adult in a travel consent by the same
keyed tag a terminal computes from the child's card (:func:`ledger.privacy.tags.companion_tag`),
while the chain holds only the tag. The file is private: written 0600, like key files.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path

from ledger.errors import CustosError
from ledger.privacy.tags import PSEUDONYM_KEY_BYTES
from ledger.storage.files import write_atomically
from node.keyfile import read_bounded

WARD_FORMAT = "custos-ward/1"
_MAX_FILE = 4096


class WardFileError(CustosError):
    code = "ward-file"


def write_ward(path: Path, identity: bytes, pseudonym_key: bytes) -> None:
    doc = {"format": WARD_FORMAT, "identity": identity.hex(), "pseudonym_key": pseudonym_key.hex()}
    write_atomically(path, json.dumps(doc, indent=2).encode() + b"\n", mode=0o600)


def read_ward(path: Path) -> tuple[bytes, bytes]:
    """(identity id, pseudonym key)."""
    try:
        raw = read_bounded(path, _MAX_FILE)  # /dev/zero is refused, not read to the end
    except OSError as exc:
        if exc.errno != errno.EFBIG:
            raise WardFileError(f"cannot read ward file {path}: {exc.strerror}") from None
        raw = b""  # too large: not a ward file
    try:
        doc = json.loads(raw) if raw else None
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or doc.get("format") != WARD_FORMAT:
        raise WardFileError(f"{path} is not a ward file ({WARD_FORMAT})")
    try:
        identity, key = bytes.fromhex(doc["identity"]), bytes.fromhex(doc["pseudonym_key"])
    except (KeyError, TypeError, ValueError):
        raise WardFileError(f"{path}: identity and pseudonym_key must be hex") from None
    if len(identity) != 16 or len(key) != PSEUDONYM_KEY_BYTES:
        raise WardFileError(f"{path}: a 16-byte identity and a {PSEUDONYM_KEY_BYTES}-byte key are expected")
    return identity, key
