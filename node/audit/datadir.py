"""A node's data directory as an audit source: its LevelDB, opened without writing a record.

**A running node holds the LevelDB lock.** Audit a stopped node's directory, or a copy
(``cp -a NODE/chain COPY`` while the node is stopped). LevelDB may tidy its own bookkeeping
files when a database is opened (log recovery); the audit never writes a record.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ledger.audit.source import SourceError, StoreSource
from ledger.errors import StorageError
from ledger.storage.kv import plyvel_range
from ledger.storage.treejournal import JOURNAL_NAME, TreeJournal


class DamagedStore(SourceError):
    """The store's files are damaged so that LevelDB will not open them: a finding about the
    store (exit 1, like a table that cannot be read), not a mistake of the caller's."""


class _ReadOnlyLevelDB:
    """The read half of :class:`ledger.storage.kv.LevelKV`, refusing writes."""

    def __init__(self, path: Path) -> None:
        import plyvel

        try:
            self._db = plyvel.DB(str(path), create_if_missing=False, paranoid_checks=True)
        except plyvel.IOError as exc:
            if "lock" in str(exc).lower():
                raise SourceError(
                    f"the LevelDB at {path} is locked: a running node holds it. Stop the node, or audit "
                    f"a copy taken while it was stopped (cp -a {path} COPY)"
                ) from None
            raise SourceError(f"cannot open the LevelDB at {path}: {exc}") from None
        except plyvel.CorruptionError as exc:  # a damaged log, table or MANIFEST, a table missing
            raise DamagedStore(f"the LevelDB at {path} is damaged: {exc}") from None
        except plyvel.Error as exc:
            raise SourceError(f"the LevelDB at {path} is unusable: {exc}") from None

    def get(self, key: bytes) -> bytes | None:
        import plyvel

        try:
            return self._db.get(key, verify_checksums=True)  # unverified, a zeroed block reads as "absent"
        except plyvel.Error as exc:  # a damaged table: the audit reports it as a finding
            raise StorageError(f"LevelDB: {exc}") from None

    def iterate(self, start: bytes, stop: bytes, *, reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        import plyvel

        try:
            yield from plyvel_range(self._db, start, stop, reverse=reverse)
        except plyvel.Error as exc:
            raise StorageError(f"LevelDB: {exc}") from None

    def write(self, changes, *, sync: bool = True) -> None:
        raise StorageError("an audit never writes to the audited store")

    def close(self) -> None:
        if not self._db.closed:
            self._db.close()


def chain_dir(path: str | Path) -> Path:
    """The LevelDB directory of a node: ``path`` itself, or ``path/chain`` for a node directory."""
    path = Path(path)
    if (path / "CURRENT").is_file():
        return path
    if (path / "chain" / "CURRENT").is_file():
        return path / "chain"
    if not path.exists():
        raise SourceError(f"{path} does not exist")
    raise SourceError(f"{path} is not a node's data directory (no LevelDB there nor in {path / 'chain'})")


def _refuse_if_locked(directory: Path) -> None:
    """LevelDB's own lock (fcntl on ``LOCK``): held while a node runs on this directory."""
    import fcntl

    lock = directory / "LOCK"
    if not lock.exists():
        return
    with open(lock, "rb+") as f:
        try:
            fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise SourceError(
                f"the LevelDB at {directory} is locked: a running node holds it. Stop the node, or audit "
                f"a copy taken while it was stopped (cp -a {directory} COPY)"
            ) from None
        fcntl.lockf(f, fcntl.LOCK_UN)


class DataDirSource(StoreSource):
    """A node's LevelDB data directory, opened without ever writing a record.

    With ``copy=True`` the audit runs on a temporary copy and leaves the directory byte for byte
    as it was (opening a LevelDB rewrites its bookkeeping files, never its records): what an
    auditor preserving evidence wants.
    """

    def __init__(self, path: str | Path, *, copy: bool = False) -> None:
        directory = chain_dir(path)
        self.path = directory
        self._scratch: Path | None = None
        opened = directory
        if copy:
            _refuse_if_locked(directory)
            self._scratch = Path(tempfile.mkdtemp(prefix="custos-audit-"))
            opened = self._scratch / "chain"
            shutil.copytree(directory, opened, ignore=shutil.ignore_patterns("LOCK"))
        self._journal = TreeJournal(opened / JOURNAL_NAME)
        try:
            super().__init__(_ReadOnlyLevelDB(opened), f"data directory {directory}")
        except BaseException:
            self._remove_scratch()
            raise

    def tree_journal(self) -> list[tuple[int, bytes]]:
        return [(height, payload) for height, payload, _ in self._journal.read()]  # read only: never created

    def _remove_scratch(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def close(self) -> None:
        super().close()
        self._remove_scratch()
