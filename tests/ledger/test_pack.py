"""The reused packers give exactly ``msgpack.packb``'s bytes, value after value (a reused buffer
keeps nothing of the last one) and after a value that could not be packed."""

from __future__ import annotations

import msgpack
import pytest

from ledger.encoding import encode, pack


def _values(seed: int) -> list[object]:
    return [{"body": {"n": seed * 1000 + i, "b": bytes([i % 256]) * (i % 90)}, "kind": "k", "nonce": i}
            for i in range(2000)]


def test_values_packed_one_after_another_each_get_their_own_bytes():
    values = _values(1)
    values.sort(key=lambda v: -len(v["body"]["b"]))  # type: ignore[index]  # long ones first, short after
    assert [pack(v) for v in values] == [msgpack.packb(v, use_bin_type=True) for v in values]


def test_a_failed_pack_leaves_nothing_behind_for_the_next():
    with pytest.raises(UnicodeEncodeError):
        pack({"text": "\udc80"})  # a lone surrogate has no UTF-8 form
    with pytest.raises(TypeError):
        pack([1, object()])
    value = {"a": [1, 2, 3], "b": b"\x00" * 40}
    assert pack(value) == msgpack.packb(value, use_bin_type=True) == encode(value)
