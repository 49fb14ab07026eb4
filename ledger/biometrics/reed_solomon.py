"""Reed–Solomon evaluation code over GF(2^7) with Gao's errors-and-erasures decoder.

This is the outer code of the fuzzy commitment. Each symbol rides in one 64-bit Hadamard block,
so a symbol error is a block the inner decoder got wrong, and an erasure is a block it has no
confidence in (for instance one hidden by an eyelid). The code is the evaluation form: the
message is the coefficient vector of a polynomial ``f`` of degree < k and the codeword is
``f(a_1), ..., f(a_n)`` at distinct nonzero field points. With ``s`` erased positions the
decoder corrects ``e`` errors whenever ``2e + s <= n - k``.

Gao's algorithm (S. Gao, "A new algorithm for decoding Reed–Solomon codes", 2003) is used
instead of Berlekamp–Massey/Forney because erasures need no special treatment (an erased
position is simply left out of the interpolation) and the whole decoder is an interpolation
plus one partial extended Euclid, short enough to hold against the paper line by line.

Polynomials are lists of field elements, lowest degree first, with no trailing zeros; the zero
polynomial is the empty list.
"""

from __future__ import annotations

from collections.abc import Sequence

FIELD_BITS = 7
FIELD_SIZE = 1 << FIELD_BITS
# x^7 + x^3 + 1 is primitive over GF(2), so x generates the multiplicative group.
PRIMITIVE_POLY = 0b1000_1001

_EXP = [0] * (2 * FIELD_SIZE)
_LOG = [0] * FIELD_SIZE


def _build_tables() -> None:
    value = 1
    for power in range(FIELD_SIZE - 1):
        _EXP[power] = value
        _LOG[value] = power
        value <<= 1
        if value & FIELD_SIZE:
            value ^= PRIMITIVE_POLY
    if value != 1:  # pragma: no cover - guards the constant above
        raise RuntimeError("PRIMITIVE_POLY is not primitive")
    for power in range(FIELD_SIZE - 1, 2 * FIELD_SIZE):
        _EXP[power] = _EXP[power - (FIELD_SIZE - 1)]


_build_tables()

Poly = list[int]


def gf_mul(a: int, b: int) -> int:
    if a == 0 or b == 0:
        return 0
    return _EXP[_LOG[a] + _LOG[b]]


def gf_inv(a: int) -> int:
    if a == 0:
        raise ZeroDivisionError("0 has no inverse in GF(2^7)")
    return _EXP[(FIELD_SIZE - 1) - _LOG[a]]


def gf_pow_alpha(power: int) -> int:
    return _EXP[power % (FIELD_SIZE - 1)]


def _trim(p: Poly) -> Poly:
    while p and p[-1] == 0:
        p.pop()
    return p


def poly_eval(p: Sequence[int], x: int) -> int:
    acc = 0
    if x == 0:
        return p[0] if p else 0
    log_x = _LOG[x]
    for coef in reversed(p):
        acc = (_EXP[_LOG[acc] + log_x] if acc else 0) ^ coef
    return acc


def poly_mul(a: Sequence[int], b: Sequence[int]) -> Poly:
    if not a or not b:
        return []
    out = [0] * (len(a) + len(b) - 1)
    for i, ai in enumerate(a):
        if ai == 0:
            continue
        log_ai = _LOG[ai]
        for j, bj in enumerate(b):
            if bj:
                out[i + j] ^= _EXP[log_ai + _LOG[bj]]
    return _trim(out)


def poly_divmod(num: Sequence[int], den: Sequence[int]) -> tuple[Poly, Poly]:
    if not den:
        raise ZeroDivisionError("division by the zero polynomial")
    rem = list(num)
    if len(rem) < len(den):
        return [], _trim(rem)
    quot = [0] * (len(rem) - len(den) + 1)
    inv_lead_log = (FIELD_SIZE - 1) - _LOG[den[-1]]
    dlen = len(den)
    den_logs = [(_LOG[c] if c else -1) for c in den]
    for shift in range(len(rem) - dlen, -1, -1):
        lead = rem[shift + dlen - 1]
        if lead == 0:
            continue
        factor_log = (_LOG[lead] + inv_lead_log) % (FIELD_SIZE - 1)
        quot[shift] = _EXP[factor_log]
        for j in range(dlen):
            dl = den_logs[j]
            if dl >= 0:
                rem[shift + j] ^= _EXP[dl + factor_log]
    return _trim(quot), _trim(rem[: dlen - 1])


def _poly_add(a: Sequence[int], b: Sequence[int]) -> Poly:
    if len(a) < len(b):
        a, b = b, a
    out = list(a)
    for i, c in enumerate(b):
        out[i] ^= c
    return _trim(out)


def _vanishing(points: Sequence[int]) -> Poly:
    """prod (x - a) over the points; in characteristic 2, minus is plus."""
    out = [1]
    for a in points:
        nxt = [0] * (len(out) + 1)
        for i, c in enumerate(out):
            nxt[i + 1] ^= c
            nxt[i] ^= gf_mul(c, a)
        out = nxt
    return out


def _interpolate(points: Sequence[int], values: Sequence[int], g0: Sequence[int]) -> Poly:
    """Lagrange interpolation through (points[i], values[i]) using g0 = prod (x - a_i)."""
    n = len(points)
    out = [0] * n
    for a, value in zip(points, values, strict=True):
        if value == 0:
            continue
        # basis = g0 / (x - a) by synthetic division (exact, degree n - 1)
        basis = [0] * n
        carry = 0
        for i in range(n, 0, -1):
            carry = g0[i] ^ gf_mul(carry, a)
            basis[i - 1] = carry
        denom = poly_eval(basis, a)
        scale = gf_mul(value, gf_inv(denom))
        log_scale = _LOG[scale]
        for i, c in enumerate(basis):
            if c:
                out[i] ^= _EXP[_LOG[c] + log_scale]
    return _trim(out)


class ReedSolomon:
    """RS(n, k) over GF(2^7), evaluated at alpha^0 .. alpha^(n-1)."""

    def __init__(self, n: int, k: int) -> None:
        if not 0 < k < n < FIELD_SIZE:
            raise ValueError(f"need 0 < k < n < {FIELD_SIZE}, got n={n}, k={k}")
        self.n = n
        self.k = k
        self.points = tuple(gf_pow_alpha(i) for i in range(n))
        self._full_vanishing = _vanishing(self.points)

    def encode(self, message: Sequence[int]) -> list[int]:
        """Evaluate the message polynomial (k symbols, lowest degree first) at every point."""
        if len(message) != self.k or any(not 0 <= m < FIELD_SIZE for m in message):
            raise ValueError(f"message must be {self.k} symbols in [0, {FIELD_SIZE})")
        return [poly_eval(message, a) for a in self.points]

    def decode(self, received: Sequence[int], erasures: Sequence[int] = ()) -> list[int] | None:
        """Return the k message symbols, or None if no codeword is within reach.

        ``erasures`` are positions to ignore. Success is guaranteed when ``2e + s <= n - k``
        (e errors among the kept positions, s erasures); beyond that the result is either None
        or some other codeword, which is why callers confirm every result with a check value.
        """
        erased = set(erasures)
        keep = [i for i in range(self.n) if i not in erased]
        n_kept = len(keep)
        if n_kept < self.k:
            return None
        points = [self.points[i] for i in keep]
        values = [received[i] for i in keep]
        g0 = self._full_vanishing if not erased else _vanishing(points)
        g1 = _interpolate(points, values, g0)
        # Partial extended Euclid on (g0, g1), tracking only the cofactor of g1.
        r_prev, r_cur = list(g0), g1
        v_prev, v_cur = [], [1]
        while r_cur and 2 * (len(r_cur) - 1) >= n_kept + self.k:
            quot, rem = poly_divmod(r_prev, r_cur)
            r_prev, r_cur = r_cur, rem
            v_prev, v_cur = v_cur, _poly_add(v_prev, poly_mul(quot, v_cur))
        if not r_cur:
            # The received word vanishes on at least (n + k) / 2 kept points, so the zero
            # codeword is within the decoding radius (Gao's g = 0 case).
            return [0] * self.k
        f, rem = poly_divmod(r_cur, v_cur)
        if rem or len(f) > self.k:
            return None
        return f + [0] * (self.k - len(f))
