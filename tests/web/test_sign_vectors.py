"""The Python client reproduces every shared sign-bytes vector (tests/vectors/); the browser
client is held to the same files in test_web_browser.py, so the two signers cannot drift apart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ledger.crypto.keys import DOMAIN_TX, SigningKey, sign_bytes
from ledger.errors import KeyFileError
from ledger.privacy.tags import companion_tag, normalise_document
from ledger.tx import bodies as b
from ledger.tx.envelope import decode_tx
from node.client.txs import TxFactory
from node.keyfile import unseal

VECTORS = Path(__file__).resolve().parents[1] / "vectors"


def load(name: str) -> dict:
    return json.loads((VECTORS / name).read_text())


TXS = load("transactions.json")
BYTES_FIELDS = {"guardian", "request", "identity", "consent", "companion"}


def _fields(doc: dict) -> dict:
    return {k: bytes.fromhex(v) if k in BYTES_FIELDS and v is not None else v for k, v in doc.items()}


@pytest.mark.parametrize("case", TXS["transactions"], ids=lambda c: c["name"])
def test_transaction_vector(case: dict) -> None:
    signers = [SigningKey(bytes.fromhex(s)) for s in case["signers"]]
    body = b.BODIES[case["kind"]].cls(**_fields(case["fields"]))
    tx = TxFactory(TXS["chain_id"]).make(case["kind"], body, signers, nonce=int(case["nonce"]))
    assert tx.id.hex() == case["id"]
    assert sign_bytes(DOMAIN_TX, TXS["chain_id"], tx.id).hex() == case["sign_bytes"]
    assert tx.raw.hex() == case["raw"]
    decoded = decode_tx(bytes.fromhex(case["raw"]))
    assert decoded.bad_signatures(TXS["chain_id"]) == []


def test_vector_keys() -> None:
    for k in TXS["keys"]:
        assert SigningKey(bytes.fromhex(k["seed"])).public.hex() == k["public"]


@pytest.mark.parametrize("case", load("key_files.json")["key_files"], ids=lambda c: c["public"][:8])
def test_key_file_vector(case: dict) -> None:
    key = unseal(case["file"], case["passphrase"].encode())
    assert key.seed.hex() == case["seed"] and key.public.hex() == case["public"]


def test_rejects_key_file_vector_with_wrong_passphrase() -> None:
    case = load("key_files.json")["key_files"][0]
    with pytest.raises(KeyFileError):
        unseal(case["file"], b"not the passphrase")


def test_companion_tag_vectors() -> None:
    doc = load("companion_tags.json")
    for case in doc["tags"]:
        assert normalise_document(case["document"]) == case["normalised"]
        assert companion_tag(bytes.fromhex(doc["pseudonym_key"]), case["document"]).hex() == case["tag"]
