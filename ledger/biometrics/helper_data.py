"""Helper data: what an enrolment leaves behind besides the commitment.

Helper data never goes on the chain. The enrolment authority keeps it (encrypted at rest, see
:class:`~ledger.biometrics.gallery.Gallery`), and the child's card carries it sealed to the
card-opening key of registered terminals (``node/client/cards.py``); about 650 bytes, well
inside a QR code's binary capacity.

Wire form: a canonical msgpack map with short string keys in sorted order. Every field has a
fixed size, the whole encoding is capped at :data:`MAX_ENCODED_BYTES` before it is parsed, and
decoding re-encodes and compares, so there is exactly one byte string per helper data.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgpack

from .errors import MalformedHelperData, UnsupportedHelperVersion
from .template import TEMPLATE_BYTES

HELPER_VERSION = 2
SEED_BYTES = 32
SALT_BYTES = 32
CHECK_BYTES = 32
MAX_ENCODED_BYTES = 1024
_DOMAIN = b"custos/biometric-helper/v2"
_KEYS = ("check", "mask", "salt", "seed", "sketch", "v")


@dataclass(frozen=True)
class HelperData:
    """Public-ish data that, with a fresh scan of the same eye, recovers the bound secret.

    ``seed`` selects this enrolment's bit permutation; ``mask`` is the enrolment scan's
    occlusion mask (template order, 1 = valid); ``sketch`` is the codeword XOR the permuted
    template (code order; occluded positions hold secret-derived filler); ``salt`` is the
    secret's salt (its non-biometric part); ``check`` is an HMAC under a secret-derived key over
    all the other fields. ``mask`` is the enrolment reference's mask: bits occluded in the
    enrolment captures and bits the captures disagreed on (fragile bits) are 0.
    """

    version: int
    seed: bytes
    mask: bytes
    sketch: bytes
    salt: bytes
    check: bytes

    def __post_init__(self) -> None:
        if type(self.version) is not int:
            raise MalformedHelperData("version must be an integer")
        if self.version != HELPER_VERSION:
            raise UnsupportedHelperVersion(
                f"helper data version {self.version} is not supported (expected {HELPER_VERSION})"
            )
        for name, size in (
            ("seed", SEED_BYTES),
            ("mask", TEMPLATE_BYTES),
            ("sketch", TEMPLATE_BYTES),
            ("salt", SALT_BYTES),
            ("check", CHECK_BYTES),
        ):
            value = getattr(self, name)
            if type(value) is not bytes:
                raise MalformedHelperData(f"{name} must be bytes, got {type(value).__name__}")
            if len(value) != size:
                raise MalformedHelperData(f"{name} must be {size} bytes, got {len(value)}")

    def authenticated_bytes(self) -> bytes:
        """The bytes the check value covers: every field but the check itself."""
        return _DOMAIN + bytes([self.version]) + self.seed + self.mask + self.sketch + self.salt

    def to_bytes(self) -> bytes:
        return msgpack.packb(
            {
                "check": self.check,
                "mask": self.mask,
                "salt": self.salt,
                "seed": self.seed,
                "sketch": self.sketch,
                "v": self.version,
            },
            use_bin_type=True,
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> HelperData:
        """Parse helper data, rejecting anything this code would not have written."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise MalformedHelperData(f"helper data must be bytes, got {type(data).__name__}")
        data = bytes(data)
        if len(data) > MAX_ENCODED_BYTES:
            raise MalformedHelperData(
                f"helper data is {len(data)} bytes, the limit is {MAX_ENCODED_BYTES}"
            )
        try:
            obj = msgpack.unpackb(
                data,
                raw=False,
                use_list=True,
                strict_map_key=True,
                max_bin_len=TEMPLATE_BYTES,
                max_str_len=16,
                max_array_len=0,
                max_map_len=len(_KEYS),
                max_ext_len=0,
            )
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise MalformedHelperData(f"helper data is not valid msgpack: {exc}") from exc
        if not isinstance(obj, dict):
            raise MalformedHelperData("helper data must be a msgpack map")
        if any(type(key) is not str for key in obj):
            raise MalformedHelperData("helper data keys must be strings")
        version = obj.get("v")
        if type(version) is int and version != HELPER_VERSION:
            raise UnsupportedHelperVersion(
                f"helper data version {version} is not supported (expected {HELPER_VERSION})"
            )
        if tuple(sorted(obj)) != _KEYS:
            raise MalformedHelperData(f"helper data keys must be {list(_KEYS)}, got {sorted(obj)}")
        helper = cls(
            version=obj["v"],  # an integer: checked on construction
            seed=obj["seed"],
            mask=obj["mask"],
            sketch=obj["sketch"],
            salt=obj["salt"],
            check=obj["check"],
        )
        if helper.to_bytes() != data:
            raise MalformedHelperData("helper data is not canonically encoded")
        return helper
