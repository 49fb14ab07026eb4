"""An ordered key-value store interface, with LevelDB (plyvel) and in-memory backends."""

from __future__ import annotations

import bisect
import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import plyvel

from ledger.errors import StorageError


class KV(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def iterate(self, start: bytes, stop: bytes, *, reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        """Entries with start <= key < stop in key order (or reverse order)."""
        ...

    def write(self, changes: Mapping[bytes, bytes | None], *, sync: bool = True) -> None:
        """Apply all changes atomically (None deletes); with ``sync`` they are durable on return."""
        ...

    def close(self) -> None: ...


class Snapshot(Protocol):
    """A read-only view of a store as it was when the snapshot was taken."""

    def get(self, key: bytes) -> bytes | None: ...

    def iterator(self, *, start: bytes, stop: bytes) -> Any:
        """A context manager iterating the entries with start <= key < stop, in key order."""
        ...

    def close(self) -> None: ...


class _MemorySnapshot:
    __slots__ = ("_data",)

    def __init__(self, data: dict[bytes, bytes]) -> None:
        self._data = data

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    @contextlib.contextmanager
    def iterator(self, *, start: bytes, stop: bytes) -> Iterator[Iterator[tuple[bytes, bytes]]]:
        yield iter(sorted((k, v) for k, v in self._data.items() if start <= k < stop))

    def close(self) -> None:
        self._data = {}


class MemoryKV:
    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}
        self._keys: list[bytes] = []

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def iterate(self, start: bytes, stop: bytes, *, reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        lo = bisect.bisect_left(self._keys, start)
        hi = bisect.bisect_left(self._keys, stop)
        keys = self._keys[lo:hi]
        if reverse:
            keys.reverse()
        for k in keys:
            yield k, self._data[k]

    def write(self, changes: Mapping[bytes, bytes | None], *, sync: bool = True) -> None:
        for k, v in list(changes.items()):  # read every change before applying any: all or nothing
            if v is None:
                if self._data.pop(k, None) is not None:
                    self._keys.pop(bisect.bisect_left(self._keys, k))
            else:
                if k not in self._data:
                    bisect.insort(self._keys, k)
                self._data[k] = v

    def snapshot(self) -> Snapshot:
        """A copy (in-memory stores are for tests and small replays)."""
        return _MemorySnapshot(dict(self._data))

    def close(self) -> None:
        pass


#: table files LevelDB keeps open unless told otherwise (its own default, 1000, can exhaust a
#: small open-file limit; a node sizes its chain store's from the limit, node/edge/fdbudget.py)
DEFAULT_MAX_OPEN_FILES = 64
#: LevelDB's memtable. A block of 1,000 crossings writes about 2.5 MB, much of it tree nodes
#: rewritten at the same positions block after block; a larger memtable flushes less often and
#: absorbs more of those rewrites before they reach the table files. From 16 MB to 64 MB, the
#: background threads' CPU (flushes and compactions) fell by a fifth with the state map and by
#: half without it (``scripts/bench_store.py``, steady state). It costs memory: up to twice
#: this while one memtable is flushed, and a longer log to replay when a store is reopened.
WRITE_BUFFER_BYTES = 64 * 1024 * 1024


def plyvel_range(db: Any, start: bytes, stop: bytes, *, reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
    """The entries of a plyvel database with start <= key < stop, in key order (or reversed),
    every table block read checked. plyvel (1.5.1) going backwards from ``stop`` leaves out
    ``start`` itself when it is the only key of the range, so the backward walk is bounded here."""
    if not reverse:
        with db.iterator(start=start, stop=stop, verify_checksums=True) as it:
            yield from it
        return
    with db.iterator(stop=stop, reverse=True, verify_checksums=True) as it:
        for key, value in it:
            if key < start:
                return
            yield key, value


class LevelKV:
    """LevelDB through plyvel. Every batch written with ``sync=True`` is fsynced before return.

    Keys start with a byte between 0x01 and 0x7e (every store here uses ASCII prefixes), which
    :meth:`compact` relies on. ``max_open_files`` bounds the file descriptors its table cache
    holds.

    ``create`` allows making a new database, and only where there is nothing yet (the
    directory is missing or empty). LevelDB asked to "create if missing" a database whose
    ``CURRENT`` file is gone makes a new, empty one and deletes the tables it does not know:
    every record. An existing directory without a database is refused instead.

    Every read verifies the checksums of the table blocks it reads from disk (unverified, a
    zeroed block reads as "no such key"). Any error LevelDB reports (a damaged table, a failed
    write) is raised as :class:`StorageError`, and the first one is kept in ``damage``.
    """

    #: LevelDB's own diagnostic logs in the database directory; compactions write keys into them
    INFO_LOGS = ("LOG", "LOG.old")
    #: records below and above every key, rewritten before a compaction (see :meth:`compact`)
    SENTINELS = (b"\x00", b"\x7f")

    def __init__(self, path: str | Path, *, create: bool = True, max_open_files: int = DEFAULT_MAX_OPEN_FILES) -> None:
        self.path = Path(path)
        self.max_open_files = max_open_files
        #: the first error LevelDB reported since it was opened (None while all is well)
        self.damage: str | None = None
        fresh = not self.path.exists() or (self.path.is_dir() and not any(self.path.iterdir()))
        #: True if this opening made a new, empty database
        self.created = create and fresh
        if not fresh and not (self.path / "CURRENT").is_file():
            raise StorageError(f"{self.path} holds no LevelDB (its CURRENT file is missing): the store is damaged "
                               "or this is not a store; refusing to open it, or to make a new one over it")
        if self.created:
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"cannot open LevelDB at {self.path}: {exc}") from None
        self._db = self._open(create_if_missing=self.created)

    def _open(self, *, create_if_missing: bool = False):
        try:
            return plyvel.DB(
                str(self.path), create_if_missing=create_if_missing, paranoid_checks=True,
                # most lookups on a busy node are for keys that do not exist (is this
                # transaction new?): bloom filters answer those without touching the tables
                bloom_filter_bits=10,
                lru_cache_size=64 * 1024 * 1024,
                write_buffer_size=WRITE_BUFFER_BYTES,
                max_open_files=self.max_open_files,
            )
        except (plyvel.IOError, OSError) as exc:
            raise StorageError(f"cannot open LevelDB at {self.path}: {exc}") from None
        except plyvel.Error as exc:
            raise StorageError(f"LevelDB at {self.path} is unusable: {exc}") from None

    def _failed(self, what: str, exc: Exception) -> StorageError:
        message = f"LevelDB at {self.path}: {what} failed: {exc}"
        if self.damage is None:
            self.damage = message
        return StorageError(message)

    def get(self, key: bytes) -> bytes | None:
        try:
            return self._db.get(key, verify_checksums=True)
        except plyvel.Error as exc:
            raise self._failed("a read", exc) from None

    def get_verified(self, key: bytes) -> bytes | None:
        """``get``, verifying the checksum of every table block read, without filling the cache."""
        try:
            return self._db.get(key, verify_checksums=True, fill_cache=False)
        except plyvel.Error as exc:
            raise self._failed("a read", exc) from None

    def iterate(self, start: bytes, stop: bytes, *, reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        try:
            yield from plyvel_range(self._db, start, stop, reverse=reverse)
        except plyvel.Error as exc:
            raise self._failed("a scan", exc) from None

    def write(self, changes: Mapping[bytes, bytes | None], *, sync: bool = True) -> None:
        # transaction=True: if anything raises half way, plyvel drops the batch instead of writing
        # the half already collected (its default writes it)
        try:
            with self._db.write_batch(sync=sync, transaction=True) as batch:
                put, delete = batch.put, batch.delete
                for k, v in changes.items():
                    if v is None:
                        delete(k)
                    else:
                        put(k, v)
        except plyvel.Error as exc:
            raise self._failed("a write", exc) from None

    def compact(self) -> None:
        """Rewrite the tables so that deleted and overwritten keys and values leave the files.

        LevelDB's manual compaction moves the data of every level into the deepest level that
        holds any, dropping what a newer entry hides, but never rewrites a table at that level
        that no table above overlaps. Such a table came out of a compaction (nothing hidden in
        it), or, in a database of at most three levels, straight from a flush of the memory
        table, which keeps every version of a key (a child's record and its deletion, say).
        So the memory table is flushed first and the tables that exist then are noted; both
        sentinels are rewritten before each pass, so the next flush spans every key and,
        compacted into the deepest level, takes every table there along. A pass that leaves a
        noted table in a shallow database is followed by another (one pass is the rule).

        The bounds are explicit: plyvel passes absent bounds as empty keys, and LevelDB then
        compacts the empty range only (it flushes the memory table and nothing else), which is
        how the flush is done.

        LevelDB also remembers, per level, the largest key its last compaction there read (the
        "compaction pointer", kept in the MANIFEST); a pass over the whole range leaves it at the
        upper sentinel, never at a deleted key.
        """
        self._db.compact_range(start=b"\x00\x00", stop=b"\x00\x00")  # flush the memory table only
        noted = self._tables()
        for _ in range(2):
            for sentinel in self.SENTINELS:
                self._db.put(sentinel, b"")
            self._db.compact_range(start=b"", stop=b"\xff" * 8)
            if not noted & self._tables() or self._deepest_level() > 2:
                return

    def _tables(self) -> set[str]:
        return {p.name for p in self.path.iterdir() if p.suffix in (".ldb", ".sst")}

    def _deepest_level(self) -> int:
        for level in range(6, -1, -1):
            if int(self._db.get_property(f"leveldb.num-files-at-level{level}".encode()) or 0):
                return level
        return 0

    def files_holding(self, needles: list[bytes]) -> list[str]:
        """Names of the database's files holding any of ``needles``: what to check after
        :meth:`compact` and :meth:`reopen`."""
        found = []
        for path in sorted(self.path.iterdir()):
            try:
                data = path.read_bytes()
            except (FileNotFoundError, IsADirectoryError):
                continue  # LevelDB removed it meanwhile
            if any(needle in data for needle in needles):
                found.append(path.name)
        return found

    def reopen(self) -> None:
        """Close and reopen the database; the caller guarantees nobody uses it meanwhile.

        LevelDB's MANIFEST lists the first and last key of every table it ever made until the
        database is opened again, which writes a new one describing the live tables only. The
        diagnostic logs, which name keys of manual compactions, are removed while it is closed.
        """
        self._db.close()
        for name in self.INFO_LOGS:
            try:
                (self.path / name).unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise StorageError(f"cannot remove {self.path / name}: {exc}") from None
        self._db = self._open()

    def snapshot(self) -> Snapshot:
        """A LevelDB snapshot: reads see the store as it is now, whatever is written later.
        It pins the files it needs until closed."""
        return self._db.snapshot()

    def close(self) -> None:
        if not self._db.closed:
            self._db.close()
