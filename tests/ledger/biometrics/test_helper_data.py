"""Helper data on the wire: canonical, bounded, and every malformation is a typed error."""

from __future__ import annotations

import msgpack
import pytest

from ledger.biometrics import (
    BiometricError,
    HelperData,
    MalformedHelperData,
    ReproductionFailed,
    UnsupportedHelperVersion,
    enrol,
    reproduce,
)

from .conftest import fixed_secret


@pytest.fixture(scope="module")
def enrolled(pairs):
    return enrol(pairs.enrol.codes[0], pairs.enrol.masks[0], fixed_secret(0))


def _fields(helper: HelperData) -> dict:
    return {"check": helper.check, "mask": helper.mask, "salt": helper.salt, "seed": helper.seed,
            "sketch": helper.sketch, "v": helper.version}


def test_roundtrip(enrolled):
    data = enrolled.helper.to_bytes()
    assert HelperData.from_bytes(data) == enrolled.helper
    assert len(data) < 700  # fits a QR code with room to spare


def test_every_single_byte_flip_is_rejected_or_harmless(pairs, enrolled):
    """A flipped byte is a decoding error or a failed check, never a wrong secret."""
    data = enrolled.helper.to_bytes()
    for position in range(0, len(data), 3):
        tampered = bytearray(data)
        tampered[position] ^= 0x5A
        try:
            helper = HelperData.from_bytes(bytes(tampered))
            secret = reproduce(pairs.probe.codes[0], pairs.probe.masks[0], helper)
        except (MalformedHelperData, ReproductionFailed):
            continue
        pytest.fail(f"flip at byte {position} was accepted and returned {secret.hex()}")


@pytest.mark.parametrize("length", [0, 1, 10, 300, 640])
def test_rejects_truncated_helper_data(enrolled, length):
    with pytest.raises(MalformedHelperData):
        HelperData.from_bytes(enrolled.helper.to_bytes()[:length])


def test_rejects_trailing_bytes(enrolled):
    with pytest.raises(MalformedHelperData):
        HelperData.from_bytes(enrolled.helper.to_bytes() + b"\x00")


@pytest.mark.parametrize("version", [0, 1, 3, 255])
def test_rejects_unknown_versions(enrolled, version):
    fields = _fields(enrolled.helper) | {"v": version}
    with pytest.raises(UnsupportedHelperVersion):
        HelperData.from_bytes(msgpack.packb(fields, use_bin_type=True))


def test_rejects_non_canonical_key_order(enrolled):
    fields = _fields(enrolled.helper)
    reordered = {key: fields[key] for key in reversed(list(fields))}
    with pytest.raises(MalformedHelperData):
        HelperData.from_bytes(msgpack.packb(reordered, use_bin_type=True))


def test_rejects_non_canonical_integer_width(enrolled):
    data = enrolled.helper.to_bytes()
    # "v": 2 is a positive fixint (0x02) after the key "v" (0xa1 0x76); re-encode as uint8.
    marker = b"\xa1v\x02"
    assert data.endswith(marker)
    with pytest.raises(MalformedHelperData):
        HelperData.from_bytes(data[: -1] + b"\xcc\x02")


@pytest.mark.parametrize(
    "change",
    [
        {"extra": b"x"},
        {"seed": b"\x00" * 31},
        {"mask": b"\x00" * 257},
        {"sketch": "not bytes"},
        {"check": None},
        {"v": True},
        {"v": "1"},
    ],
)
def test_rejects_bad_fields(enrolled, change):
    fields = _fields(enrolled.helper) | change
    with pytest.raises(MalformedHelperData):
        HelperData.from_bytes(msgpack.packb(dict(sorted(fields.items())), use_bin_type=True))


@pytest.mark.parametrize(
    "payload",
    [
        msgpack.packb([1, 2, 3]),
        msgpack.packb({1: b"x"}),
        msgpack.packb({b"v": 1}, use_bin_type=True),
        b"\xc1",
        b"\x00" * 2000,
    ],
)
def test_rejects_things_that_are_not_helper_data(payload):
    with pytest.raises(MalformedHelperData):
        HelperData.from_bytes(payload)


def test_rejects_oversized_binaries_before_allocating():
    # a bin32 header claiming 4 GiB: must fail on the size limits, not try to allocate
    payload = b"\x85\xa5check\xc6\xff\xff\xff\xff"
    with pytest.raises(MalformedHelperData):
        HelperData.from_bytes(payload)


def test_errors_are_one_family_with_stable_types():
    for error in (MalformedHelperData, UnsupportedHelperVersion, ReproductionFailed):
        assert issubclass(error, BiometricError)
        assert error.type.startswith("biometric-")
    assert "unsupported" in UnsupportedHelperVersion("x").diagnostics()
