"""A child's card and an eye scan, as files, and the one place a biometric key is recovered.

* A **scan file** holds an iris code and its occlusion mask::

      {"format": "custos-scan/1", "code": "<256 bytes hex>", "mask": "<256 bytes hex>"}

  or is a template in the open-iris layout (``docs/iris-templates.md``), converted on reading.

* A **card file** is what the child carries (printed as a QR code)::

      {"format": "custos-card/2", "identity": "<16 bytes hex>", "key_id": "<8 bytes hex>",
       "sealed": "<hex>"}

  ``sealed`` is an X25519 sealed box (libsodium ``crypto_box_seal``: an ephemeral key, then
  XSalsa20-Poly1305) addressed to a *card-opening key*, over the canonical msgpack map
  ``{"helper": <helper data>, "identity": <16 bytes>, "pseudonym_key": <32 bytes>, "v": 2}``.
  Whoever holds the card but not a card-opening key learns nothing from it (THREAT_MODEL.md,
  attacker A2); registered terminals and the enrolment authority hold the key.

* A **card-opening key** is an ordinary Custos key file (``custos keys new``), encrypted at rest
  like every key file, kept for this purpose alone: its Ed25519 key is mapped to X25519 as
  libsodium's ``crypto_sign_ed25519_*_to_curve25519`` do. Its *key id* is the first 8 bytes of
  SHA-256 over the X25519 public key. Rotation: the authority starts sealing to a new key;
  terminals hold the old and the new one (the card names which it needs) until every card
  sealed to the old key has been re-issued.

:func:`unlock_card` is the seam between the terminal and the biometric scheme of
:mod:`ledger.biometrics`: a scan plus a card (plus a card-opening key) give the child's signing
key, whose public key is the identity commitment enrolled on the chain, and the child's
pseudonym key.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgpack
import numpy as np
from nacl.bindings import crypto_sign_ed25519_pk_to_curve25519
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox

from ledger.biometrics import (
    MAX_SHIFT,
    TEMPLATE_BYTES,
    HelperData,
    MalformedHelperData,
    enrol,
    new_secret,
    recover,
)
from ledger.biometrics.fuzzy_commitment import enrolled_reference
from ledger.biometrics.open_iris import OpenIrisError, from_open_iris
from ledger.biometrics.template import pack_bits
from ledger.crypto.keys import SigningKey
from ledger.errors import CustosError
from ledger.storage.files import write_atomically
from node.keyfile import read_bounded

SCAN_FORMAT = "custos-scan/1"
CARD_FORMAT = "custos-card/2"
CARD_CONTENT_VERSION = 2
KEY_ID_BYTES = 8
PSEUDONYM_KEY_BYTES = 32
IDENTITY_BYTES = 16
_MAX_FILE = 256 * 1024
_MAX_SEALED = 2048


class CardError(CustosError):
    code = "card"


def _read_json(path: Path, what: str) -> dict:
    try:
        raw = read_bounded(path, _MAX_FILE)  # /dev/zero is refused, not read to the end
    except OSError as exc:
        if exc.errno == errno.EFBIG:
            raise CardError(f"{path} is too large to be a {what}") from None
        raise CardError(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        doc = json.loads(raw)
    except ValueError:
        raise CardError(f"{path} is not a {what} (not JSON)") from None
    if not isinstance(doc, dict):
        raise CardError(f"{path} is not a {what}")
    return doc


def _write_json(path: Path, doc: dict) -> None:
    """Write atomically: a crash leaves the old file or the new."""
    write_atomically(path, json.dumps(doc, indent=2).encode() + b"\n")


def _hex(doc: dict, name: str, size: int | None, path: Path) -> bytes:
    try:
        value = bytes.fromhex(doc[name])
    except (KeyError, TypeError, ValueError):
        raise CardError(f"{path}: field {name!r} is missing or not hex") from None
    if size is not None and len(value) != size:
        raise CardError(f"{path}: field {name!r} must be {size} bytes")
    return value


# --------------------------------------------------------------------------- scans


def write_scan(path: Path, code: bytes, mask: bytes) -> None:
    if len(code) != TEMPLATE_BYTES or len(mask) != TEMPLATE_BYTES:
        raise CardError(f"an iris code and its mask are {TEMPLATE_BYTES} bytes each")
    _write_json(path, {"format": SCAN_FORMAT, "code": code.hex(), "mask": mask.hex()})


def read_scan(path: Path) -> tuple[bytes, bytes]:
    """(code, mask), packed, from a custos-scan/1 file or an open-iris template file."""
    doc = _read_json(path, "scan file")
    if doc.get("format") == SCAN_FORMAT:
        return _hex(doc, "code", TEMPLATE_BYTES, path), _hex(doc, "mask", TEMPLATE_BYTES, path)
    if "iris_codes" in doc:
        try:
            code, mask = from_open_iris(doc)
        except OpenIrisError as exc:
            raise CardError(f"{path}: {exc}") from None
        return pack_bits(code), pack_bits(mask)
    raise CardError(f"{path} is not a scan file ({SCAN_FORMAT} or an open-iris template expected)")


# --------------------------------------------------------------------------- card-opening keys


def card_public_key(signing_public: bytes) -> bytes:
    """The X25519 public key of a card-opening key, from its Ed25519 public key; a CardError for
    32 bytes that are no Ed25519 public key (libsodium refuses to convert them)."""
    try:
        return crypto_sign_ed25519_pk_to_curve25519(bytes(signing_public))
    except CryptoError:  # PyNaCl's, raised for a point that is not on the curve
        raise CardError(f"{bytes(signing_public).hex()} is not a card-opening public key") from None


def key_id(x25519_public: bytes) -> bytes:
    return hashlib.sha256(b"custos-card-key/1\x00" + bytes(x25519_public)).digest()[:KEY_ID_BYTES]


@dataclass(frozen=True)
class CardKeys:
    """The card-opening keys a terminal or the authority holds, by key id."""

    keys: dict[bytes, PrivateKey]

    @classmethod
    def from_signing_keys(cls, keys: Iterable[SigningKey]) -> CardKeys:
        out = {}
        for key in keys:
            private = PrivateKey(_curve_private(key))
            out[key_id(bytes(private.public_key))] = private
        return cls(out)

    def ids(self) -> list[str]:
        return sorted(k.hex() for k in self.keys)


def _curve_private(key: SigningKey) -> bytes:
    from nacl.bindings import crypto_sign_ed25519_sk_to_curve25519, crypto_sign_seed_keypair

    _, secret = crypto_sign_seed_keypair(key.seed)
    return crypto_sign_ed25519_sk_to_curve25519(secret)


# --------------------------------------------------------------------------- cards


@dataclass(frozen=True)
class CardContents:
    """What a card-opening key reveals: the identity, the helper data, the pseudonym key."""

    identity: bytes
    helper: bytes
    pseudonym_key: bytes


def seal_card(identity: bytes, helper: bytes, pseudonym_key: bytes, card_key_public: bytes) -> dict:
    """The card document for ``identity``, sealed to a card-opening key (its Ed25519 public key)."""
    if len(identity) != IDENTITY_BYTES:
        raise CardError(f"an identity id is {IDENTITY_BYTES} bytes")
    if len(pseudonym_key) != PSEUDONYM_KEY_BYTES:
        raise CardError(f"a pseudonym key is {PSEUDONYM_KEY_BYTES} bytes")
    HelperData.from_bytes(helper)  # never seal something no terminal could use
    public = card_public_key(card_key_public)
    content = msgpack.packb({"helper": bytes(helper), "identity": bytes(identity),
                             "pseudonym_key": bytes(pseudonym_key), "v": CARD_CONTENT_VERSION},
                            use_bin_type=True)
    sealed = SealedBox(PublicKey(public)).encrypt(content)
    return {"format": CARD_FORMAT, "identity": identity.hex(), "key_id": key_id(public).hex(),
            "sealed": bytes(sealed).hex()}


def write_card(path: Path, identity: bytes, helper: bytes, pseudonym_key: bytes, card_key_public: bytes) -> None:
    _write_json(path, seal_card(identity, helper, pseudonym_key, card_key_public))


def read_card(path: Path) -> tuple[bytes, dict]:
    """(identity id, the card document), without opening it."""
    doc = _read_json(path, "card file")
    if doc.get("format") != CARD_FORMAT:
        found = doc.get("format")
        hint = "; cards of format custos-card/1 carry unsealed helper data: re-enrol the child" \
            if found == "custos-card/1" else ""
        raise CardError(f"{path} is not a card file ({CARD_FORMAT} expected, found {found!r}){hint}")
    identity = _hex(doc, "identity", IDENTITY_BYTES, path)
    _hex(doc, "key_id", KEY_ID_BYTES, path)
    if len(_hex(doc, "sealed", None, path)) > _MAX_SEALED:
        raise CardError(f"{path}: the sealed part is too large")
    return identity, doc


def open_card(doc: dict, keys: CardKeys, where: str = "card") -> CardContents:
    """Open a card document with the card-opening key it names."""
    wanted = bytes.fromhex(doc["key_id"])
    private = keys.keys.get(wanted)
    if private is None:
        raise CardError(f"{where} is sealed to card-opening key {wanted.hex()}, which this terminal does not "
                        f"hold (it holds {', '.join(keys.ids()) or 'none'})")
    try:
        content = SealedBox(private).decrypt(bytes.fromhex(doc["sealed"]))
        obj = msgpack.unpackb(content, raw=False, strict_map_key=True, max_bin_len=4096, max_str_len=16,
                              max_array_len=0, max_map_len=4, max_ext_len=0)
    except (CryptoError, ValueError, TypeError, msgpack.UnpackException):
        raise CardError(f"{where} cannot be opened: altered, or not sealed to key {wanted.hex()}") from None
    if not isinstance(obj, dict) or sorted(obj) != ["helper", "identity", "pseudonym_key", "v"] \
            or obj["v"] != CARD_CONTENT_VERSION:
        raise CardError(f"{where} holds an unknown content layout")
    identity, helper, pseudonym = obj["identity"], obj["helper"], obj["pseudonym_key"]
    if not all(type(v) is bytes for v in (identity, helper, pseudonym)) or len(pseudonym) != PSEUDONYM_KEY_BYTES:
        raise CardError(f"{where} holds malformed fields")
    if identity.hex() != doc["identity"]:
        raise CardError(f"{where} names identity {doc['identity']} outside and {identity.hex()} inside")
    try:
        HelperData.from_bytes(helper)
    except MalformedHelperData as exc:
        raise CardError(f"{where} holds malformed helper data: {exc}") from None
    return CardContents(identity, helper, pseudonym)


# --------------------------------------------------------------------------- keys


@dataclass(frozen=True)
class Enrolled:
    """What enrolling an eye gives the enrolling code (the secret lives only inside the call
    that makes this): the helper data, the child's signing key, and the reference and secret
    the authority's gallery needs once."""

    helper: HelperData
    key: SigningKey
    secret: bytes

    @property
    def helper_bytes(self) -> bytes:
        return self.helper.to_bytes()

    def reference(self) -> bytes:
        return pack_bits(enrolled_reference(self.helper, self.secret))


def enrol_scans(scans: Sequence[tuple[bytes, bytes]], max_shift: int = MAX_SHIFT) -> Enrolled:
    """Bind a fresh secret to one or more captures of one eye (three are recommended).

    Raises :class:`ledger.biometrics.BiometricError` if the captures cannot be enrolled.
    """
    from ledger.biometrics import transaction_key

    secret = new_secret()
    enrolment = enrol([c for c, _ in scans], [m for _, m in scans], secret, max_shift=max_shift)
    return Enrolled(enrolment.helper, transaction_key(secret), secret)


def new_pseudonym_key() -> bytes:
    """A child's pseudonym key (random at first enrolment, kept across re-enrolments)."""
    return os.urandom(PSEUDONYM_KEY_BYTES)


@dataclass(frozen=True)
class Unlocked:
    """A card opened with a fresh scan: the child's identity, signing key and pseudonym key,
    and the angular shift at which the scan matched."""

    identity: bytes
    key: SigningKey
    pseudonym_key: bytes
    shift: int
    distance: float


def unlock_card(code: bytes, mask: bytes, card: dict, keys: CardKeys, *, max_shift: int = MAX_SHIFT,
                where: str = "card") -> Unlocked:
    """Open a card and recover the child's signing key from a fresh scan.

    Raises :class:`CardError` (card unreadable, or sealed to a key not held) or
    :class:`ledger.biometrics.ReproductionFailed` (another eye, a scan too noisy, or a card that
    was altered).
    """
    from ledger.biometrics import transaction_key

    contents = open_card(card, keys, where)
    found = recover(code, mask, HelperData.from_bytes(contents.helper), max_shift=max_shift)
    return Unlocked(contents.identity, transaction_key(found.secret), contents.pseudonym_key, found.shift,
                    found.distance)


def unlock_files(scan_path: Path, card_path: Path, keys: CardKeys, *, max_shift: int = MAX_SHIFT) -> Unlocked:
    """:func:`unlock_card` from a scan file and a card file."""
    code, mask = read_scan(scan_path)
    _, doc = read_card(card_path)
    return unlock_card(code, mask, doc, keys, max_shift=max_shift, where=str(card_path))


# --------------------------------------------------------------------------- synthetic eyes


def synthetic_eye(seed: int, rescans: int = 1, *, flip_rate: float = 0.06, captures: int = 1,
                  rescan_shift: int = 0) -> list[tuple[bytes, bytes]]:
    """Enrolment captures and ``rescans`` noisy rescans of one made-up eye, for demos and tests.

    Returns ``captures`` enrolment captures followed by the rescans. The code is random, the mask
    hides an eyelid band; every capture flips ``flip_rate`` of the bits, and each rescan is
    turned by ``rescan_shift`` angular positions (a head tilt). (``scripts/biometric_dataset.py``
    models real iris statistics; this needs only to be recognisable by the error correction.)
    """
    from ledger.biometrics import rotate

    rng = np.random.default_rng(seed)
    code = rng.integers(0, 2, 2048, dtype=np.uint8)
    mask = np.ones(2048, dtype=np.uint8)
    mask[1792:1920] = 0  # an upper eyelid over part of the outer ring
    out = []
    for index in range(captures + rescans):
        flips = (rng.random(2048) < flip_rate).astype(np.uint8) if index else np.zeros(2048, np.uint8)
        shift = rescan_shift if index >= captures else 0
        out.append((np.packbits(rotate(code ^ flips, shift)).tobytes(),
                    np.packbits(rotate(mask, shift)).tobytes()))
    return out
