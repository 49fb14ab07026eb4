"""Inner code: the biorthogonal Hadamard code [64, 7, 32] (first-order Reed–Muller RM(1,6)).

A 7-bit symbol ``v`` becomes 64 bits ``b_i = <i, v mod 64> xor (v >> 6)``: a row of the 64 x 64
Sylvester–Hadamard matrix, complemented when the top bit is set. Any two distinct codewords
differ in at least 32 bits, which is what lets a block survive the scattered, fairly dense bit
errors of an iris rescan (Hao, Anderson and Daugman's reason for this inner code).

Decoding is maximum likelihood and soft: each bit enters as +1 (agrees with the helper), -1
(disagrees) or 0 (occluded in either scan, i.e. an erasure), and one product with the symmetric
Hadamard matrix gives the correlation with all 64 rows at once; the sign of the best one gives
the top bit. The same product works on a whole gallery at once, which is why 1:N search is a
single BLAS call rather than a loop.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BLOCK_BITS = 64
SYMBOL_BITS = 7


def _sylvester(n: int) -> np.ndarray:
    h = np.ones((1, 1), dtype=np.int8)
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h


# WALSH[i, r] = (-1) ** popcount(i & r); symmetric, entries +-1.
WALSH: np.ndarray = _sylvester(BLOCK_BITS).astype(np.float32)
WALSH.setflags(write=False)

# CODEWORDS[v] is the 64-bit codeword of symbol v as 0/1 bits.
_rows = (_sylvester(BLOCK_BITS) < 0).astype(np.uint8)
CODEWORDS: np.ndarray = np.concatenate([_rows, 1 - _rows]).astype(np.uint8)
CODEWORDS.setflags(write=False)


def encode(symbols: Sequence[int]) -> np.ndarray:
    """Concatenate the codewords of the given symbols into one 0/1 bit array."""
    return CODEWORDS[np.asarray(symbols, dtype=np.int64)].reshape(-1)


def correlate(soft: np.ndarray) -> np.ndarray:
    """Correlations of (..., BLOCK_BITS) soft blocks with every Hadamard row."""
    return soft @ WALSH


def decide(corr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hard decisions from correlations of shape (..., BLOCK_BITS).

    Returns the decoded symbols, the best absolute correlation and the runner-up's. The gap
    between the two is the block's reliability: the outer decoder erases the least reliable
    blocks first. A tie (gap 0) means the block carries no decision at all.
    """
    mag = np.abs(corr)
    row = np.argmax(mag, axis=-1)
    top = np.take_along_axis(mag, row[..., None], axis=-1)[..., 0]
    negative = np.take_along_axis(corr, row[..., None], axis=-1)[..., 0] < 0
    symbols = row + (negative.astype(row.dtype) << (SYMBOL_BITS - 1))
    np.put_along_axis(mag, row[..., None], -1.0, axis=-1)
    second = mag.max(axis=-1)
    return symbols, top, second
