"""Fuzzy commitment (Juels–Wattenberg) with the iris code of Hao, Anderson and Daugman.

Enrolment binds a random secret to an iris code::

    message  = secret (128 bits) as 19 seven-bit symbols (5 padding bits, always zero)
    codeword = Hadamard(RS(32, 19)(message))                 2048 bits, code order
    sketch   = codeword XOR template[perm]                     perm: this enrolment's own
    helper   = (seed of perm, enrolment mask, sketch, check)
    commitment = Ed25519 public key derived from the secret

Reproduction XORs a fresh scan into the sketch, which leaves ``codeword XOR noise``. The
Hadamard decoder removes the scattered bit errors block by block and ranks the 32 blocks by
confidence; the Reed–Solomon decoder then corrects whole wrong blocks, erasing the least
reliable ones first (generalised minimum distance decoding: a wrong block costs two units of a
13-unit budget, an erased one costs one, 2e + s <= 13). A decoded candidate must then pass
the ordinary iris-matching decision (normalised Hamming distance at most 0.30 over at least
1024 bits visible in both scans, computable once the codeword is known) and the helper's
check value, so a wrong or altered helper never yields a wrong key.

Two design points differ from the 2006 paper, both for reasons measured on correlated iris
bits:

* The permutation. Neighbouring iris-code bits are strongly correlated (Daugman: about 249
  degrees of freedom in 2048 bits), and so are their errors; a contiguous 64-bit block then
  fails as a whole. A per-enrolment random permutation spreads each block over the whole iris,
  which turns correlated errors into nearly independent ones per block. The same permutation is
  what defeats the decodability attack on two helper data of one eye (Kelkboom et al., 2011):
  without it, the XOR of two sketches is a codeword plus the small difference of two scans.
* The mask. Bits occluded in either scan enter the decoder as erasures rather than errors, and
  the enrolment mask travels in the helper data for that purpose.
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
    FILL_INFO,
    KEY_BITS,
    PERMUTATION_SEED_INFO,
    check_secret,
    check_value,
    commitment_of,
    hkdf,
)
from .reed_solomon import ReedSolomon
from .template import TEMPLATE_BITS, TEMPLATE_BYTES, Bits, as_bits, pack_bits, unpack_bits

BLOCKS = TEMPLATE_BITS // hadamard.BLOCK_BITS  # 32 Hadamard blocks = 32 RS symbols
RS_K = 19  # 19 symbols x 7 bits = 133 >= 128 secret bits
OUTER_CODE = ReedSolomon(BLOCKS, RS_K)
OUTER_REDUNDANCY = BLOCKS - RS_K  # 13: corrects e errors and s erasures when 2e + s <= 13

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
MAX_MATCH_HD = 0.30
MATCH_REFERENCE_BITS = 1600
MIN_COMPARED_BITS = 1024

_PERMUTATION_DOMAIN = b"custos/biometric-permutation-stream/v1"


class Enrolment(NamedTuple):
    """What :func:`enrol` returns; unpacks as ``helper, commitment``."""

    helper: HelperData
    commitment: bytes


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


def _message_symbols(secret: bytes) -> list[int]:
    value = int.from_bytes(secret, "big")
    return [(value >> (7 * i)) & 0x7F for i in range(RS_K)]


def _secret_from_symbols(symbols: list[int]) -> bytes | None:
    value = 0
    for i, symbol in enumerate(symbols):
        value |= symbol << (7 * i)
    if value >> KEY_BITS:
        return None  # padding bits set: not a codeword this scheme produces
    return value.to_bytes(KEY_BITS // 8, "big")


def enrol(template: Bits, mask: Bits, secret: bytes) -> Enrolment:
    """Bind ``secret`` (16 bytes from ``os.urandom``) to an iris code.

    Returns the helper data and the identity commitment (the Ed25519 public key derived from
    the secret). The secret itself should be discarded by the caller after this call.
    """
    bits = as_bits(template, "template")
    valid = as_bits(mask, "mask")
    secret = check_secret(secret)
    visible = int(valid.sum())
    if visible < MIN_ENROL_VALID_BITS:
        raise InvalidTemplate(
            f"only {visible} of {TEMPLATE_BITS} bits are unoccluded; enrolment needs at least "
            f"{MIN_ENROL_VALID_BITS}: rescan the eye"
        )
    seed = hkdf(secret, PERMUTATION_SEED_INFO, SEED_BYTES)
    perm = permutation(seed)
    codeword = hadamard.encode(OUTER_CODE.encode(_message_symbols(secret)))
    filler = unpack_bits(hkdf(secret, FILL_INFO, TEMPLATE_BYTES))
    sketch = np.where(valid[perm] == 1, codeword ^ bits[perm], filler)
    unsigned = HelperData(
        version=HELPER_VERSION,
        seed=seed,
        mask=pack_bits(valid),
        sketch=pack_bits(sketch),
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


def unlock(soft: np.ndarray, helper: HelperData) -> bytes | None:
    """Recover the secret from the soft blocks of a scan, or None. Shared by 1:1 and 1:N.

    Generalised minimum distance decoding: erase the s least reliable blocks for s = 1, 3, ...,
    13 (odd s dominate even ones since 13 is odd) and run the errors-and-erasures decoder;
    blocks whose two best candidates tie are always erased. A candidate is accepted only if
    the scan matches the template it implies (:func:`is_match`) and the helper's check value
    verifies.
    """
    visible = int(np.count_nonzero(soft))
    if visible < MIN_COMPARED_BITS:
        return None
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
    for erased in range(1, OUTER_REDUNDANCY + 1, 2):
        if erased < undecided:
            continue
        message = OUTER_CODE.decode(received, order[:erased].tolist())
        if message is None or tuple(message) in tried:
            continue
        tried.add(tuple(message))
        secret = _secret_from_symbols(message)
        if secret is None:
            continue
        agreement = float(codeword_agreement(corr, np.asarray(OUTER_CODE.encode(message))))
        if not is_match((visible - agreement) / (2.0 * visible), visible):
            continue
        if hmac.compare_digest(check_value(secret, authenticated), helper.check):
            return secret
    return None


def codeword_symbols(secret: bytes) -> list[int]:
    """The 32 outer-code symbols an enrolment with ``secret`` hides (for analysis and tests)."""
    return OUTER_CODE.encode(_message_symbols(check_secret(secret)))


def reaches_codeword(soft: np.ndarray, symbols) -> np.ndarray:
    """Vectorised acceptance region of :func:`unlock` for a known codeword.

    ``soft`` has shape (batch, BLOCKS, 64) and ``symbols`` the true outer-code symbols, shape
    (BLOCKS,) or (batch, BLOCKS). Returns, per row, whether :func:`unlock` would recover that
    codeword: the Gao decoder provably returns the unique codeword within ``2e + s <= 13`` of
    the kept positions and nothing outside it, so this mirrors the erasure schedule and the
    match decision of :func:`unlock` exactly. It lets a benchmark count false accepts over
    millions of impostor trials without running the outer decoder on each; a test holds it
    against :func:`unlock`.
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
    for erased in range(1, OUTER_REDUNDANCY + 1, 2):
        decodes |= (erased >= undecided) & (2 * wrong_after[:, erased] + erased <= OUTER_REDUNDANCY)
    distance, visible = match_distance(soft, corr, symbols)
    return decodes & is_match(distance, visible)


def reproduce(
    template: Bits,
    mask: Bits,
    helper: HelperData,
    *,
    expected_commitment: bytes | None = None,
) -> bytes:
    """Recover the secret bound in ``helper`` from a fresh scan, or raise ReproductionFailed.

    ``expected_commitment``, when given (the commitment enrolled on the chain for the claimed
    identity), is compared as well, so a card whose helper data belongs to another enrolment
    fails here rather than at the validators.
    """
    bits = as_bits(template, "template")
    valid = as_bits(mask, "mask")
    if not isinstance(helper, HelperData):
        raise TypeError(f"helper must be HelperData, got {type(helper).__name__}")
    soft = soft_blocks(bits, valid, helper)
    compared = int(np.count_nonzero(soft))
    if compared < MIN_COMPARED_BITS:
        raise InsufficientOverlap(
            f"only {compared} bits are visible in both this scan and the enrolment; at least "
            f"{MIN_COMPARED_BITS} are needed: rescan the eye"
        )
    secret = unlock(soft, helper)
    if secret is None:
        raise ReproductionFailed(
            "the scan does not unlock this helper data (a different eye, a scan beyond the "
            "error budget, or altered helper data)"
        )
    if expected_commitment is not None and not hmac.compare_digest(
        commitment_of(secret), bytes(expected_commitment)
    ):
        raise ReproductionFailed("the helper data unlocks, but not to the expected commitment")
    return secret
