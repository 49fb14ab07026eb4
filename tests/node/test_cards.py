"""Cards: sealed to a card-opening key, opened only with it, carrying the pseudonym key."""

from __future__ import annotations

import json

import pytest

from ledger.biometrics import ReproductionFailed
from ledger.crypto.keys import SigningKey
from node.client.cards import (
    CardError,
    CardKeys,
    enrol_scans,
    new_pseudonym_key,
    open_card,
    read_card,
    read_scan,
    seal_card,
    synthetic_eye,
    unlock_card,
    unlock_files,
    write_card,
    write_scan,
)

IDENTITY = bytes(range(16))


@pytest.fixture(scope="module")
def eye():
    return synthetic_eye(5, rescans=2, captures=3, rescan_shift=-4)


@pytest.fixture(scope="module")
def enrolled(eye):
    return enrol_scans(eye[:3])


def test_unlock_returns_the_key_the_pseudonym_key_and_the_shift(eye, enrolled, tmp_path):
    card_key = SigningKey.generate()
    pseudonym = new_pseudonym_key()
    write_card(tmp_path / "c.card", IDENTITY, enrolled.helper_bytes, pseudonym, card_key.public)
    write_scan(tmp_path / "s.json", *eye[3])
    unlocked = unlock_files(tmp_path / "s.json", tmp_path / "c.card", CardKeys.from_signing_keys([card_key]))
    assert unlocked.identity == IDENTITY and unlocked.pseudonym_key == pseudonym
    assert unlocked.key.public == enrolled.key.public and unlocked.shift == -4


def test_card_shows_only_the_identity_and_the_key_id(enrolled):
    card = seal_card(IDENTITY, enrolled.helper_bytes, new_pseudonym_key(), SigningKey.generate().public)
    assert sorted(card) == ["format", "identity", "key_id", "sealed"]
    assert enrolled.helper.sketch.hex()[:32] not in json.dumps(card)


def test_rotation_terminals_hold_old_and_new_keys(eye, enrolled):
    old, new = SigningKey.generate(), SigningKey.generate()
    both = CardKeys.from_signing_keys([old, new])
    for key in (old, new):
        card = seal_card(IDENTITY, enrolled.helper_bytes, new_pseudonym_key(), key.public)
        assert unlock_card(*eye[4], card, both).identity == IDENTITY
    card = seal_card(IDENTITY, enrolled.helper_bytes, new_pseudonym_key(), new.public)
    with pytest.raises(CardError, match="does not hold"):
        open_card(card, CardKeys.from_signing_keys([old]))


def test_rejects_a_card_whose_sealed_part_was_altered(enrolled):
    key = SigningKey.generate()
    card = seal_card(IDENTITY, enrolled.helper_bytes, new_pseudonym_key(), key.public)
    sealed = bytearray(bytes.fromhex(card["sealed"]))
    sealed[40] ^= 1
    with pytest.raises(CardError, match="cannot be opened"):
        open_card(card | {"sealed": sealed.hex()}, CardKeys.from_signing_keys([key]))


def test_rejects_a_card_whose_outer_identity_was_swapped(enrolled):
    key = SigningKey.generate()
    card = seal_card(IDENTITY, enrolled.helper_bytes, new_pseudonym_key(), key.public)
    with pytest.raises(CardError, match="outside"):
        open_card(card | {"identity": "ff" * 16}, CardKeys.from_signing_keys([key]))


def test_rejects_another_eye(enrolled):
    key = SigningKey.generate()
    card = seal_card(IDENTITY, enrolled.helper_bytes, new_pseudonym_key(), key.public)
    with pytest.raises(ReproductionFailed):
        unlock_card(*synthetic_eye(6)[0], card, CardKeys.from_signing_keys([key]))


def test_rejects_cards_of_the_old_unsealed_format(tmp_path):
    path = tmp_path / "old.card"
    path.write_text(json.dumps({"format": "custos-card/1", "identity": IDENTITY.hex(), "helper": "00"}))
    with pytest.raises(CardError, match="re-enrol"):
        read_card(path)


def test_reads_open_iris_scan_files(tmp_path, eye):
    import numpy as np

    from ledger.biometrics.open_iris import to_open_iris

    code = np.unpackbits(np.frombuffer(eye[0][0], np.uint8)).reshape(8, 128, 2)
    mask = np.unpackbits(np.frombuffer(eye[0][1], np.uint8)).reshape(8, 128, 2)
    full = np.repeat(np.repeat(code, 2, axis=0), 2, axis=1)[:, :, None, :].repeat(2, axis=2)
    full_mask = np.repeat(np.repeat(mask, 2, axis=0), 2, axis=1)[:, :, None, :].repeat(2, axis=2)
    (tmp_path / "t.json").write_text(json.dumps(to_open_iris(full, full_mask)))
    assert read_scan(tmp_path / "t.json") == eye[0]
