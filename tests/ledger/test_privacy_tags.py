"""Keyed tags and salted hashes: equal where they must be, useless to a dictionary without the key."""

from __future__ import annotations

import hashlib
import os

import pytest

from ledger.errors import InvalidValue
from ledger.privacy.tags import child_tag, companion_tag, normalise_document, order_hash

KEY = bytes(range(32))


def test_a_guardian_and_a_terminal_spelling_the_document_differently_get_the_same_tag():
    assert companion_tag(KEY, "MDA ab-123 456") == companion_tag(KEY, "mdaab123456") == companion_tag(
        KEY, "ＭＤＡＡＢ１２３４５６")  # full-width digits and letters fold too
    assert len(companion_tag(KEY, "MDA AB123456")) == 16


def test_tags_of_one_adult_differ_from_child_to_child():
    assert companion_tag(KEY, "MDA AB123456") != companion_tag(bytes(32), "MDA AB123456")


def test_a_dictionary_reverses_a_tag_only_with_the_childs_key():
    """The bound: a reader of the chain must guess the 256-bit key; a key holder (guardian,
    authority, a terminal that opened the card) can run a dictionary of document numbers."""
    documents = [f"MDA AB{n:06d}" for n in range(20_000)]
    secret_doc = documents[13_579]
    tag = companion_tag(KEY, secret_doc)
    with_key = [d for d in documents if companion_tag(KEY, d) == tag]
    assert with_key == [secret_doc]
    guessed_key = os.urandom(32)  # a chain reader's best: a key guess (2^-256 to be right)
    assert [d for d in documents if companion_tag(guessed_key, d) == tag] == []
    unkeyed = hashlib.sha256(b"custos-companion/1\x00" + secret_doc.encode()).digest()  # the old scheme
    assert [d for d in documents if hashlib.sha256(b"custos-companion/1\x00" + d.encode()).digest()
            == unkeyed] == [secret_doc]


@pytest.mark.parametrize("bad", ["", " - ", "AB<123>", "X" * 65])
def test_rejects_a_document_number_that_is_not_one(bad):
    with pytest.raises(InvalidValue):
        normalise_document(bad)


def test_an_order_hash_hides_a_guessable_reference_behind_its_salt():
    salt = os.urandom(16)
    assert order_hash(salt, "court order 17/2024") == order_hash(salt, " court order 17/2024 ")
    assert order_hash(salt, "court order 17/2024") != order_hash(os.urandom(16), "court order 17/2024")
    with pytest.raises(InvalidValue):
        order_hash(b"short", "court order 17/2024")


def test_a_child_tag_is_a_hash_of_the_identity_id():
    ident = os.urandom(16)
    assert child_tag(ident) == child_tag(ident) != child_tag(os.urandom(16))
    with pytest.raises(InvalidValue):
        child_tag(b"too short")
