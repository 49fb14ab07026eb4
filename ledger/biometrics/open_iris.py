"""Iris templates in the layout the open-iris pipeline (Worldcoin's IRIS) writes, and their
conversion to this package's 2048-bit form. Format described in ``docs/iris-templates.md``.

open-iris serialises an ``IrisTemplate`` as a JSON object::

    {"iris_codes": "<base64>", "mask_codes": "<base64>", "iris_code_version": "v2.1"}

where each base64 string is ``numpy.packbits`` (most significant bit first) of a boolean array
of shape ``(rows, columns, wavelets, 2)``: ``rows`` radial positions (16 by default),
``columns`` angular positions (256), one slice per filter of the bank (2), and the signs of
the real and imaginary parts of the filter response. A mask bit is true where the code bit is
usable. (In memory, open-iris keeps one ``(rows, columns, 2)`` array per wavelet; the
serialised form stacks them on axis 2.) The angular axis is axis 1: open-iris's matcher
rotates templates by rolling it.

Conversion (:func:`from_open_iris`): one wavelet (default the first), every ``rows/8``-th row
and every ``columns/128``-th column, both phase bits; a bit is valid only where open-iris
marks it usable. So ring ``r``, angle ``a`` reads row ``r * rows/8``, column ``a * columns/128``
and one internal angular step is ``columns/128`` of open-iris's. This package does not import
open-iris (it pins pydantic 1 and downloads models); it reads the bytes.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np

from .errors import InvalidTemplate
from .template import ANGLES, PHASE_BITS, RINGS, TEMPLATE_BITS

DEFAULT_SHAPE = (16, 256, 2, 2)
MAX_TEMPLATE_BITS = 1 << 20


class OpenIrisError(InvalidTemplate):
    """A document is not an open-iris template this package can convert."""

    type = "biometric-invalid-open-iris-template"


def _decode(text: object, shape: tuple[int, ...], name: str) -> np.ndarray:
    if not isinstance(text, str):
        raise OpenIrisError(f"{name} must be a base64 string")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise OpenIrisError(f"{name} is not valid base64") from None
    bits = int(np.prod(shape))
    if len(raw) != (bits + 7) // 8:
        raise OpenIrisError(f"{name} holds {len(raw)} bytes; shape {shape} needs {(bits + 7) // 8}")
    return np.unpackbits(np.frombuffer(raw, dtype=np.uint8))[:bits].reshape(shape)


def template_shape(doc: dict) -> tuple[int, int, int, int]:
    """The array shape of a template: open-iris's default, or ``array_shape`` if the file says."""
    shape = doc.get("array_shape", DEFAULT_SHAPE)
    if (not isinstance(shape, (list, tuple)) or len(shape) != 4
            or not all(type(x) is int and x > 0 for x in shape)):
        raise OpenIrisError("array_shape must be four positive integers")
    rows, columns, wavelets, phases = shape
    if phases != PHASE_BITS or rows % RINGS or columns % ANGLES or rows * columns * wavelets * 2 > MAX_TEMPLATE_BITS:
        raise OpenIrisError(
            f"array shape {tuple(shape)} cannot be converted: rows a multiple of {RINGS}, columns a "
            f"multiple of {ANGLES}, 2 phase bits"
        )
    return rows, columns, wavelets, phases


def from_open_iris(doc: dict, wavelet: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(code, mask) as 0/1 arrays of 2048 bits from a serialised open-iris template."""
    if not isinstance(doc, dict) or "iris_codes" not in doc or "mask_codes" not in doc:
        raise OpenIrisError("an open-iris template has iris_codes and mask_codes")
    if not isinstance(doc.get("iris_code_version", ""), str):
        raise OpenIrisError("iris_code_version must be a string")
    shape = template_shape(doc)
    rows, columns, wavelets, _ = shape
    if not 0 <= wavelet < wavelets:
        raise OpenIrisError(f"wavelet {wavelet} out of range (the template has {wavelets})")
    codes = _decode(doc["iris_codes"], shape, "iris_codes")
    masks = _decode(doc["mask_codes"], shape, "mask_codes")
    pick = (slice(0, rows, rows // RINGS), slice(0, columns, columns // ANGLES), wavelet)
    code = codes[pick].reshape(TEMPLATE_BITS).astype(np.uint8)
    mask = masks[pick].reshape(TEMPLATE_BITS).astype(np.uint8)
    return code, mask


def to_open_iris(codes: np.ndarray, masks: np.ndarray, version: str = "v2.1") -> dict:
    """Serialise boolean arrays of shape (rows, columns, wavelets, 2) the way open-iris does."""
    codes = np.asarray(codes, dtype=bool)
    masks = np.asarray(masks, dtype=bool)
    if codes.shape != masks.shape or codes.ndim != 4:
        raise OpenIrisError("codes and masks must share a (rows, columns, wavelets, 2) shape")
    doc: dict[str, Any] = {
        "iris_codes": base64.b64encode(np.packbits(codes).tobytes()).decode("ascii"),
        "mask_codes": base64.b64encode(np.packbits(masks).tobytes()).decode("ascii"),
        "iris_code_version": version,
    }
    if codes.shape != DEFAULT_SHAPE:
        doc["array_shape"] = list(codes.shape)
    return doc
