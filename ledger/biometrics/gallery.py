"""The enrolment authority's gallery of helper data, for 1:N identification.

An undocumented child is scanned and the gallery is searched for the enrolment whose secret
the scan unlocks. Trying the full decoder on every record would cost milliseconds each, so the
search runs in two stages:

1. Vectorised screening over every record: XOR the scan into all sketches at once (each record
   reads the scan through its own permutation), run the Hadamard correlations for all
   ``records x 32`` blocks as one matrix product, and score each record by how strongly its
   blocks match their best inner codewords: the sum over blocks of ``best_correlation^2 /
   visible_bits``, about ``(1 - 2 x bit error rate)^2 x visible bits`` per block for the right
   eye and about 6 per block for any other (the largest of 128 chance correlations).
2. The exact outer decode and check value, only for the best few records.

A match needs the second stage to accept exactly as a 1:1 check would (decode, match decision,
check value), so the shortlist affects speed and the miss rate, never the false-accept rate.

At rest the gallery is a msgpack list of ``[identity_id, helper bytes]`` sealed with
``nacl.secret.SecretBox`` under a caller-supplied 32-byte key, written to a temporary file,
fsynced and renamed over the old one, so a crash leaves the old or the new gallery, never half.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgpack
import numpy as np
from nacl.exceptions import CryptoError
from nacl.secret import SecretBox

from . import hadamard
from .errors import GalleryError, InsufficientOverlap, MalformedHelperData
from .fuzzy_commitment import BLOCKS, MIN_COMPARED_BITS, permutation, soft_blocks, unlock
from .helper_data import MAX_ENCODED_BYTES, HelperData
from .template import TEMPLATE_BITS, Bits, as_bits, unpack_bits

MAX_IDENTITY_BYTES = 64
MAX_RECORDS = 10_000_000
_MAGIC = b"CUSTOS-BIOMETRIC-GALLERY"
_FILE_VERSION = 1
_CHUNK = 1024


@dataclass(frozen=True)
class GalleryMatch:
    """A successful identification: the identity and the secret the scan unlocked."""

    identity_id: bytes
    secret: bytes


def _check_identity(identity_id: bytes) -> bytes:
    if type(identity_id) is not bytes:
        raise TypeError(f"identity_id must be bytes, got {type(identity_id).__name__}")
    if not 0 < len(identity_id) <= MAX_IDENTITY_BYTES:
        raise ValueError(f"identity_id must be 1..{MAX_IDENTITY_BYTES} bytes")
    return identity_id


class Gallery:
    """identity_id -> HelperData, laid out in numpy arrays for vectorised search.

    Memory: 6 KiB per record (the sketch as +-1/0 in code order, and the permutation as
    uint16), so 10,000 enrolments take about 60 MiB.
    """

    def __init__(self, shortlist: int = 4) -> None:
        if shortlist < 1:
            raise ValueError("shortlist must be at least 1")
        self.shortlist = shortlist
        self._ids: list[bytes] = []
        self._helpers: list[HelperData] = []
        self._row: dict[bytes, int] = {}
        self._sign = np.zeros((0, TEMPLATE_BITS), dtype=np.int8)
        self._perm = np.zeros((0, TEMPLATE_BITS), dtype=np.uint16)

    # -- mapping --------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, identity_id: object) -> bool:
        return identity_id in self._row

    def ids(self) -> Iterator[bytes]:
        return iter(list(self._ids))

    def get(self, identity_id: bytes) -> HelperData | None:
        row = self._row.get(identity_id)
        return None if row is None else self._helpers[row]

    def put(self, identity_id: bytes, helper: HelperData) -> None:
        """Add an enrolment, or replace it (re-enrolment keeps the identity, not the helper)."""
        identity_id = _check_identity(identity_id)
        if not isinstance(helper, HelperData):
            raise TypeError(f"helper must be HelperData, got {type(helper).__name__}")
        row = self._row.get(identity_id)
        if row is None:
            row = len(self._ids)
            self._grow(row + 1)
            self._ids.append(identity_id)
            self._helpers.append(helper)
            self._row[identity_id] = row
        else:
            self._helpers[row] = helper
        perm = permutation(helper.seed)
        valid = unpack_bits(helper.mask)[perm].astype(np.int8)
        sketch = unpack_bits(helper.sketch).astype(np.int8)
        self._sign[row] = (1 - 2 * sketch) * valid
        self._perm[row] = perm

    def remove(self, identity_id: bytes) -> None:
        """Forget an enrolment (erasure requests, or a superseded record)."""
        row = self._row.pop(identity_id)
        last = len(self._ids) - 1
        if row != last:
            moved = self._ids[last]
            self._ids[row] = moved
            self._helpers[row] = self._helpers[last]
            self._sign[row] = self._sign[last]
            self._perm[row] = self._perm[last]
            self._row[moved] = row
        self._ids.pop()
        self._helpers.pop()
        self._sign[last] = 0

    def _grow(self, needed: int) -> None:
        capacity = self._sign.shape[0]
        if needed <= capacity:
            return
        new_capacity = max(needed, 2 * capacity, 64)
        sign = np.zeros((new_capacity, TEMPLATE_BITS), dtype=np.int8)
        perm = np.zeros((new_capacity, TEMPLATE_BITS), dtype=np.uint16)
        sign[:capacity] = self._sign
        perm[:capacity] = self._perm
        self._sign, self._perm = sign, perm

    # -- search ---------------------------------------------------------------------------

    def scores(self, template: Bits, mask: Bits) -> np.ndarray:
        """Screening score of every record, in insertion-slot order (stage 1 above)."""
        bits = as_bits(template, "template")
        valid = as_bits(mask, "mask")
        probe = ((1 - 2 * bits.astype(np.int8)) * valid.astype(np.int8)).astype(np.int8)
        count = len(self._ids)
        out = np.empty(count, dtype=np.float32)
        for start in range(0, count, _CHUNK):
            stop = min(start + _CHUNK, count)
            soft = (self._sign[start:stop] * np.take(probe, self._perm[start:stop])).reshape(
                stop - start, BLOCKS, hadamard.BLOCK_BITS
            )
            visible = np.count_nonzero(soft, axis=-1)
            best = np.abs(hadamard.correlate(soft.astype(np.float32))).max(axis=-1)
            out[start:stop] = (best * best / np.maximum(visible, 1)).sum(axis=-1)
        return out

    def match(self, template: Bits, mask: Bits) -> GalleryMatch | None:
        """The enrolment this scan unlocks, with its secret, or None.

        Raises InsufficientOverlap when the scan itself shows fewer bits than any decision
        needs, so that "nobody we know" is never confused with "could not tell".
        """
        bits = as_bits(template, "template")
        valid = as_bits(mask, "mask")
        visible = int(valid.sum())
        if visible < MIN_COMPARED_BITS:
            raise InsufficientOverlap(
                f"only {visible} bits of the scan are unoccluded; at least {MIN_COMPARED_BITS} "
                "are needed: rescan the eye"
            )
        if not self._ids:
            return None
        scores = self.scores(bits, valid)
        take = min(self.shortlist, len(scores))
        shortlist = np.argpartition(-scores, take - 1)[:take]
        for row in shortlist[np.argsort(-scores[shortlist], kind="stable")]:
            helper = self._helpers[row]
            secret = unlock(soft_blocks(bits, valid, helper), helper)
            if secret is not None:
                return GalleryMatch(identity_id=self._ids[row], secret=secret)
        return None

    def identify(self, template: Bits, mask: Bits) -> bytes | None:
        """The identity_id whose secret this scan unlocks, or None for a stranger."""
        found = self.match(template, mask)
        return None if found is None else found.identity_id

    # -- persistence ----------------------------------------------------------------------

    def to_plaintext(self) -> bytes:
        records = [[ident, helper.to_bytes()] for ident, helper in zip(self._ids, self._helpers)]
        return msgpack.packb({"records": records, "v": _FILE_VERSION}, use_bin_type=True)

    @classmethod
    def from_plaintext(cls, data: bytes, shortlist: int = 4) -> Gallery:
        try:
            obj = msgpack.unpackb(
                data,
                raw=False,
                strict_map_key=True,
                max_bin_len=max(MAX_ENCODED_BYTES, MAX_IDENTITY_BYTES),
                max_str_len=16,
                max_array_len=MAX_RECORDS,
                max_map_len=2,
                max_ext_len=0,
            )
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise GalleryError(f"gallery contents are not valid msgpack: {exc}") from exc
        if not isinstance(obj, dict) or set(obj) != {"records", "v"}:
            raise GalleryError("gallery contents must be a map with 'records' and 'v'")
        if obj["v"] != _FILE_VERSION or type(obj["v"]) is not int:
            raise GalleryError(f"unsupported gallery version {obj['v']!r}")
        if not isinstance(obj["records"], list):
            raise GalleryError("gallery records must be a list")
        gallery = cls(shortlist=shortlist)
        for index, record in enumerate(obj["records"]):
            if not (isinstance(record, list) and len(record) == 2):
                raise GalleryError(f"gallery record {index} is not an [id, helper] pair")
            identity, helper_bytes = record
            if type(identity) is not bytes or not 0 < len(identity) <= MAX_IDENTITY_BYTES:
                raise GalleryError(f"gallery record {index} has an invalid identity id")
            if identity in gallery:
                raise GalleryError(f"gallery record {index} repeats identity {identity.hex()}")
            if type(helper_bytes) is not bytes:
                raise GalleryError(f"gallery record {index} has no helper bytes")
            try:
                helper = HelperData.from_bytes(helper_bytes)
            except MalformedHelperData as exc:
                raise GalleryError(f"gallery record {index}: {exc}") from exc
            gallery.put(identity, helper)
        return gallery

    def save(self, path: str | os.PathLike[str], key: bytes) -> None:
        """Encrypt and write atomically: temp file in the same directory, fsync, rename."""
        box = _box(key)
        sealed = bytes(box.encrypt(_MAGIC + bytes([_FILE_VERSION]) + self.to_plaintext()))
        target = Path(path)
        directory = target.parent
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(_MAGIC + bytes([_FILE_VERSION]))
                handle.write(sealed)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp_name, target)
        except BaseException:
            try:
                os.unlink(tmp_name)
            except FileNotFoundError:
                pass
            raise
        _fsync_directory(directory)

    @classmethod
    def load(cls, path: str | os.PathLike[str], key: bytes, shortlist: int = 4) -> Gallery:
        """Read a gallery written by :meth:`save`; any wrong key or alteration is a GalleryError."""
        box = _box(key)
        raw = Path(path).read_bytes()
        header = _MAGIC + bytes([_FILE_VERSION])
        if not raw.startswith(_MAGIC):
            raise GalleryError(f"{path} is not a Custos biometric gallery")
        if not raw.startswith(header):
            version = raw[len(_MAGIC)] if len(raw) > len(_MAGIC) else None
            raise GalleryError(f"{path} has an unsupported gallery format version {version}")
        try:
            plain = box.decrypt(raw[len(header):])
        except CryptoError as exc:
            raise GalleryError(f"{path} cannot be decrypted: wrong key or corrupted file") from exc
        # The header is repeated inside the ciphertext so that it is authenticated too.
        if not plain.startswith(header):
            raise GalleryError(f"{path} has a header that does not match its sealed contents")
        return cls.from_plaintext(plain[len(header):], shortlist=shortlist)


def _box(key: bytes) -> SecretBox:
    if type(key) is not bytes or len(key) != SecretBox.KEY_SIZE:
        raise GalleryError(f"gallery key must be {SecretBox.KEY_SIZE} bytes")
    return SecretBox(key)


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # platforms without directory handles
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
