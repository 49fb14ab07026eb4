"""The outer code: RS(32, 19) over GF(2^7) with Gao's errors-and-erasures decoder."""

from __future__ import annotations

import random

import pytest

from ledger.biometrics.reed_solomon import (
    FIELD_SIZE,
    ReedSolomon,
    gf_inv,
    gf_mul,
    poly_divmod,
    poly_mul,
)

RS = ReedSolomon(32, 19)


def _corrupt(rng: random.Random, codeword: list[int], errors: int, erasures: int):
    positions = rng.sample(range(len(codeword)), errors + erasures)
    received = list(codeword)
    for p in positions[:errors]:
        received[p] ^= rng.randrange(1, FIELD_SIZE)
    erased = positions[errors:]
    for p in erased:
        received[p] = rng.randrange(FIELD_SIZE)  # whatever the channel left there
    return received, erased


def test_field_inverse_and_multiplication_are_consistent():
    for a in range(1, FIELD_SIZE):
        assert gf_mul(a, gf_inv(a)) == 1
    assert gf_mul(0, 5) == 0


def test_polynomial_division_inverts_multiplication():
    rng = random.Random(3)
    for _ in range(200):
        a = [rng.randrange(FIELD_SIZE) for _ in range(rng.randrange(1, 12))] + [1]
        b = [rng.randrange(FIELD_SIZE) for _ in range(rng.randrange(0, 6))]
        b.append(rng.randrange(1, FIELD_SIZE))
        quot, rem = poly_divmod(poly_mul(a, b), b)
        assert quot == a and rem == []


def test_decodes_clean_codewords():
    rng = random.Random(1)
    for _ in range(50):
        message = [rng.randrange(FIELD_SIZE) for _ in range(19)]
        assert RS.decode(RS.encode(message)) == message
    assert RS.decode(RS.encode([0] * 19)) == [0] * 19


@pytest.mark.parametrize("erasures", range(0, 14))
def test_corrects_every_mix_of_errors_and_erasures_within_2e_plus_s_le_13(erasures):
    rng = random.Random(100 + erasures)
    errors = (13 - erasures) // 2
    for _ in range(40):
        message = [rng.randrange(FIELD_SIZE) for _ in range(19)]
        received, erased = _corrupt(rng, RS.encode(message), errors, erasures)
        assert RS.decode(received, erased) == message


def test_never_returns_the_sent_message_beyond_the_radius_without_erasure_help():
    # 7 errors, no erasures: beyond the unique-decoding radius; the decoder must report
    # failure or land on a different codeword (which the check value then rejects).
    rng = random.Random(7)
    for _ in range(100):
        message = [rng.randrange(FIELD_SIZE) for _ in range(19)]
        received, _ = _corrupt(rng, RS.encode(message), 7, 0)
        assert RS.decode(received) != message


def test_gives_up_with_fewer_kept_positions_than_the_dimension():
    message = list(range(19))
    assert RS.decode(RS.encode(message), list(range(14))) is None


def test_random_words_are_rejected():
    rng = random.Random(9)
    outcomes = [RS.decode([rng.randrange(FIELD_SIZE) for _ in range(32)]) for _ in range(200)]
    assert outcomes.count(None) == 200


def test_rejects_bad_parameters_and_messages():
    with pytest.raises(ValueError):
        ReedSolomon(200, 19)
    with pytest.raises(ValueError):
        RS.encode([0] * 18)
    with pytest.raises(ValueError):
        RS.encode([128] + [0] * 18)
