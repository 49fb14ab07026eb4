"""A child's card and an eye scan, as files, and the one place a biometric key is recovered.

* A **scan file** holds an aligned iris code and its occlusion mask (what a capture device's
  feature extractor produces)::

      {"format": "custos-scan/1", "code": "<256 bytes hex>", "mask": "<256 bytes hex>"}

* A **card file** is what the child carries (printed as a QR code): the pseudonymous identity
  id and the helper data of the enrolment. It holds no template and no key; without a fresh
  scan of the same eye it unlocks nothing::

      {"format": "custos-card/1", "identity": "<16 bytes hex>", "helper": "<helper data hex>"}

:func:`biometric_key` is the seam between the terminal and the biometric scheme of
:mod:`ledger.biometrics`: a scan plus a card give the child's signing key, whose public key is
the identity commitment enrolled on the chain.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ledger.biometrics import (
    SECRET_BYTES,
    TEMPLATE_BYTES,
    HelperData,
    derive_signing_key,
    enrol,
    reproduce,
)
from ledger.crypto.keys import SigningKey
from ledger.errors import CustosError
from ledger.storage.files import write_atomically

SCAN_FORMAT = "custos-scan/1"
CARD_FORMAT = "custos-card/1"
_MAX_FILE = 64 * 1024


class CardError(CustosError):
    code = "card"


def _read_json(path: Path, fmt: str, what: str) -> dict:
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise CardError(f"cannot read {what} {path}: {exc.strerror}") from None
    if len(raw) > _MAX_FILE:
        raise CardError(f"{path} is too large to be a {what}")
    try:
        doc = json.loads(raw)
    except ValueError:
        raise CardError(f"{path} is not a {what} (not JSON)") from None
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise CardError(f"{path} is not a {what} (format {fmt} expected)")
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
    doc = _read_json(path, SCAN_FORMAT, "scan file")
    return _hex(doc, "code", TEMPLATE_BYTES, path), _hex(doc, "mask", TEMPLATE_BYTES, path)


# --------------------------------------------------------------------------- cards


def write_card(path: Path, identity: bytes, helper: bytes) -> None:
    _write_json(path, {"format": CARD_FORMAT, "identity": identity.hex(), "helper": helper.hex()})


def read_card(path: Path) -> tuple[bytes, bytes]:
    """(identity id, helper data bytes)."""
    doc = _read_json(path, CARD_FORMAT, "card file")
    return _hex(doc, "identity", 16, path), _hex(doc, "helper", None, path)


# --------------------------------------------------------------------------- keys


def enrol_scan(code: bytes, mask: bytes) -> tuple[bytes, SigningKey]:
    """Bind a fresh secret to an enrolment scan: (helper data bytes, the child's signing key).

    The secret exists only inside this call; the key is needed once more, to co-sign the
    enrolment, and then only a fresh scan of the same eye recovers it.
    """
    secret = os.urandom(SECRET_BYTES)
    enrolment = enrol(code, mask, secret)
    return enrolment.helper.to_bytes(), SigningKey(bytes(derive_signing_key(secret)))


def biometric_key(code: bytes, mask: bytes, helper: bytes) -> SigningKey:
    """The child's signing key from a fresh scan and the card's helper data.

    Raises :class:`ledger.biometrics.ReproductionFailed` when the scan does not unlock the card
    (another eye, a scan too noisy, or a card that was altered).
    """
    secret = reproduce(code, mask, HelperData.from_bytes(helper))
    return SigningKey(bytes(derive_signing_key(secret)))


def key_from_files(scan_path: Path, card_path: Path) -> tuple[bytes, SigningKey]:
    """(identity id, biometric key) from a scan file and a card file."""
    code, mask = read_scan(scan_path)
    identity, helper = read_card(card_path)
    return identity, biometric_key(code, mask, helper)


# --------------------------------------------------------------------------- synthetic eyes


def synthetic_eye(seed: int, rescans: int = 1, *, flip_rate: float = 0.06) -> list[tuple[bytes, bytes]]:
    """An enrolment capture and ``rescans`` noisy rescans of one made-up eye, for demos and tests.

    The code is random, the mask hides an eyelid band; each rescan flips ``flip_rate`` of the
    bits. (``scripts/biometric_dataset.py`` models real iris statistics; this needs only to be
    recognisable by the error correction.)
    """
    rng = np.random.default_rng(seed)
    code = rng.integers(0, 2, 2048, dtype=np.uint8)
    mask = np.ones(2048, dtype=np.uint8)
    mask[1792:1920] = 0  # an upper eyelid over part of the outer ring
    captures = [(np.packbits(code).tobytes(), np.packbits(mask).tobytes())]
    for _ in range(rescans):
        flips = (rng.random(2048) < flip_rate).astype(np.uint8)
        captures.append((np.packbits(code ^ flips).tobytes(), np.packbits(mask).tobytes()))
    return captures
