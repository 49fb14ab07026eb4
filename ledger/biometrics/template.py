"""The template: a fixed-length binary iris code plus its occlusion mask.

Layout (shared with the synthetic generator): 8 radial rings x 128 angular positions x 2 phase
bits (the signs of the real and imaginary parts of a Gabor response, as in Daugman's IrisCode),
bit index ``(ring * 128 + angle) * 2 + phase``. A mask bit is 1 where the code bit is valid
and 0 where eyelids, eyelashes or reflections hid the iris. A head tilt rotates the eye, which
shifts the code along the angular axis: :func:`rotate` applies such a shift, and the matching
code (``fuzzy_commitment``, ``gallery``) searches over shifts instead of assuming alignment.

Templates and masks are accepted either packed (256 bytes, most significant bit first, as
``numpy.packbits`` produces) or as a numpy array of 2048 zeros and ones.
"""

from __future__ import annotations

import numpy as np

from .errors import InvalidTemplate

RINGS = 8
ANGLES = 128
PHASE_BITS = 2
TEMPLATE_BITS = RINGS * ANGLES * PHASE_BITS
TEMPLATE_BYTES = TEMPLATE_BITS // 8

Bits = bytes | bytearray | memoryview | np.ndarray


def as_bits(value: Bits, what: str = "template") -> np.ndarray:
    """Validate a template or mask and return it as a fresh uint8 array of 0/1 bits."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        if len(raw) != TEMPLATE_BYTES:
            raise InvalidTemplate(f"{what} must be {TEMPLATE_BYTES} packed bytes, got {len(raw)}")
        return np.unpackbits(np.frombuffer(raw, dtype=np.uint8))
    if isinstance(value, np.ndarray):
        if value.shape != (TEMPLATE_BITS,):
            raise InvalidTemplate(f"{what} must have shape ({TEMPLATE_BITS},), got {value.shape}")
        if value.dtype == np.bool_:
            return value.astype(np.uint8)
        if not np.issubdtype(value.dtype, np.integer):
            raise InvalidTemplate(f"{what} must hold integers or booleans, got {value.dtype}")
        if value.size and (value.min() < 0 or value.max() > 1):
            raise InvalidTemplate(f"{what} must hold only 0 and 1")
        return value.astype(np.uint8)
    raise InvalidTemplate(f"{what} must be bytes or a numpy array, got {type(value).__name__}")


def pack_bits(bits: np.ndarray) -> bytes:
    return np.packbits(bits.astype(np.uint8)).tobytes()


def unpack_bits(raw: bytes) -> np.ndarray:
    return np.unpackbits(np.frombuffer(raw, dtype=np.uint8))


def rotate(bits: np.ndarray, shift: int) -> np.ndarray:
    """Shift templates (shape (..., 2048)) by ``shift`` angular positions, circularly.

    ``rotate(x, s)[angle] == x[angle - s]`` in every ring and phase: the code of an eye turned
    by ``s`` positions. Works on 0/1 arrays of any leading shape.
    """
    shaped = bits.reshape(*bits.shape[:-1], RINGS, ANGLES, PHASE_BITS)
    return np.roll(shaped, shift, axis=-2).reshape(bits.shape)


def rotations(bits: np.ndarray, max_shift: int) -> tuple[np.ndarray, np.ndarray]:
    """Every shift in ``-max_shift .. max_shift`` of one template: (shifts, (2m+1, 2048) array)."""
    shifts = np.arange(-max_shift, max_shift + 1)
    shaped = bits.reshape(RINGS, ANGLES, PHASE_BITS)
    index = (np.arange(ANGLES)[None, :] - shifts[:, None]) % ANGLES
    out = shaped[:, index, :]  # (RINGS, shifts, ANGLES, PHASE_BITS)
    return shifts, np.ascontiguousarray(out.transpose(1, 0, 2, 3)).reshape(len(shifts), TEMPLATE_BITS)
