"""An ordered key-value store interface, with LevelDB (plyvel) and in-memory backends."""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Protocol

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

    def close(self) -> None:
        pass


class LevelKV:
    """LevelDB through plyvel. Every batch written with ``sync=True`` is fsynced before return."""

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        import plyvel

        self.path = Path(path)
        try:
            if create:
                self.path.mkdir(parents=True, exist_ok=True)
            self._db = plyvel.DB(
                str(self.path), create_if_missing=create, paranoid_checks=True,
                # most lookups on a busy node are for keys that do not exist (is this
                # transaction new?): bloom filters answer those without touching the tables
                bloom_filter_bits=10,
                lru_cache_size=64 * 1024 * 1024,
                write_buffer_size=16 * 1024 * 1024,
            )
        except (plyvel.IOError, OSError) as exc:
            raise StorageError(f"cannot open LevelDB at {self.path}: {exc}") from None
        except plyvel.Error as exc:
            raise StorageError(f"LevelDB at {self.path} is unusable: {exc}") from None

    def get(self, key: bytes) -> bytes | None:
        return self._db.get(key)

    def iterate(self, start: bytes, stop: bytes, *, reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        with self._db.iterator(start=start, stop=stop, reverse=reverse) as it:
            yield from it

    def write(self, changes: Mapping[bytes, bytes | None], *, sync: bool = True) -> None:
        # transaction=True: if anything raises half way, plyvel drops the batch instead of writing
        # the half already collected (its default writes it)
        with self._db.write_batch(sync=sync, transaction=True) as batch:
            for k, v in changes.items():
                if v is None:
                    batch.delete(k)
                else:
                    batch.put(k, v)

    def close(self) -> None:
        if not self._db.closed:
            self._db.close()
