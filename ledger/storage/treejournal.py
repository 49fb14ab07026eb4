"""The tree journal: each block's changes to the state trees, kept in a file beside the store
while the block's tree nodes are held in memory (:mod:`ledger.storage.chainstore`, "Tree nodes
held in memory").

Kept inside LevelDB (one record per block, deleted once the nodes were written), those changes,
about 190 KB a block of 1,000 crossings, went through LevelDB's log, memtable, flushes and
compactions only to be deleted: they were most of the background work the state map caused
(``scripts/bench_store.py``, medians, one morning: 21 us a crossing of LevelDB's background
threads with them in LevelDB, three runs; 7 us with them here, fourteen runs). In a file of
their own they cost one append and one ``fdatasync`` a block.

The file is a run of entries, each::

    height (8 bytes, big-endian) | length (4 bytes) | payload | CRC-32 of all before it (4 bytes)

appended in height order. The store writes an entry, durably, before the block's batch, so after
a crash the file holds every block the store holds whose nodes were not written, and perhaps one
more (written before a batch that never was): :meth:`TreeJournal.read` stops at the first entry
that is cut short or fails its checksum, and the store keeps the run it needs and cuts the rest.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

from ledger.errors import StorageError
from ledger.storage.files import fsync_dir

#: the journal's name in the store's directory (LevelDB leaves files it does not know alone)
JOURNAL_NAME = "TREE-JOURNAL"
_HEAD = struct.Struct(">QI")
_CRC = struct.Struct(">I")


def frame(height: int, payload: bytes) -> bytes:
    """One entry's bytes."""
    head = _HEAD.pack(height, len(payload))
    return head + payload + _CRC.pack(zlib.crc32(payload, zlib.crc32(head)))


class TreeJournal:
    """Entries appended to ``path``, created at the first append."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def _open(self) -> int:
        if self._fd is None:
            created = not self.path.exists()
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            except OSError as exc:
                raise StorageError(f"cannot open the tree journal {self.path}: {exc}") from None
            if created:
                fsync_dir(self.path.parent)
        return self._fd

    def append(self, height: int, payload: bytes, *, sync: bool = True) -> int:
        """Append an entry (durably with ``sync``); returns the journal's size before it, to
        :meth:`cut` it off again if the block it belongs to is not stored after all."""
        fd = self._open()
        try:
            before = os.lseek(fd, 0, os.SEEK_END)
            view = memoryview(frame(height, payload))
            while view:
                view = view[os.write(fd, view):]
            if sync:
                os.fdatasync(fd)
        except OSError as exc:
            raise StorageError(f"cannot append to the tree journal {self.path}: {exc}") from None
        return before

    def read(self) -> list[tuple[int, bytes, int]]:
        """(height, payload, offset just past the entry) of each whole entry, in file order, up
        to the first one cut short or damaged."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StorageError(f"cannot read the tree journal {self.path}: {exc}") from None
        out = []
        at, head, tail = 0, _HEAD.size, _CRC.size
        while at + head <= len(data):
            height, length = _HEAD.unpack_from(data, at)
            end = at + head + length + tail
            if end > len(data):
                break
            (crc,) = _CRC.unpack_from(data, end - tail)
            if crc != zlib.crc32(data[at:end - tail]):
                break
            out.append((height, data[at + head:end - tail], end))
            at = end
        return out

    def cut(self, size: int) -> None:
        """Keep the journal's first ``size`` bytes (0: empty it)."""
        if self._fd is None and not self.path.exists():
            return
        fd = self._open()
        try:
            os.ftruncate(fd, size)
            os.fdatasync(fd)
        except OSError as exc:
            raise StorageError(f"cannot cut the tree journal {self.path}: {exc}") from None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
