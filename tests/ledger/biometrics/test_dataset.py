"""The synthetic iris-code generator: seeded, and with the statistics it claims."""

from __future__ import annotations

import numpy as np


def test_same_seed_same_data(dataset):
    a = dataset.genuine_pairs(20, seed=5)
    b = dataset.genuine_pairs(20, seed=5)
    assert np.array_equal(a.enrol.codes, b.enrol.codes)
    assert np.array_equal(a.probe.masks, b.probe.masks)
    assert np.array_equal(a.ber, b.ber)
    c = dataset.genuine_pairs(20, seed=6)
    assert not np.array_equal(a.enrol.codes, c.enrol.codes)


def test_pairs_do_not_depend_on_how_many_strangers_are_drawn(dataset):
    a = dataset.genuine_pairs(10, seed=5)
    dataset.strangers(50, seed=5)
    b = dataset.genuine_pairs(10, seed=5)
    assert np.array_equal(a.probe.codes, b.probe.codes)


def test_statistics_match_the_stated_model(dataset):
    pairs = dataset.genuine_pairs(400, seed=3)
    others = dataset.strangers(400, seed=3)
    stats = dataset.describe(pairs, others)
    # impostors: Daugman's mean 0.5, sd ~0.032 (about 249 degrees of freedom)
    assert abs(stats["impostor_hd_mean"] - 0.5) < 0.01
    assert 0.025 < stats["impostor_hd_sd"] < 0.04
    # genuine rescans: 5-25% bit errors, centred near 0.1
    assert 0.07 < stats["genuine_hd_mean"] < 0.13
    assert stats["genuine_hd_percentiles"]["1"] > 0.04
    assert stats["genuine_hd_percentiles"]["99"] < 0.25
    # occlusion: masks flag a sizeable fraction of bits
    assert 0.08 < stats["flagged_fraction"] < 0.25


def test_fixed_error_rate_is_honoured(dataset):
    pairs = dataset.genuine_pairs(100, seed=4, ber=0.2)
    hd = dataset.hamming_distance(pairs.enrol, pairs.probe)
    assert 0.19 < hd.mean() < 0.23  # the drawn rate plus undetected occlusion bursts


def test_codes_and_masks_are_bits(dataset):
    caps = dataset.strangers(5, seed=1)
    assert caps.codes.shape == caps.masks.shape == (5, 2048)
    assert set(np.unique(caps.codes)) <= {0, 1} and set(np.unique(caps.masks)) <= {0, 1}
