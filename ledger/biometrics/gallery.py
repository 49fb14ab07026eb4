"""The enrolment authority's gallery, for 1:N identification of a child without papers.

Each record holds the identity id, the enrolment's helper data, the child's pseudonym key and
the enrolment *reference*: the bits the enrolment bound, at the positions its mask keeps. A
scan is searched in two stages:

1. Screening, vectorised over every record and every angular shift in ``-max_shift ..
   max_shift``: references and masks are packed into 64-bit words, and each (record, shift)
   costs one XOR, two ANDs and popcounts over 32 words, in chunks that stay in cache and are
   spread over a thread per core (numpy releases the GIL). The score is Daugman's normalised
   Hamming distance.
2. The full 1:1 decision (:func:`~ledger.biometrics.fuzzy_commitment.recover`: rotation
   search, decoding, match decision, check value) for the best few records whose screening
   distance is plausible. A match needs this stage, so the shortlist affects speed and the
   miss rate, never the false-accept bound (THREAT_MODEL.md, section 5).

Memory: 512 bytes of packed reference and mask, 32 bytes of pseudonym key and the helper data
(about 650 bytes, kept serialised) per record, plus the identity id: about 1.3 KiB.

At rest the gallery is a msgpack list of ``[identity_id, helper bytes, pseudonym key,
reference bytes]`` sealed with ``nacl.secret.SecretBox`` under a caller-supplied 32-byte key,
written to a temporary file, fsynced and renamed over the old one, so a crash leaves the old
or the new gallery, never half. The gallery does no file I/O itself beyond :meth:`save` and
:meth:`load`, which the node's tools call.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import msgpack
import numpy as np
from nacl.exceptions import CryptoError
from nacl.secret import SecretBox

from .errors import GalleryError, InsufficientOverlap, MalformedHelperData, ReproductionFailed
from .fuzzy_commitment import (
    MATCH_REFERENCE_BITS,
    MAX_SHIFT,
    MIN_COMPARED_BITS,
    enrolled_reference,
    recover,
)
from .helper_data import MAX_ENCODED_BYTES, HelperData
from .template import TEMPLATE_BITS, TEMPLATE_BYTES, Bits, as_bits, rotations

MAX_IDENTITY_BYTES = 64
PSEUDONYM_KEY_BYTES = 32
MAX_RECORDS = 10_000_000
WORDS = TEMPLATE_BITS // 64
#: records whose best screening distance is above this are not worth decoding
SCREEN_MAX_HD = 0.40
_MAGIC = b"CUSTOS-BIOMETRIC-GALLERY"
_FILE_VERSION = 2
_CHUNK = 2048


@dataclass(frozen=True)
class GalleryMatch:
    """A successful identification: the identity, the secret the scan unlocked, the child's
    pseudonym key, the angular shift found and the normalised distance there."""

    identity_id: bytes
    secret: bytes
    pseudonym_key: bytes
    shift: int
    distance: float


def _check_identity(identity_id: bytes) -> bytes:
    if type(identity_id) is not bytes:
        raise TypeError(f"identity_id must be bytes, got {type(identity_id).__name__}")
    if not 0 < len(identity_id) <= MAX_IDENTITY_BYTES:
        raise ValueError(f"identity_id must be 1..{MAX_IDENTITY_BYTES} bytes")
    return identity_id


def _words(bits: np.ndarray) -> np.ndarray:
    """0/1 bits (..., 2048) as (..., 32) little-endian uint64 words."""
    packed = np.packbits(bits.astype(np.uint8), axis=-1)
    return np.ascontiguousarray(packed).view("<u8")


_TABLE = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _popcount_by_table(words: np.ndarray) -> np.ndarray:
    """numpy < 2.0 has no bitwise_count: count through a byte table."""
    return _TABLE[words.view(np.uint8)].reshape(*words.shape, 8).sum(axis=-1, dtype=np.uint8)


_popcount: Callable[[np.ndarray], np.ndarray] = getattr(np, "bitwise_count", _popcount_by_table)


class Gallery:
    """identity_id -> (helper data, pseudonym key, reference), laid out for vectorised search.

    ``shortlist``: how many of the best-screened records get the full 1:1 decision;
    ``threads``: screening threads (default: one per core, at most 4).
    """

    def __init__(self, shortlist: int = 4, threads: int | None = None) -> None:
        if shortlist < 1:
            raise ValueError("shortlist must be at least 1")
        self.shortlist = shortlist
        self.threads = threads or max(1, min(4, os.cpu_count() or 1))
        self._ids: list[bytes] = []
        self._helpers: list[bytes] = []
        self._row: dict[bytes, int] = {}
        self._ref = np.zeros((0, WORDS), dtype=np.uint64)
        self._mask = np.zeros((0, WORDS), dtype=np.uint64)
        self._pseudonym = np.zeros((0, PSEUDONYM_KEY_BYTES), dtype=np.uint8)
        self._pool: ThreadPoolExecutor | None = None

    # -- mapping --------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, identity_id: object) -> bool:
        return identity_id in self._row

    def ids(self) -> Iterator[bytes]:
        return iter(list(self._ids))

    def get(self, identity_id: bytes) -> HelperData | None:
        row = self._row.get(identity_id)
        return None if row is None else HelperData.from_bytes(self._helpers[row])

    def pseudonym_key(self, identity_id: bytes) -> bytes | None:
        """The child's pseudonym key, kept across re-enrolments (None if not enrolled here)."""
        row = self._row.get(identity_id)
        return None if row is None else self._pseudonym[row].tobytes()

    def put(self, identity_id: bytes, helper: HelperData, secret: bytes, pseudonym_key: bytes) -> None:
        """Add an enrolment, or replace it (re-enrolment keeps the identity, not the helper).

        ``secret`` is the enrolment's secret, held by the enrolling code for this call only: it
        yields the reference the screening compares scans with; it is not stored.
        """
        if not isinstance(helper, HelperData):
            raise TypeError(f"helper must be HelperData, got {type(helper).__name__}")
        self._put(identity_id, helper.to_bytes(), pseudonym_key, enrolled_reference(helper, secret),
                  as_bits(helper.mask, "mask"))

    def _put(self, identity_id: bytes, helper: bytes, pseudonym_key: bytes, reference: np.ndarray,
             mask: np.ndarray) -> None:
        identity_id = _check_identity(identity_id)
        if type(pseudonym_key) is not bytes or len(pseudonym_key) != PSEUDONYM_KEY_BYTES:
            raise ValueError(f"pseudonym_key must be {PSEUDONYM_KEY_BYTES} bytes")
        row = self._row.get(identity_id)
        if row is None:
            row = len(self._ids)
            self._grow(row + 1)
            self._ids.append(identity_id)
            self._helpers.append(helper)
            self._row[identity_id] = row
        else:
            self._helpers[row] = helper
        self._ref[row] = _words(reference & mask)
        self._mask[row] = _words(mask)
        self._pseudonym[row] = np.frombuffer(pseudonym_key, dtype=np.uint8)

    def remove(self, identity_id: bytes) -> None:
        """Forget an enrolment (erasure requests, or a superseded record)."""
        row = self._row.pop(identity_id)
        last = len(self._ids) - 1
        if row != last:
            moved = self._ids[last]
            self._ids[row] = moved
            self._helpers[row] = self._helpers[last]
            self._ref[row] = self._ref[last]
            self._mask[row] = self._mask[last]
            self._pseudonym[row] = self._pseudonym[last]
            self._row[moved] = row
        self._ids.pop()
        self._helpers.pop()
        self._ref[last] = 0
        self._mask[last] = 0
        self._pseudonym[last] = 0

    def _grow(self, needed: int) -> None:
        capacity = self._ref.shape[0]
        if needed <= capacity:
            return
        new_capacity = max(needed, 2 * capacity, 64)
        for name in ("_ref", "_mask", "_pseudonym"):
            old = getattr(self, name)
            new = np.zeros((new_capacity, old.shape[1]), dtype=old.dtype)
            new[:capacity] = old
            setattr(self, name, new)

    # -- search ---------------------------------------------------------------------------

    def screen(self, template: Bits, mask: Bits, max_shift: int = MAX_SHIFT) -> tuple[np.ndarray, np.ndarray]:
        """Best normalised distance of every record over the shifts, and there how far the scan
        is turned from that enrolment (as :class:`~ledger.biometrics.Recovered` reports it)."""
        bits = as_bits(template, "template")
        valid = as_bits(mask, "mask")
        shifts, codes = rotations(bits, max_shift)
        _, masks = rotations(valid, max_shift)
        probe = _words(codes & masks)
        probe_mask = _words(masks)
        count = len(self._ids)
        distance = np.empty(count, dtype=np.float32)
        best_shift = np.empty(count, dtype=np.int16)

        def work(start: int) -> None:
            stop = min(start + _CHUNK, count)
            ref, msk = self._ref[start:stop], self._mask[start:stop]
            best = np.full(stop - start, 2.0, dtype=np.float32)
            where = np.zeros(stop - start, dtype=np.int16)
            for i in range(len(shifts)):
                both = msk & probe_mask[i]
                compared = _popcount(both).sum(axis=1, dtype=np.int32)
                differ = _popcount((ref ^ probe[i]) & both).sum(axis=1, dtype=np.int32)
                hd = differ / np.maximum(compared, 1)
                norm = 0.5 - (0.5 - hd) * np.sqrt(compared / MATCH_REFERENCE_BITS)
                norm = np.where(compared >= MIN_COMPARED_BITS, norm, 2.0).astype(np.float32)
                better = norm < best
                best = np.where(better, norm, best)
                where = np.where(better, -shifts[i], where).astype(np.int16)
            distance[start:stop] = best
            best_shift[start:stop] = where

        starts = range(0, count, _CHUNK)
        if self.threads > 1 and count > _CHUNK:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="gallery")
            list(self._pool.map(work, starts))
        else:
            for start in starts:
                work(start)
        return distance, best_shift

    def match(self, template: Bits, mask: Bits, max_shift: int = MAX_SHIFT) -> GalleryMatch | None:
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
        distance, _ = self.screen(bits, valid, max_shift)
        take = min(self.shortlist, len(distance))
        shortlist = np.argpartition(distance, take - 1)[:take]
        for row in shortlist[np.argsort(distance[shortlist], kind="stable")]:
            if distance[row] > SCREEN_MAX_HD:
                break
            helper = HelperData.from_bytes(self._helpers[row])
            try:
                found = recover(bits, valid, helper, max_shift=max_shift)
            except ReproductionFailed:
                continue
            return GalleryMatch(identity_id=self._ids[row], secret=found.secret,
                                pseudonym_key=self._pseudonym[row].tobytes(), shift=found.shift,
                                distance=found.distance)
        return None

    def identify(self, template: Bits, mask: Bits, max_shift: int = MAX_SHIFT) -> bytes | None:
        """The identity_id whose secret this scan unlocks, or None for a stranger."""
        found = self.match(template, mask, max_shift)
        return None if found is None else found.identity_id

    def memory_bytes(self) -> int:
        """Bytes held per the arrays and serialised helpers (ids and Python overhead aside)."""
        rows = len(self._ids)
        return rows * (2 * WORDS * 8 + PSEUDONYM_KEY_BYTES) + sum(len(h) for h in self._helpers)

    # -- persistence ----------------------------------------------------------------------

    def to_plaintext(self) -> bytes:
        records = []
        for row, ident in enumerate(self._ids):
            ref = np.ascontiguousarray(self._ref[row]).view(np.uint8)
            records.append([ident, self._helpers[row], self._pseudonym[row].tobytes(), ref.tobytes()])
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
            if not (isinstance(record, list) and len(record) == 4):
                raise GalleryError(f"gallery record {index} is not an [id, helper, pseudonym, reference] list")
            identity, helper_bytes, pseudonym, reference = record
            if type(identity) is not bytes or not 0 < len(identity) <= MAX_IDENTITY_BYTES:
                raise GalleryError(f"gallery record {index} has an invalid identity id")
            if identity in gallery:
                raise GalleryError(f"gallery record {index} repeats identity {identity.hex()}")
            if type(helper_bytes) is not bytes or type(pseudonym) is not bytes or type(reference) is not bytes:
                raise GalleryError(f"gallery record {index} has a field that is not bytes")
            if len(pseudonym) != PSEUDONYM_KEY_BYTES or len(reference) != TEMPLATE_BYTES:
                raise GalleryError(f"gallery record {index} has a pseudonym key or reference of the wrong size")
            try:
                helper = HelperData.from_bytes(helper_bytes)
            except MalformedHelperData as exc:
                raise GalleryError(f"gallery record {index}: {exc}") from exc
            ref_bits = np.unpackbits(np.frombuffer(reference, dtype=np.uint8))
            gallery._put(identity, helper_bytes, pseudonym, ref_bits, as_bits(helper.mask, "mask"))
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
