"""1:N identification over a gallery of helper data, and the gallery's encrypted file."""

from __future__ import annotations

import os

import numpy as np
import pytest

from ledger.biometrics import (
    Gallery,
    GalleryError,
    HelperData,
    InsufficientOverlap,
    commitment_of,
    enrol,
    rotate,
)

from .conftest import fixed_secret

GALLERY_SIZE = 500
KEY = bytes(range(32))


def _identity(i: int) -> bytes:
    return b"child-" + i.to_bytes(4, "big")


def _pseudonym(i: int) -> bytes:
    return bytes([i % 256]) * 32


def _put(g: Gallery, ident: bytes, code, mask, i: int):
    """Enrol one capture with secret i and add it; returns the enrolment."""
    enrolment = enrol(code, mask, fixed_secret(i))
    g.put(ident, enrolment.helper, fixed_secret(i), _pseudonym(i))
    return enrolment


@pytest.fixture(scope="module")
def population(dataset):
    """500 enrolled eyes; the first 60 also have a rescan."""
    return dataset.genuine_pairs(GALLERY_SIZE, seed=23)


@pytest.fixture(scope="module")
def gallery(population):
    g = Gallery()
    for i in range(GALLERY_SIZE):
        _put(g, _identity(i), population.enrol.codes[i], population.enrol.masks[i], i)
    return g


def test_identifies_enrolled_children_among_500(gallery, population, dataset):
    hd = dataset.hamming_distance(population.enrol, population.probe)
    for i in range(40):
        if hd[i] > 0.2:
            continue  # outside the error budget, identification may legitimately miss
        found = gallery.match(population.probe.codes[i], population.probe.masks[i])
        assert found is not None and found.identity_id == _identity(i)
        assert found.secret == fixed_secret(i)
        assert found.pseudonym_key == _pseudonym(i)
        found_id = gallery.identify(population.probe.codes[i], population.probe.masks[i])
        assert found_id == _identity(i)


def test_returns_none_for_strangers(gallery, strangers):
    for j in range(20):
        assert gallery.identify(strangers.codes[j], strangers.masks[j]) is None


def test_screening_ranks_the_right_record_first(gallery, population):
    distance, shift = gallery.screen(population.probe.codes[7], population.probe.masks[7])
    assert distance.shape == shift.shape == (GALLERY_SIZE,)
    assert int(np.argmin(distance)) == 7


@pytest.mark.parametrize("turn", [-8, -3, 6])
def test_identifies_a_rotated_rescan_and_reports_the_turn(gallery, population, turn):
    base = gallery.match(population.probe.codes[5], population.probe.masks[5])
    found = gallery.match(rotate(population.probe.codes[5], turn), rotate(population.probe.masks[5], turn),
                          max_shift=10)
    assert found is not None and found.identity_id == _identity(5)
    assert found.shift == base.shift + turn


def test_rejects_nothing_for_want_of_threads(population, gallery):
    single = Gallery(threads=1)
    for i in range(GALLERY_SIZE):
        _put(single, _identity(i), population.enrol.codes[i], population.enrol.masks[i], i)
    a = single.screen(population.probe.codes[9], population.probe.masks[9])
    b = gallery.screen(population.probe.codes[9], population.probe.masks[9])
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_rejects_a_scan_too_occluded_to_decide(gallery, population):
    mask = population.probe.masks[0].copy()
    mask[700:] = 0
    with pytest.raises(InsufficientOverlap):
        gallery.identify(population.probe.codes[0], mask)


def test_empty_gallery_identifies_nobody(population):
    assert Gallery().identify(population.probe.codes[0], population.probe.masks[0]) is None


def test_re_enrolment_replaces_the_helper_but_keeps_the_identity(population):
    g = Gallery()
    _put(g, b"child", population.enrol.codes[1], population.enrol.masks[1], 1)
    new, new_commitment = _put(g, b"child", population.probe.codes[1], population.probe.masks[1], 901)
    assert len(g) == 1 and g.get(b"child") == new
    found = g.match(population.enrol.codes[1], population.enrol.masks[1])
    assert found is not None and found.identity_id == b"child"
    assert commitment_of(found.secret) == new_commitment


def test_remove_forgets_an_identity_and_keeps_the_others_searchable(population):
    g = Gallery()
    for i in range(5):
        _put(g, _identity(i), population.enrol.codes[i], population.enrol.masks[i], i)
    g.remove(_identity(1))
    assert _identity(1) not in g and len(g) == 4
    assert g.identify(population.enrol.codes[1], population.enrol.masks[1]) is None
    for i in (0, 2, 3, 4):  # the last row moved into the hole and must still match
        assert g.identify(population.enrol.codes[i], population.enrol.masks[i]) == _identity(i)
    with pytest.raises(KeyError):
        g.remove(_identity(1))


@pytest.mark.parametrize("bad", [b"", b"x" * 65, "text"])
def test_rejects_bad_identity_ids(population, bad):
    helper = enrol(population.enrol.codes[0], population.enrol.masks[0], fixed_secret(0)).helper
    with pytest.raises((TypeError, ValueError)):
        Gallery().put(bad, helper, fixed_secret(0), _pseudonym(0))


def test_save_load_roundtrip(tmp_path, gallery, population):
    path = tmp_path / "gallery.bin"
    gallery.save(path, KEY)
    loaded = Gallery.load(path, KEY)
    assert len(loaded) == len(gallery)
    assert sorted(loaded.ids()) == sorted(gallery.ids())
    assert loaded.get(_identity(3)) == gallery.get(_identity(3))
    assert loaded.identify(population.probe.codes[3], population.probe.masks[3]) == _identity(3)
    assert [p.name for p in tmp_path.iterdir()] == ["gallery.bin"]  # no temp files left


def test_file_is_encrypted_at_rest(tmp_path, gallery):
    path = tmp_path / "gallery.bin"
    gallery.save(path, KEY)
    raw = path.read_bytes()
    helper = gallery.get(_identity(0))
    assert helper.sketch[:16] not in raw and _identity(0) not in raw


def test_save_replaces_an_existing_file(tmp_path, population):
    path = tmp_path / "gallery.bin"
    g = Gallery()
    g.save(path, KEY)
    _put(g, b"child", population.enrol.codes[0], population.enrol.masks[0], 0)
    g.save(path, KEY)
    assert len(Gallery.load(path, KEY)) == 1


def test_wrong_key_fails_cleanly(tmp_path, gallery):
    path = tmp_path / "gallery.bin"
    gallery.save(path, KEY)
    with pytest.raises(GalleryError):
        Gallery.load(path, bytes(32))


@pytest.mark.parametrize("key", [b"short", bytes(33), "k" * 32])
def test_rejects_keys_of_the_wrong_size(tmp_path, gallery, key):
    with pytest.raises(GalleryError):
        gallery.save(tmp_path / "g.bin", key)


def test_tampered_file_fails_cleanly(tmp_path, gallery):
    path = tmp_path / "gallery.bin"
    gallery.save(path, KEY)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(GalleryError):
        Gallery.load(path, KEY)


def test_truncated_or_foreign_files_fail_cleanly(tmp_path, gallery):
    path = tmp_path / "gallery.bin"
    gallery.save(path, KEY)
    raw = path.read_bytes()
    for content in (raw[:40], raw[:10], b"", b"not a gallery at all"):
        path.write_bytes(content)
        with pytest.raises(GalleryError):
            Gallery.load(path, KEY)


def test_sealed_contents_are_validated_like_any_input(population):
    helper = enrol(population.enrol.codes[0], population.enrol.masks[0], fixed_secret(0)).helper
    import msgpack

    good, nym, ref = helper.to_bytes(), _pseudonym(0), bytes(256)

    def pack(records, v=2):
        return msgpack.packb({"records": records, "v": v}, use_bin_type=True)

    for plain in (
        pack([[b"a", good, nym, ref], [b"a", good, nym, ref]]),
        pack([[b"a", good[:-1], nym, ref]]),
        pack([[b"", good, nym, ref]]),
        pack([[b"a", good, nym[:-1], ref]]),
        pack([[b"a", good, nym, ref + b"x"]]),
        pack([[b"a", good]]),
        pack([b"a"]),
        pack([], v=1),
        msgpack.packb([1, 2], use_bin_type=True),
        b"\xc1",
    ):
        with pytest.raises(GalleryError):
            Gallery.from_plaintext(plain)
    assert len(Gallery.from_plaintext(pack([[b"a", good, nym, ref]]))) == 1
    assert isinstance(HelperData.from_bytes(good), HelperData)


def test_failed_save_leaves_the_old_file_and_no_temp_file(tmp_path, gallery, monkeypatch):
    path = tmp_path / "gallery.bin"
    Gallery().save(path, KEY)
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        gallery.save(path, KEY)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["gallery.bin"]
