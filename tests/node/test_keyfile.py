"""Key files: an Ed25519 seed sealed with Argon2id and secretbox, readable only with the passphrase."""

from __future__ import annotations

import json
import os
import stat

import pytest

from ledger.crypto.keys import DOMAIN_TX, SigningKey, verify
from ledger.errors import KeyFileError
from node.keyfile import (
    FORMAT,
    MINIMAL,
    load_key_file,
    public_key_of,
    read_key_doc,
    seal,
    write_key_file,
)

PASSPHRASE = b"correct horse battery staple"


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
def key_file(tmp_path, key):
    path = tmp_path / "guardian.key"
    write_key_file(path, key, PASSPHRASE, label="guardian of child 0001", cost=MINIMAL)
    return path


def edit(path, change) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def test_roundtrip_gives_back_a_key_that_signs(key_file, key):
    loaded = load_key_file(key_file, PASSPHRASE)
    assert loaded.public == key.public and loaded.seed == key.seed
    signature = loaded.sign(DOMAIN_TX, "custos-test", b"\x01" * 32)
    assert verify(key.public, DOMAIN_TX, "custos-test", b"\x01" * 32, signature)


def test_public_key_and_label_are_readable_without_the_passphrase(key_file, key):
    assert public_key_of(key_file) == key.public
    doc = read_key_doc(key_file)
    assert (doc["format"], doc["label"]) == (FORMAT, "guardian of child 0001")


def test_the_seed_is_not_in_the_file(key_file, key):
    text = key_file.read_text()
    assert key.seed.hex() not in text and key.seed not in key_file.read_bytes()


def test_sealing_twice_gives_different_files(key):
    first, second = seal(key, PASSPHRASE, cost=MINIMAL), seal(key, PASSPHRASE, cost=MINIMAL)
    assert first["kdf"]["salt"] != second["kdf"]["salt"] and first["sealed"] != second["sealed"]


def test_rejects_a_wrong_passphrase(key_file):
    with pytest.raises(KeyFileError, match="passphrase"):
        load_key_file(key_file, b"Correct horse battery staple")


def test_rejects_a_file_whose_public_key_was_edited(key_file):
    other = SigningKey.generate()
    edit(key_file, lambda doc: doc.update(public=other.public.hex()))
    assert public_key_of(key_file) == other.public  # what an operator would be shown...
    with pytest.raises(KeyFileError, match="does not match"):
        load_key_file(key_file, PASSPHRASE)  # ...is refused rather than signing with another key


def test_rejects_a_file_whose_sealed_seed_was_edited(key_file):
    def flip(doc):
        sealed = bytearray.fromhex(doc["sealed"])
        sealed[-1] ^= 1
        doc["sealed"] = sealed.hex()

    edit(key_file, flip)
    with pytest.raises(KeyFileError):
        load_key_file(key_file, PASSPHRASE)


@pytest.mark.parametrize("cut", [0, 1, 40, -2])
def test_rejects_a_truncated_file(key_file, cut):
    raw = key_file.read_bytes()
    key_file.write_bytes(raw[:cut] if cut >= 0 else raw[:len(raw) + cut - 20])
    with pytest.raises(KeyFileError):
        load_key_file(key_file, PASSPHRASE)


@pytest.mark.parametrize(
    "content",
    [b"\x00\xff garbage", b"[1, 2, 3]", b'"a string"', b"{}", b"null", b"x" * 70_000],
    ids=["binary", "json-list", "json-string", "empty-object", "null", "too-large"],
)
def test_rejects_a_file_that_is_not_a_key_file(tmp_path, content):
    path = tmp_path / "not.key"
    path.write_bytes(content)
    with pytest.raises(KeyFileError):
        load_key_file(path, PASSPHRASE)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda d: d.update(format="custos-key/9"), id="unknown-format"),
        pytest.param(lambda d: d["kdf"].update(name="scrypt"), id="unknown-kdf"),
        pytest.param(lambda d: d["kdf"].update(salt="00" * 8), id="short-salt"),
        pytest.param(lambda d: d["kdf"].update(salt="zz" * 16), id="salt-not-hex"),
        pytest.param(lambda d: d["kdf"].update(ops=0), id="ops-below-minimum"),
        pytest.param(lambda d: d["kdf"].update(ops=2**40), id="ops-above-maximum"),
        pytest.param(lambda d: d["kdf"].update(mem=1024), id="mem-below-minimum"),
        pytest.param(lambda d: d["kdf"].update(mem=2**40), id="mem-above-maximum"),
        pytest.param(lambda d: d["kdf"].update(ops=float("inf")), id="ops-infinite"),
        pytest.param(lambda d: d["kdf"].update(mem=float("nan")), id="mem-nan"),
        pytest.param(lambda d: d["kdf"].update(ops=[2]), id="ops-list"),
        pytest.param(lambda d: d.update(kdf="argon2id"), id="kdf-not-an-object"),
        pytest.param(lambda d: d.pop("sealed"), id="sealed-missing"),
        pytest.param(lambda d: d.update(sealed="00" * 10), id="sealed-too-short"),
        pytest.param(lambda d: d.update(public=None), id="public-null"),
    ],
)
def test_rejects_a_malformed_key_document(key_file, change):
    edit(key_file, change)
    with pytest.raises(KeyFileError):
        load_key_file(key_file, PASSPHRASE)


def test_rejects_a_missing_file(tmp_path):
    with pytest.raises(KeyFileError):
        load_key_file(tmp_path / "nowhere.key", PASSPHRASE)
    with pytest.raises(KeyFileError):
        public_key_of(tmp_path / "nowhere.key")


def test_refuses_to_overwrite_an_existing_key(key_file, key):
    before = key_file.read_bytes()
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        write_key_file(key_file, SigningKey.generate(), PASSPHRASE, cost=MINIMAL)
    assert key_file.read_bytes() == before
    assert load_key_file(key_file, PASSPHRASE).public == key.public


def test_key_file_is_readable_by_its_owner_only(tmp_path, key):
    old = os.umask(0)  # even a permissive umask must not widen the mode
    try:
        path = tmp_path / "validator.key"
        write_key_file(path, key, PASSPHRASE, cost=MINIMAL)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["validator.key"]  # no temporary file left behind
