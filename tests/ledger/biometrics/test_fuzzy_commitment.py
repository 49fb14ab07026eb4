"""Enrol / reproduce: genuine rescans unlock, impostors and altered helper data do not."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from nacl.signing import VerifyKey

from ledger.biometrics import (
    BIO_BITS,
    MAX_SHIFT,
    SALT_BYTES,
    SECRET_BYTES,
    InsufficientOverlap,
    InvalidSecret,
    InvalidTemplate,
    ReproductionFailed,
    combine,
    commitment_of,
    derive_signing_key,
    enrol,
    recover,
    reproduce,
    rotate,
)
from ledger.biometrics.fuzzy_commitment import (
    codeword_symbols,
    reaches_codeword,
    soft_blocks,
    unlock,
)
from ledger.biometrics.template import pack_bits, unpack_bits

from .conftest import fixed_secret, flip_random_bits


def _enrol(pairs, i):
    return enrol(pairs.enrol.codes[i], pairs.enrol.masks[i], fixed_secret(i))


def test_secret_is_a_256_bit_salt_and_a_56_bit_biometric_part():
    assert SECRET_BYTES * 8 == SALT_BYTES * 8 + BIO_BITS == 256 + 56


@pytest.mark.parametrize("shift", [-8, -5, -1, 3, 8])
def test_rotated_rescans_unlock_and_report_the_shift(pairs, shift):
    helper, commitment = _enrol(pairs, 11)
    base = recover(pairs.probe.codes[11], pairs.probe.masks[11], helper).shift  # capture jitter
    found = recover(rotate(pairs.probe.codes[11], shift), rotate(pairs.probe.masks[11], shift), helper,
                    expected_commitment=commitment, max_shift=10)
    assert found.secret == fixed_secret(11)
    assert found.shift == base + shift
    assert 0.0 < found.distance < 0.32


def test_rotation_search_is_configurable(pairs):
    helper, _ = _enrol(pairs, 12)
    base = recover(pairs.probe.codes[12], pairs.probe.masks[12], helper).shift
    code, mask = rotate(pairs.probe.codes[12], 20), rotate(pairs.probe.masks[12], 20)
    with pytest.raises(ReproductionFailed):
        reproduce(code, mask, helper)  # far beyond the default +-8
    assert MAX_SHIFT == 8
    assert recover(code, mask, helper, max_shift=24).shift == base + 20


def test_several_enrolment_captures_mask_the_bits_they_disagree_on(pairs):
    first, mask = pairs.enrol.codes[13], pairs.enrol.masks[13]
    second = flip_random_bits(first, 0.05, seed=13)
    third = flip_random_bits(first, 0.05, seed=14)
    bits, keep = combine([first, rotate(second, 3), rotate(third, -2)],
                         [mask, rotate(mask, 3), rotate(mask, -2)])
    disagree = ((first != second) | (first != third)) & (mask == 1)
    assert disagree.any() and not keep[disagree].any()  # aligned back by the search, then masked
    assert (keep == (mask & ~disagree)).all()
    assert (bits[keep == 1] == first[keep == 1]).all()


def test_multi_capture_enrolment_unlocks_with_a_rotated_rescan(dataset):
    eyes = dataset.genuine_pairs(6, seed=4, model=dataset.condition("rotation"), enrol_captures=3)
    for i in range(6):
        helper, commitment = enrol(eyes.enrol_all.codes[i], eyes.enrol_all.masks[i], fixed_secret(i))
        found = recover(eyes.probe.codes[i], eyes.probe.masks[i], helper, expected_commitment=commitment)
        assert abs(found.shift - eyes.rotation[i]) <= 1.5  # enrolment captures jitter by +-1


def test_genuine_rescans_recover_the_secret_and_the_commitment(pairs, dataset):
    hd = dataset.hamming_distance(pairs.enrol, pairs.probe)
    assert hd.max() <= 0.25  # this fixture stays inside the error budget
    for i in range(len(hd)):
        helper, commitment = _enrol(pairs, i)
        secret = reproduce(pairs.probe.codes[i], pairs.probe.masks[i], helper,
                           expected_commitment=commitment)
        assert secret == fixed_secret(i)
        assert bytes(derive_signing_key(secret).verify_key) == commitment


def test_signature_with_the_recovered_key_verifies_against_the_commitment(pairs):
    helper, commitment = _enrol(pairs, 0)
    secret = reproduce(pairs.probe.codes[0], pairs.probe.masks[0], helper)
    signed = derive_signing_key(secret).sign(b"crossing request")
    assert VerifyKey(commitment).verify(signed) == b"crossing request"


@pytest.mark.parametrize("rate", [0.05, 0.10, 0.15, 0.18])
def test_independent_bit_errors_within_the_budget_are_corrected(pairs, rate):
    # Unstructured noise on top of the enrolment capture, with its own occlusion mask.
    for i in range(8):
        helper, _ = _enrol(pairs, i)
        noisy = flip_random_bits(pairs.enrol.codes[i], rate, seed=1000 * i + int(rate * 100))
        assert reproduce(noisy, pairs.enrol.masks[i], helper) == fixed_secret(i)


def test_masked_bits_are_erasures_not_errors(pairs):
    # Destroy 35% of the visible bits but flag them in the probe's mask: still unlocks.
    helper, _ = _enrol(pairs, 3)
    rng = np.random.default_rng(5)
    code = pairs.enrol.codes[3].copy()
    mask = pairs.enrol.masks[3].copy()
    hidden = rng.random(code.size) < 0.35
    code[hidden] ^= 1
    mask[hidden] = 0
    assert reproduce(code, mask, helper) == fixed_secret(3)


def test_rejects_impostors(pairs, strangers):
    for i in range(20):
        helper, _ = _enrol(pairs, i)
        for j in range(10):
            with pytest.raises(ReproductionFailed):
                reproduce(strangers.codes[j], strangers.masks[j], helper)


def test_rejects_another_enrolled_childs_scan(pairs):
    helper, _ = _enrol(pairs, 0)
    for j in range(1, 20):
        with pytest.raises(ReproductionFailed):
            reproduce(pairs.probe.codes[j], pairs.probe.masks[j], helper)


def test_rejects_a_scan_far_beyond_the_budget(pairs):
    helper, _ = _enrol(pairs, 1)
    noisy = flip_random_bits(pairs.enrol.codes[1], 0.40, seed=9)
    with pytest.raises(ReproductionFailed):
        reproduce(noisy, pairs.enrol.masks[1], helper)


def test_rejects_helper_data_of_another_commitment(pairs):
    helper, _ = _enrol(pairs, 2)
    _, other_commitment = _enrol(pairs, 4)
    with pytest.raises(ReproductionFailed):
        reproduce(pairs.probe.codes[2], pairs.probe.masks[2], helper,
                  expected_commitment=other_commitment)


@pytest.mark.parametrize("field", ["seed", "mask", "sketch", "check"])
def test_rejects_helper_data_with_a_single_flipped_bit(pairs, field):
    # Even where the error correction would absorb the change, the check value covers it.
    helper, _ = _enrol(pairs, 5)
    value = bytearray(getattr(helper, field))
    value[len(value) // 2] ^= 0x01
    tampered = dataclasses.replace(helper, **{field: bytes(value)})
    with pytest.raises(ReproductionFailed):
        reproduce(pairs.probe.codes[5], pairs.probe.masks[5], tampered)


def test_rejects_helper_data_spliced_from_two_enrolments(pairs):
    a, _ = _enrol(pairs, 6)
    b, _ = _enrol(pairs, 7)
    spliced = dataclasses.replace(a, check=b.check)
    with pytest.raises(ReproductionFailed):
        reproduce(pairs.probe.codes[6], pairs.probe.masks[6], spliced)


def test_enrolment_is_deterministic_in_template_mask_and_secret(pairs):
    assert _enrol(pairs, 8) == _enrol(pairs, 8)


def test_two_enrolments_of_one_eye_are_unrelated(pairs):
    first = enrol(pairs.enrol.codes[9], pairs.enrol.masks[9], fixed_secret(100))
    second = enrol(pairs.enrol.codes[9], pairs.enrol.masks[9], fixed_secret(101))
    assert first.commitment != second.commitment
    assert first.helper.seed != second.helper.seed
    assert first.helper.check != second.helper.check
    a = unpack_bits(first.helper.sketch)
    b = unpack_bits(second.helper.sketch)
    assert 0.44 < np.mean(a != b) < 0.56  # sketches look independent


def test_emulated_acceptance_region_matches_the_decoder(pairs, strangers):
    # reaches_codeword (used to count false accepts in bulk) must agree with unlock.
    outcomes = set()
    for i in range(30):
        helper, _ = _enrol(pairs, i)
        truth = np.asarray(codeword_symbols(fixed_secret(i)))
        for code, mask in (
            (pairs.probe.codes[i], pairs.probe.masks[i]),
            (flip_random_bits(pairs.enrol.codes[i], 0.27, seed=i), pairs.enrol.masks[i]),
            (strangers.codes[i], strangers.masks[i]),
        ):
            soft = soft_blocks(code, mask, helper)
            real = unlock(soft, helper) == fixed_secret(i)
            assert bool(reaches_codeword(soft[None], truth)[0]) == real
            outcomes.add(real)
    assert outcomes == {True, False}


def test_accepts_packed_bytes_as_well_as_arrays(pairs):
    helper, commitment = enrol(pack_bits(pairs.enrol.codes[0]), pack_bits(pairs.enrol.masks[0]),
                               fixed_secret(0))
    assert (helper, commitment) == _enrol(pairs, 0)
    assert reproduce(pack_bits(pairs.probe.codes[0]), pairs.probe.masks[0].astype(bool),
                     helper) == fixed_secret(0)


def test_commitment_is_the_ed25519_public_key_of_the_derived_key():
    secret = fixed_secret(1)
    assert commitment_of(secret) == bytes(derive_signing_key(secret).verify_key)
    assert len(commitment_of(secret)) == 32
    assert commitment_of(secret) != commitment_of(fixed_secret(2))


@pytest.mark.parametrize("secret", [b"", b"\x00" * 15, b"\x00" * 17, "0" * 16, None])
def test_rejects_secrets_of_the_wrong_size_or_type(pairs, secret):
    with pytest.raises(InvalidSecret):
        enrol(pairs.enrol.codes[0], pairs.enrol.masks[0], secret)


@pytest.mark.parametrize(
    "template",
    [
        b"\x00" * 255,
        np.zeros(2047, dtype=np.uint8),
        np.full(2048, 2, dtype=np.uint8),
        np.zeros(2048, dtype=np.float64),
        [0] * 2048,
    ],
)
def test_rejects_malformed_templates(pairs, template):
    with pytest.raises(InvalidTemplate):
        enrol(template, pairs.enrol.masks[0], fixed_secret(0))


def test_refuses_to_enrol_a_mostly_occluded_scan(pairs):
    mask = pairs.enrol.masks[0].copy()
    mask[: 1200] = 0
    with pytest.raises(InvalidTemplate):
        enrol(pairs.enrol.codes[0], mask, fixed_secret(0))


def test_a_fully_occluded_probe_fails_cleanly(pairs):
    helper, _ = _enrol(pairs, 0)
    with pytest.raises(InsufficientOverlap):
        reproduce(pairs.probe.codes[0], np.zeros(2048, dtype=np.uint8), helper)


def test_rejects_scans_overlapping_the_enrolment_on_too_few_bits(pairs):
    # A clean copy of the enrolled template, but with only ~700 bits visible in both scans:
    # too few for the impostor distribution to be narrow enough, so no decision is made.
    helper, _ = _enrol(pairs, 0)
    mask = pairs.enrol.masks[0].copy()
    mask[700:] = 0
    with pytest.raises(InsufficientOverlap):
        reproduce(pairs.enrol.codes[0], mask, helper)


def test_match_decision_is_applied_after_decoding(pairs, monkeypatch):
    # The rescan decodes (it did above), but with the match threshold tightened below its
    # Hamming distance the candidate must be refused: decoding alone is not acceptance.
    from ledger.biometrics import fuzzy_commitment

    helper, _ = _enrol(pairs, 0)
    assert reproduce(pairs.probe.codes[0], pairs.probe.masks[0], helper) == fixed_secret(0)
    monkeypatch.setattr(fuzzy_commitment, "MAX_MATCH_HD", 0.01)
    with pytest.raises(ReproductionFailed):
        reproduce(pairs.probe.codes[0], pairs.probe.masks[0], helper)
