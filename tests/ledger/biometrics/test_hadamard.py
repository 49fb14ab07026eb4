"""The inner code: biorthogonal Hadamard [64, 7, 32], soft maximum-likelihood decoding."""

from __future__ import annotations

import numpy as np

from ledger.biometrics import hadamard


def _soft(bits: np.ndarray, erased: np.ndarray | None = None) -> np.ndarray:
    soft = 1.0 - 2.0 * bits.astype(np.float32)
    if erased is not None:
        soft[erased] = 0.0
    return soft


def test_codewords_are_pairwise_at_least_32_apart():
    words = hadamard.CODEWORDS.astype(np.int32)
    distance = (words[:, None, :] != words[None, :, :]).sum(-1)
    np.fill_diagonal(distance, 64)
    assert distance.min() == 32


def test_decodes_every_symbol_under_15_errors():
    rng = np.random.default_rng(1)
    for symbol in range(128):
        word = hadamard.CODEWORDS[symbol].copy()
        word[rng.choice(64, 15, replace=False)] ^= 1
        decided, top, second = hadamard.decide(hadamard.correlate(_soft(word)))
        assert decided == symbol
        assert top > second


def test_erasures_count_for_nothing_rather_than_against():
    rng = np.random.default_rng(2)
    word = hadamard.CODEWORDS[77].copy()
    erased = np.zeros(64, dtype=bool)
    erased[rng.choice(64, 40, replace=False)] = True
    word[erased] ^= 1  # every erased bit wrong, but flagged
    decided, _, _ = hadamard.decide(hadamard.correlate(_soft(word, erased)))
    assert decided == 77


def test_fully_erased_block_has_zero_margin():
    decided, top, second = hadamard.decide(hadamard.correlate(np.zeros(64, dtype=np.float32)))
    assert top == second == 0


def test_batch_decoding_matches_single_decoding():
    rng = np.random.default_rng(3)
    soft = rng.choice([-1.0, 0.0, 1.0], size=(5, 32, 64)).astype(np.float32)
    batch = hadamard.decide(hadamard.correlate(soft))
    for i in range(5):
        for b in range(32):
            single = hadamard.decide(hadamard.correlate(soft[i, b]))
            assert single[0] == batch[0][i, b]
