"""Fuzzy commitment (Juels–Wattenberg) on iris codes, with rotation search and multi-capture
enrolment (helper data version 2).

Enrolment binds the biometric part of a secret to a reference iris code::

    reference = align and combine 1..K captures (majority; bits the captures disagree on and
                bits occluded in all of them are masked)
    message   = biometric part of the secret (56 bits) as 8 seven-bit symbols
    codeword  = Hadamard(RS(32, 8)(message))                    2048 bits, code order
    sketch    = codeword XOR reference[perm]                   perm: this enrolment's own
    helper    = (seed of perm, reference mask, sketch, salt, check)
    commitment = Ed25519 public key derived from salt || biometric part

Reproduction turns the scan through every shift in ``-max_shift .. max_shift`` angular
positions (a head tilt rotates the code), XORs each into the sketch, and ranks the shifts by
how strongly their 32 blocks match inner codewords. For the best few shifts the Hadamard
decoder removes scattered bit errors block by block and the Reed–Solomon decoder corrects
whole wrong blocks, erasing the least reliable first (generalised minimum distance decoding:
2e + s <= 24). A decoded candidate must then pass the iris-matching decision at that shift
(normalised Hamming distance at most :data:`MAX_MATCH_HD` over at least
:data:`MIN_COMPARED_BITS` bits visible in both) and the helper's check value.

Why these choices (measured, see ``THREAT_MODEL.md``):

* The outer code carries 56 bits instead of 128: the key's strength against the chain and a
  card holder comes from the 256-bit salt, which the card seals; the biometric part only has
  to tie the key to the eye, and a lower rate moves the decoder's cliff from HD ~0.25 to
  beyond 0.30, where poor field captures sit.
* Several enrolment captures: the majority removes most of the enrolment capture's own noise,
  and bits on which the captures disagree (fragile bits, near a phase boundary, and the
  undetected eyelid and eyelash bursts) become erasures instead of errors.
* The permutation spreads the iris's correlated errors over all blocks, so a block rarely
  fails as a whole, and keeps a block from covering one patch of iris.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import replace
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from . import hadamard
from .errors import InsufficientOverlap, InvalidTemplate, ReproductionFailed
from .helper_data import HELPER_VERSION, SEED_BYTES, HelperData
from .keys import (
    BIO_BITS,
    FILL_INFO,
    PERMUTATION_SEED_INFO,
    check_secret,
    check_value,
    commitment_of,
    hkdf,
    split_secret,
)
from .reed_solomon import ReedSolomon
from .template import (
    TEMPLATE_BITS,
    TEMPLATE_BYTES,
    Bits,
    as_bits,
    pack_bits,
    rotate,
    rotations,
    unpack_bits,
)

BLOCKS = TEMPLATE_BITS // hadamard.BLOCK_BITS  # 32 Hadamard blocks = 32 RS symbols
RS_K = BIO_BITS // hadamard.SYMBOL_BITS  # 8 symbols x 7 bits = the 56-bit biometric part
OUTER_CODE = ReedSolomon(BLOCKS, RS_K)
OUTER_REDUNDANCY = BLOCKS - RS_K  # 24: corrects e errors and s erasures when 2e + s <= 24
# generalised minimum distance: erase s of the least reliable blocks, s of the parity of the
# redundancy (erasing one more block never helps when it breaks that parity)
ERASURE_SCHEDULE = tuple(range(OUTER_REDUNDANCY % 2, OUTER_REDUNDANCY + 1, 2))

#: angular shifts searched on either side by default (a head tilt of about +-22 degrees)
MAX_SHIFT = 8
#: shifts whose blocks match codewords best are decoded, in that order; the false-accept
#: bound still counts every shift searched (see THREAT_MODEL.md, section 5)
DECODED_SHIFTS = 3

# Enrolment is refused when fewer bits than this are visible: such a scan carries too little
# of the iris to protect the secret or to be reproduced reliably.
MIN_ENROL_VALID_BITS = TEMPLATE_BITS // 2

# The match decision applied to every decoded candidate. Decoding alone already fails for most
# scans beyond HD 0.30; this closes the tail, so that the false-accept rate is bounded by the
# impostor Hamming-distance distribution (Daugman: mean 0.5, about 249 degrees of freedom)
# rather than by decoder details. Fewer compared bits widen that distribution, so the distance
# is normalised to MATCH_REFERENCE_BITS compared bits as Daugman does (2007):
#     hd_norm = 0.5 - (0.5 - hd) * sqrt(compared / MATCH_REFERENCE_BITS)
# which keeps the impostor tail below the threshold the same whatever the occlusion; the
# reference is the typical overlap of two captures (~77% of 2048 bits). Below a floor of
# compared bits no decision is made at all.
MAX_MATCH_HD = 0.32
MATCH_REFERENCE_BITS = 1600
MIN_COMPARED_BITS = 800

_PERMUTATION_DOMAIN = b"custos/biometric-permutation-stream/v1"


class Enrolment(NamedTuple):
    """What :func:`enrol` returns; unpacks as ``helper, commitment``."""

    helper: HelperData
    commitment: bytes


class Recovered(NamedTuple):
    """What :func:`recover` returns: the secret, how many angular positions the scan is turned
    from the enrolment (``scan ~ rotate(enrolment, shift)``), and the normalised Hamming
    distance between the scan, turned back, and the enrolled reference."""

    secret: bytes
    shift: int
    distance: float


@lru_cache(maxsize=1024)
def permutation(seed: bytes) -> np.ndarray:
    """This enrolment's bit permutation: code position j reads template bit perm[j].

    Built by sorting 2048 pseudo-random 32-bit keys from SHAKE-256, so it depends only on the
    seed and on nothing version-specific in numpy's random generators.
    """
    if len(seed) != SEED_BYTES:
        raise ValueError("permutation seed must be 32 bytes")
    stream = hashlib.shake_256(_PERMUTATION_DOMAIN + seed).digest(4 * TEMPLATE_BITS)
    keys = np.frombuffer(stream, dtype=">u4")
    perm = np.argsort(keys, kind="stable").astype(np.uint16)
    perm.setflags(write=False)
    return perm


def _message_symbols(bio: bytes) -> list[int]:
    value = int.from_bytes(bio, "big")
    return [(value >> (7 * i)) & 0x7F for i in range(RS_K)]


def _bio_from_symbols(symbols: list[int]) -> bytes:
    value = 0
    for i, symbol in enumerate(symbols):
        value |= symbol << (7 * i)
    return value.to_bytes(BIO_BITS // 8, "big")


def _captures(templates, masks) -> tuple[np.ndarray, np.ndarray]:
    """Validate one capture (2048 bits) or several ((K, 2048) arrays, or lists of captures)."""
    if isinstance(templates, np.ndarray) and templates.ndim == 2:
        templates, masks = list(templates), list(np.asarray(masks))
    if isinstance(templates, (list, tuple)):
        if not templates or len(templates) != len(masks):
            raise InvalidTemplate("give one mask per capture, and at least one capture")
        codes = np.stack([as_bits(t, "template") for t in templates])
        valid = np.stack([as_bits(m, "mask") for m in masks])
        return codes, valid
    return as_bits(templates, "template")[None], as_bits(masks, "mask")[None]


def align(template: np.ndarray, mask: np.ndarray, reference: np.ndarray, reference_mask: np.ndarray,
          max_shift: int = MAX_SHIFT) -> tuple[int, float]:
    """The shift that best aligns a capture with a reference, and the fractional Hamming
    distance there (over bits visible in both; 1.0 when no shift leaves 256 bits to compare)."""
    shifts, codes = rotations(template, max_shift)
    _, valid = rotations(mask, max_shift)
    both = valid & reference_mask
    compared = both.sum(axis=1)
    differ = ((codes ^ reference) & both).sum(axis=1)
    distance = np.where(compared >= 256, differ / np.maximum(compared, 1), 1.0)
    best = int(np.argmin(distance))
    return int(shifts[best]), float(distance[best])


def combine(templates, masks, max_shift: int = MAX_SHIFT) -> tuple[np.ndarray, np.ndarray]:
    """The enrolment reference from one or more captures of the same eye.

    Every capture is turned to align with the first; a bit is the majority of the captures in
    which it is visible (ties go to the first capture). With two or more captures a bit is
    kept only where every capture that sees it agrees: bits near a phase boundary flip from
    capture to capture (Hollingsworth, Bowyer and Flynn's fragile bits), and undetected
    occlusions rarely repeat, so both become erasures instead of errors. Deterministic.
    """
    codes, valid = _captures(templates, masks)
    if codes.shape[0] == 1:
        return codes[0], valid[0]
    turned_codes, turned_valid = [codes[0]], [valid[0]]
    for code, mask in zip(codes[1:], valid[1:], strict=True):
        shift, _ = align(code, mask, codes[0], valid[0], max_shift)
        turned_codes.append(rotate(code, shift))
        turned_valid.append(rotate(mask, shift))
    stack_codes, stack_valid = np.stack(turned_codes), np.stack(turned_valid)
    seen = stack_valid.sum(axis=0)
    ones = (stack_codes & stack_valid).sum(axis=0)
    bits = np.where(2 * ones == seen, codes[0], (2 * ones > seen).astype(np.uint8)).astype(np.uint8)
    unanimous = (ones == 0) | (ones == seen)
    keep = ((seen > 0) & unanimous).astype(np.uint8)
    return bits, keep


def enrol(templates, masks, secret: bytes, *, max_shift: int = MAX_SHIFT) -> Enrolment:
    """Bind ``secret`` (:data:`SECRET_BYTES` bytes from ``new_secret``) to an eye.

    ``templates`` and ``masks`` are one capture (2048 bits, packed or as an array) or several
    of the same eye (a list, or a (K, 2048) array); three captures are recommended (see
    :func:`combine`). Returns the helper data and the identity commitment (the Ed25519 public
    key derived from the secret). The caller discards the secret after this call.
    """
    bits, valid = combine(templates, masks, max_shift)
    secret = check_secret(secret)
    salt, bio = split_secret(secret)
    visible = int(valid.sum())
    if visible < MIN_ENROL_VALID_BITS:
        raise InvalidTemplate(
            f"only {visible} of {TEMPLATE_BITS} bits are unoccluded and stable across the captures; "
            f"enrolment needs at least {MIN_ENROL_VALID_BITS}: rescan the eye"
        )
    seed = hkdf(secret, PERMUTATION_SEED_INFO, SEED_BYTES)
    perm = permutation(seed)
    codeword = hadamard.encode(OUTER_CODE.encode(_message_symbols(bio)))
    filler = unpack_bits(hkdf(secret, FILL_INFO, TEMPLATE_BYTES))
    sketch = np.where(valid[perm] == 1, codeword ^ bits[perm], filler)
    unsigned = HelperData(
        version=HELPER_VERSION,
        seed=seed,
        mask=pack_bits(valid),
        sketch=pack_bits(sketch),
        salt=salt,
        check=bytes(32),
    )
    helper = replace(unsigned, check=check_value(secret, unsigned.authenticated_bytes()))
    return Enrolment(helper=helper, commitment=commitment_of(secret))


def soft_blocks(bits: np.ndarray, valid: np.ndarray, helper: HelperData) -> np.ndarray:
    """The decoder's input: scan XOR sketch in code order, as soft values per block.

    +1 where the scan agrees with the sketch, -1 where it does not, 0 where either scan was
    occluded. ``bits`` and ``valid`` are 0/1 arrays of shape (..., 2048), so a batch of scans
    against one helper works too; the result has shape (..., BLOCKS, 64).
    """
    perm = permutation(helper.seed)
    both = valid[..., perm] & unpack_bits(helper.mask)[perm]
    diff = unpack_bits(helper.sketch) ^ bits[..., perm]
    soft = (1.0 - 2.0 * diff.astype(np.float32)) * both
    return soft.reshape(*soft.shape[:-1], BLOCKS, hadamard.BLOCK_BITS)


def codeword_agreement(corr: np.ndarray, symbols: np.ndarray) -> np.ndarray:
    """Sum over blocks of the soft agreement between the scan and the given codeword.

    For a symbol v the block's correlation with its codeword is ``corr[v mod 64]``, negated
    when the top bit is set. With V visible bits, agreement A means ``(V - A) / 2`` bits differ.
    """
    symbols = np.asarray(symbols)
    rows = np.broadcast_to(symbols & 0x3F, corr.shape[:-1])
    signs = 1.0 - 2.0 * (np.broadcast_to(symbols, corr.shape[:-1]) >> 6)
    picked = np.take_along_axis(corr, rows[..., None].astype(np.intp), axis=-1)[..., 0]
    return (picked * signs).sum(axis=-1)


def match_distance(soft: np.ndarray, corr: np.ndarray, symbols) -> tuple[np.ndarray, np.ndarray]:
    """Hamming distance between scan and enrolled template, and how many bits it compares.

    Once the codeword is known, ``sketch XOR codeword`` is the enrolled template (permuted), so
    the decoder can apply the ordinary iris-matching decision on top of decoding: Daugman's
    fractional Hamming distance over the bits visible in both scans.
    """
    visible = np.count_nonzero(soft, axis=(-2, -1))
    agreement = codeword_agreement(corr, symbols)
    distance = (visible - agreement) / (2.0 * np.maximum(visible, 1))
    return distance, visible


def normalised_distance(distance, visible):
    """Daugman's score normalisation to MATCH_REFERENCE_BITS compared bits."""
    return 0.5 - (0.5 - distance) * np.sqrt(np.asarray(visible) / MATCH_REFERENCE_BITS)


def is_match(distance, visible):
    """The match decision: enough bits compared, normalised distance at most MAX_MATCH_HD."""
    visible = np.asarray(visible)
    return (visible >= MIN_COMPARED_BITS) & (normalised_distance(distance, visible) <= MAX_MATCH_HD)


def unlock(soft: np.ndarray, helper: HelperData, corr: np.ndarray | None = None) -> bytes | None:
    """Recover the secret from the soft blocks of one aligned scan, or None. Shared by 1:1 and 1:N.

    Generalised minimum distance decoding: erase the s least reliable blocks for s in
    :data:`ERASURE_SCHEDULE` and run the errors-and-erasures decoder; blocks whose two best
    candidates tie are always erased. A candidate is accepted only if the scan matches the
    template it implies (:func:`is_match`) and the helper's check value verifies.
    """
    visible = int(np.count_nonzero(soft))
    if visible < MIN_COMPARED_BITS:
        return None
    if corr is None:
        corr = hadamard.correlate(soft)
    symbols, top, second = hadamard.decide(corr)
    margin = top - second
    order = np.argsort(margin, kind="stable")
    undecided = int(np.count_nonzero(margin <= 0))
    if undecided > OUTER_REDUNDANCY:
        return None
    received = symbols.tolist()
    authenticated = helper.authenticated_bytes()
    tried: set[tuple[int, ...]] = set()
    for erased in ERASURE_SCHEDULE:
        if erased < undecided:
            continue
        message = OUTER_CODE.decode(received, order[:erased].tolist())
        if message is None or tuple(message) in tried:
            continue
        tried.add(tuple(message))
        agreement = float(codeword_agreement(corr, np.asarray(OUTER_CODE.encode(message))))
        if not is_match((visible - agreement) / (2.0 * visible), visible):
            continue
        secret = helper.salt + _bio_from_symbols(message)
        if hmac.compare_digest(check_value(secret, authenticated), helper.check):
            return secret
    return None


def shift_scores(soft: np.ndarray) -> np.ndarray:
    """How strongly each shift's blocks match inner codewords: the sum over blocks of
    ``best_correlation^2 / visible_bits`` (about ``(1 - 2 x error rate)^2 x visible`` per
    block at the right shift, about 6 at any other). ``soft`` has shape (..., BLOCKS, 64)."""
    visible = np.count_nonzero(soft, axis=-1)
    best = np.abs(hadamard.correlate(soft)).max(axis=-1)
    return (best * best / np.maximum(visible, 1)).sum(axis=-1)


def rotated_soft_blocks(bits: np.ndarray, valid: np.ndarray, helper: HelperData,
                        max_shift: int) -> tuple[np.ndarray, np.ndarray]:
    """(shifts, soft blocks of the scan turned by each shift), the latter (2m+1, BLOCKS, 64)."""
    shifts, codes = rotations(bits, max_shift)
    _, masks = rotations(valid, max_shift)
    return shifts, soft_blocks(codes, masks, helper)


def codeword_symbols(secret: bytes) -> list[int]:
    """The 32 outer-code symbols an enrolment with ``secret`` hides (for analysis and tests)."""
    return OUTER_CODE.encode(_message_symbols(split_secret(secret)[1]))


def reaches_codeword(soft: np.ndarray, symbols) -> np.ndarray:
    """Vectorised acceptance region of :func:`unlock` for a known codeword.

    ``soft`` has shape (batch, BLOCKS, 64) and ``symbols`` the true outer-code symbols, shape
    (BLOCKS,) or (batch, BLOCKS). Returns, per row, whether :func:`unlock` would recover that
    codeword: the Gao decoder provably returns the unique codeword within ``2e + s <= 24`` of
    the kept positions and nothing outside it, so this mirrors the erasure schedule and the
    match decision of :func:`unlock` exactly. It lets a benchmark count false accepts over
    millions of impostor trials (and every shift of each) without running the outer decoder;
    a test holds it against :func:`unlock`.
    """
    symbols = np.asarray(symbols)
    corr = hadamard.correlate(soft)
    decided, top, second = hadamard.decide(corr)
    margin = top - second
    order = np.argsort(margin, axis=-1, kind="stable")
    wrong = np.take_along_axis(decided != symbols, order, axis=-1)
    # wrong_after[:, s] = wrong blocks among those kept when the s least reliable are erased
    wrong_after = np.concatenate(
        [np.cumsum(wrong[:, ::-1], axis=-1)[:, ::-1], np.zeros((wrong.shape[0], 1), dtype=int)],
        axis=-1,
    )
    undecided = np.count_nonzero(margin <= 0, axis=-1)
    decodes = np.zeros(soft.shape[0], dtype=bool)
    for erased in ERASURE_SCHEDULE:
        decodes |= (erased >= undecided) & (2 * wrong_after[:, erased] + erased <= OUTER_REDUNDANCY)
    distance, visible = match_distance(soft, corr, symbols)
    return decodes & is_match(distance, visible)


def recover(
    template: Bits,
    mask: Bits,
    helper: HelperData,
    *,
    max_shift: int = MAX_SHIFT,
    expected_commitment: bytes | None = None,
) -> Recovered:
    """Recover the secret bound in ``helper`` from a fresh scan, searching rotations.

    The scan is tried at every shift in ``-max_shift .. max_shift``; the
    :data:`DECODED_SHIFTS` shifts whose blocks match codewords best are decoded in that order.
    ``expected_commitment``, when given (the commitment enrolled on the chain for the claimed
    identity), is compared as well, so a card whose helper data belongs to another enrolment
    fails here rather than at the validators. Raises :class:`ReproductionFailed` (or its
    subclass :class:`InsufficientOverlap`) when the scan does not unlock the helper data.
    """
    bits = as_bits(template, "template")
    valid = as_bits(mask, "mask")
    if not isinstance(helper, HelperData):
        raise TypeError(f"helper must be HelperData, got {type(helper).__name__}")
    if not 0 <= max_shift < 64:
        raise ValueError("max_shift must be in 0..63")
    shifts, soft = rotated_soft_blocks(bits, valid, helper, max_shift)
    compared = np.count_nonzero(soft, axis=(-2, -1))
    if int(compared.max()) < MIN_COMPARED_BITS:
        raise InsufficientOverlap(
            f"only {int(compared.max())} bits are visible in both this scan and the enrolment; at "
            f"least {MIN_COMPARED_BITS} are needed: rescan the eye"
        )
    corr = hadamard.correlate(soft)
    best = np.abs(corr).max(axis=-1)
    scores = (best * best / np.maximum(np.count_nonzero(soft, axis=-1), 1)).sum(axis=-1)
    for index in np.argsort(-scores, kind="stable")[:DECODED_SHIFTS]:
        secret = unlock(soft[index], helper, corr[index])
        if secret is None:
            continue
        if expected_commitment is not None and not hmac.compare_digest(
            commitment_of(secret), bytes(expected_commitment)
        ):
            raise ReproductionFailed("the helper data unlocks, but not to the expected commitment")
        symbols = np.asarray(OUTER_CODE.encode(_message_symbols(split_secret(secret)[1])))
        distance, visible = match_distance(soft[index], corr[index], symbols)
        # the scan turned by shifts[index] matches, so the eye was turned by minus that
        return Recovered(secret, -int(shifts[index]), float(normalised_distance(distance, visible)))
    raise ReproductionFailed(
        "the scan does not unlock this helper data (a different eye, a scan beyond the error "
        "budget or turned further than the rotation search, or altered helper data)"
    )


def reproduce(
    template: Bits,
    mask: Bits,
    helper: HelperData,
    *,
    max_shift: int = MAX_SHIFT,
    expected_commitment: bytes | None = None,
) -> bytes:
    """The secret bound in ``helper``, from a fresh scan (see :func:`recover`)."""
    return recover(template, mask, helper, max_shift=max_shift,
                   expected_commitment=expected_commitment).secret


def enrolled_reference(helper: HelperData, secret: bytes) -> np.ndarray:
    """The enrolment reference (template order) an enrolment bound, at the positions its mask
    keeps (zeros elsewhere): what the gallery screens scans against. Needs the secret, so only
    the enrolling code (or someone who unlocked the helper) can compute it."""
    perm = permutation(helper.seed)
    codeword = hadamard.encode(codeword_symbols(secret))
    in_code_order = unpack_bits(helper.sketch) ^ codeword
    reference = np.zeros(TEMPLATE_BITS, dtype=np.uint8)
    reference[perm] = in_code_order
    return reference & unpack_bits(helper.mask)
