"""The correlation attack on fuzzy commitment over iris codes, as an attacker would run it.

Fuzzy commitment hides a codeword ``c = G m`` of a GF(2)-linear code under the template:
``sketch = c XOR x[perm]``. Iris codes are smooth along the angle (neighbouring bits agree far
more often than chance), so every pair of angular neighbours (t1, t2) that both hold template
bits gives a noisy linear equation in the message bits::

    sketch[p(t1)] XOR sketch[p(t2)] = (G[p(t1)] XOR G[p(t2)]) . m  XOR  (x[t1] XOR x[t2])

with the last term 0 for most pairs. The permutation does not help: its seed is in the helper
data. Solving ``y = A m + e`` for a sparse ``e`` is decoding a random linear code, which
information-set decoding does: Lee and Brickell (1988): take a random set of equations that
determine m, solve, and also try the solutions with up to ``p`` of those equations flipped;
the right m leaves few unsatisfied equations (the pairs that truly disagree), any other about
half. Expected iterations: ``1 / P(at most p of the k chosen equations are wrong)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ledger.biometrics import hadamard
from ledger.biometrics.reed_solomon import ReedSolomon
from ledger.biometrics.template import ANGLES, PHASE_BITS, RINGS

_IDX = np.arange(RINGS * ANGLES * PHASE_BITS).reshape(RINGS, ANGLES, PHASE_BITS)
NEIGHBOURS = np.stack([_IDX.reshape(-1), np.roll(_IDX, -1, axis=1).reshape(-1)], axis=1)


def generator_matrix(outer: ReedSolomon) -> np.ndarray:
    """Rows = the 2048-bit codewords of each message bit (bit b of symbol s): the code is
    GF(2)-linear (RS over GF(2^7) is linear over GF(2), and so is the Hadamard map)."""
    rows = []
    for symbol in range(outer.k):
        for bit in range(hadamard.SYMBOL_BITS):
            message = [0] * outer.k
            message[symbol] = 1 << bit
            rows.append(hadamard.encode(outer.encode(message)))
    return np.array(rows, dtype=np.uint8)


def equations(sketch: np.ndarray, perm: np.ndarray, mask: np.ndarray, generator: np.ndarray):
    """(A, y): one row per angular neighbour pair visible in the enrolment mask."""
    code_pos = np.empty(perm.size, dtype=np.int64)
    code_pos[perm] = np.arange(perm.size)
    a, b = NEIGHBOURS[:, 0], NEIGHBOURS[:, 1]
    # pairs next to an occluded bit are skipped: undetected eyelid rims make them unreliable
    solid = mask.astype(bool) & np.roll(mask.reshape(RINGS, ANGLES, PHASE_BITS), 1, axis=1).reshape(-1).astype(bool) \
        & np.roll(mask.reshape(RINGS, ANGLES, PHASE_BITS), -1, axis=1).reshape(-1).astype(bool)
    keep = solid[a] & solid[b]
    pa, pb = code_pos[a[keep]], code_pos[b[keep]]
    matrix = (generator[:, pa] ^ generator[:, pb]).T.astype(np.uint8)
    rhs = (sketch[pa] ^ sketch[pb]).astype(np.uint8)
    return matrix, rhs


def _solve(matrix: np.ndarray, rhs: np.ndarray, rows: np.ndarray, k: int):
    """Gaussian elimination over GF(2) on the given equations.

    Returns (m, combo, null): a solution with free variables 0, ``combo`` (k x len(rows)) such
    that flipping chosen equation j changes m by ``combo[:, j]``, and a basis of the null space
    (columns no chosen equation constrains; pair equations never see a component the whole
    code shares, such as the all-ones word of the biorthogonal inner code)."""
    sub = np.concatenate([matrix[rows], np.eye(len(rows), dtype=np.uint8), rhs[rows, None]], axis=1)
    pivot_of: dict[int, int] = {}
    r = 0
    for col in range(k):
        if r == len(rows):
            break
        hits = np.nonzero(sub[r:, col])[0]
        if hits.size == 0:
            continue
        p = r + hits[0]
        if p != r:
            sub[[r, p]] = sub[[p, r]]
        others = np.nonzero(sub[:, col])[0]
        others = others[others != r]
        sub[others] ^= sub[r]
        pivot_of[col] = r
        r += 1
    free = [c for c in range(k) if c not in pivot_of]
    if len(free) > 4:
        return None
    m = np.zeros(k, dtype=np.uint8)
    combo = np.zeros((k, len(rows)), dtype=np.uint8)
    for col, row in pivot_of.items():
        m[col] = sub[row, -1]
        combo[col] = sub[row, k:k + len(rows)]
    null = []
    for f in free:
        v = np.zeros(k, dtype=np.uint8)
        v[f] = 1
        for col, row in pivot_of.items():
            v[col] = sub[row, f]
        null.append(v)
    return m, combo, null


@dataclass
class AttackResult:
    message: np.ndarray | None
    iterations: int
    seconds: float
    equations: int
    unknowns: int
    error_rate: float | None  # of the equations, at the true message (when known)


def lee_brickell(matrix: np.ndarray, rhs: np.ndarray, *, p: int, max_iterations: int, seed: int,
                 accept: Callable[[np.ndarray], bool], max_seconds: float,
                 threshold: float = 0.3) -> AttackResult:
    """Lee–Brickell information-set decoding of ``rhs = matrix . m + e``.

    A candidate whose residual weight is below ``threshold`` of the equations goes to
    ``accept`` (the attacker's check: the helper's check value, or the commitment on chain).
    """
    rng = np.random.default_rng(seed)
    n, k = matrix.shape
    as_float = matrix.astype(np.float32)  # BLAS: exact for these small integer sums
    start = time.perf_counter()
    limit = int(threshold * n)
    for iteration in range(1, max_iterations + 1):
        if time.perf_counter() - start > max_seconds:
            break
        rows = rng.permutation(n)[: k + 16]
        solved = _solve(matrix, rhs, rows, k)
        if solved is None:
            continue
        m, combo, null = solved
        base = ((as_float @ m.astype(np.float32)).astype(np.int64) + rhs) & 1
        # flipping chosen equation j changes m by the j-th column of the inverse
        deltas = combo.T.astype(np.uint8)  # (k + 16, k)
        effect = (as_float @ deltas.T.astype(np.float32)).astype(np.int64) & 1  # (n, k + 16)
        base_w = np.packbits(base.astype(np.uint8), bitorder="little").view(np.uint8)
        cols = np.packbits(effect.T.astype(np.uint8), axis=1, bitorder="little")
        for pick in _light_flips(base_w, cols, p, limit):
            guess = m.copy()
            for j in pick:
                guess ^= deltas[j]
            for mix in range(1 << len(null)):  # the components no equation sees
                trial = guess.copy()
                for bit, vector in enumerate(null):
                    if mix >> bit & 1:
                        trial ^= vector
                if accept(trial):
                    return AttackResult(trial, iteration, time.perf_counter() - start, n, k, None)
    return AttackResult(None, iteration, time.perf_counter() - start, n, k, None)


def _light_flips(base: np.ndarray, cols: np.ndarray, p: int, limit: int) -> list[tuple[int, ...]]:
    """The sets of at most p chosen equations whose flip leaves at most ``limit`` residuals."""
    weight = np.bitwise_count if hasattr(np, "bitwise_count") else None
    out: list[tuple[int, ...]] = []

    def count(words: np.ndarray) -> np.ndarray:
        return weight(words).sum(axis=-1) if weight else np.unpackbits(words, axis=-1).sum(axis=-1)

    if count(base) <= limit:
        out.append(())
    if p >= 1:
        one = cols ^ base
        out += [(int(j),) for j in np.nonzero(count(one) <= limit)[0]]
    if p >= 2:
        two = count(one[:, None, :] ^ cols[None, :, :])
        i, j = np.nonzero(np.triu(two <= limit, 1))
        out += [(int(a), int(b)) for a, b in zip(i, j, strict=True)]
    return out


def message_bits(symbols: list[int]) -> np.ndarray:
    """The message bits in generator-row order (bit b of symbol s at 7 s + b)."""
    return np.array([(s >> b) & 1 for s in symbols for b in range(hadamard.SYMBOL_BITS)], dtype=np.uint8)


def symbols_of(bits: np.ndarray, k: int) -> list[int]:
    return [int(sum(int(bits[7 * s + b]) << b for b in range(7))) for s in range(k)]


def prange_cost(k: int, error_rate: float, p: int) -> float:
    """Expected Lee–Brickell iterations: 1 / P(at most p of k chosen equations wrong)."""
    from math import comb

    success = sum(comb(k, i) * error_rate**i * (1 - error_rate) ** (k - i) for i in range(p + 1))
    return 1.0 / success
