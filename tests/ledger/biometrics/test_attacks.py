"""Hostile cases from the literature on fuzzy commitment with iris codes (see THREAT_MODEL.md)."""

from __future__ import annotations

import numpy as np

from ledger.biometrics import enrol, hadamard
from ledger.biometrics.fuzzy_commitment import codeword_symbols, permutation
from ledger.biometrics.template import ANGLES, PHASE_BITS, RINGS, unpack_bits

from .conftest import fixed_secret

# Template positions of angular neighbours (same ring and phase, next angle): the pairs whose
# bits agree far more often than chance in a real or synthetic iris code.
_IDX = np.arange(RINGS * ANGLES * PHASE_BITS).reshape(RINGS, ANGLES, PHASE_BITS)
_NEIGHBOURS = np.stack([_IDX.reshape(-1), np.roll(_IDX, -1, axis=1).reshape(-1)], axis=1)


def _smoothness_attack(sketch: np.ndarray, perm: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per block, guess the symbol whose codeword leaves the smoothest template.

    The attacker holds the helper data (sketch, permutation seed, mask) and knows iris codes
    are smooth along the angle: for every block and all 128 symbols it counts agreeing
    neighbour pairs inside the block and takes the best (the block-wise statistical attacks
    of Rathgeb and Uhl exploit this kind of structure).
    """
    code_pos = np.empty_like(perm, dtype=np.int64)
    code_pos[perm] = np.arange(perm.size)
    a, b = code_pos[_NEIGHBOURS[:, 0]], code_pos[_NEIGHBOURS[:, 1]]
    visible = (mask[_NEIGHBOURS[:, 0]] & mask[_NEIGHBOURS[:, 1]]).astype(bool)
    keep = ((a // 64) == (b // 64)) & visible
    a, b = a[keep], b[keep]
    words = hadamard.CODEWORDS
    guesses = np.zeros(32, dtype=np.int64)
    for block in range(32):
        sel = (a // 64) == block
        ia, ib = a[sel] % 64, b[sel] % 64
        part = sketch[block * 64 : (block + 1) * 64]
        agree = ((part[ia] ^ words[:, ia]) == (part[ib] ^ words[:, ib])).sum(axis=1)
        guesses[block] = int(np.argmax(agree))
    return guesses


def test_decodability_attack_does_not_link_two_enrolments(pairs):
    # Kelkboom et al. (2011): without per-enrolment permutations the XOR of two sketches of one
    # eye is a codeword plus the small difference of two scans, so it decodes. Here each sketch
    # sits in its own permutation; aligning them through the template coordinates (which the
    # attacker can do, the seeds are in the helper data) leaves a word that decodes no better
    # than chance.
    first = enrol(pairs.enrol.codes[10], pairs.enrol.masks[10], fixed_secret(200))
    second = enrol(pairs.probe.codes[10], pairs.probe.masks[10], fixed_secret(201))
    p1, p2 = permutation(first.helper.seed), permutation(second.helper.seed)
    s1, s2 = unpack_bits(first.helper.sketch), unpack_bits(second.helper.sketch)
    in_template = np.empty_like(s2)
    in_template[p2] = s2
    aligned = in_template[p1]
    soft = (1.0 - 2.0 * (s1 ^ aligned).astype(np.float32)).reshape(32, 64)
    _, top, _ = hadamard.decide(hadamard.correlate(soft))
    # a codeword plus 10% noise would correlate at ~0.8 per block; chance level is ~0.3
    assert float(top.mean()) / 64 < 0.45


def test_decodability_attack_would_link_without_the_permutation(pairs):
    # The control: the same two scans XORed in template order do decode, block after block.
    x1, x2 = pairs.enrol.codes[10], pairs.probe.codes[10]
    both = (pairs.enrol.masks[10] & pairs.probe.masks[10]).astype(np.float32)
    words = [hadamard.encode([s] * 32) for s in (5, 99)]
    diff = (words[0] ^ x1) ^ (words[1] ^ x2)  # two sketches without permutation
    soft = ((1.0 - 2.0 * diff.astype(np.float32)) * both).reshape(32, 64)
    decided, _, _ = hadamard.decide(hadamard.correlate(soft))
    # the XOR of the two symbols comes out of most blocks (chance: 1 in 128), which links the
    # two records and hands the attacker the difference of the two secrets' codewords
    assert np.mean(decided == (5 ^ 99)) > 0.5


def test_blockwise_smoothness_attack_recovers_too_few_blocks(pairs):
    right = []
    for i in range(24):
        secret = fixed_secret(300 + i)
        helper, _ = enrol(pairs.enrol.codes[i], pairs.enrol.masks[i], secret)
        guesses = _smoothness_attack(
            unpack_bits(helper.sketch), permutation(helper.seed), unpack_bits(helper.mask)
        )
        right.append(int((guesses == np.asarray(codeword_symbols(secret))).sum()))
    # 19 correct blocks (and no wrong ones) are needed to reach the secret; the permutation
    # leaves about two neighbour pairs per block, so the attack stays near chance (1/128).
    assert max(right) < 8
    assert np.mean(right) / 32 < 0.08


def test_blockwise_smoothness_attack_succeeds_on_contiguous_blocks(pairs):
    # The control: with Hao et al.'s contiguous blocks the same attack does far better.
    right = []
    identity = np.arange(2048)
    for i in range(24):
        symbols = np.asarray(codeword_symbols(fixed_secret(300 + i)))
        sketch = hadamard.encode(symbols) ^ pairs.enrol.codes[i]
        guesses = _smoothness_attack(sketch, identity, pairs.enrol.masks[i])
        right.append(int((guesses == symbols).sum()))
    assert np.mean(right) / 32 > 0.12
