"""The consensus write-ahead log: every input the engine acts on for the current height.

A restarted validator replays the log into a fresh engine (see :mod:`node.consensus.recorder`)
and is back in the round and step it had reached, with the same lock, without signing anything
that conflicts with what it sent before the crash.

Format: a sequence of records, each ``length (4 bytes, big-endian) || CRC-32 of payload
(4 bytes, big-endian) || payload``, where the payload is the canonical msgpack of
``{"type": "start" | "proposal" | "vote" | "timeout", "body": ...}``. The first record of the
log is always ``start`` (the height and its validator set); the log holds one height only and
is replaced atomically (:meth:`ConsensusWal.begin_height`) when the next height starts.

Recovery (:class:`ConsensusWal` does it on open): records are read until the end, or until one
is torn (short header or payload: a crash in the middle of an append), fails its checksum, or
does not decode. Everything from that record on is cut off, the file is truncated there, and
the problem is reported in :attr:`ConsensusWal.recovery`; the node never crashes on it. What
was cut can only be inputs that were never made durable, which peers send again.

Where fsync is needed, and why:

* **Before any message of this node leaves it**, the log must be durable up to and including
  the input that made the engine sign it (:meth:`ConsensusWal.sync`; the recorder does it).
  The signer (:mod:`node.consensus.privval`) already records every signature durably, so the
  *signatures* need no help from the log to prevent double signing: after a crash the signer
  refuses anything that conflicts. But a precommit also announces a *lock* (lines 36-41), and
  the lock lives only in the engine's state, rebuilt from the log; a validator that forgot a
  lock it announced could prevote for another value in a later round, which breaks safety as
  surely as double signing. So the log is synced before own messages are sent.
* Peer messages and timeouts are appended without fsync: losing them in a power cut loses
  nothing that was announced, and peers re-send (``rebroadcast``).
* :meth:`ConsensusWal.begin_height` rewrites the log atomically and durably. Call it only after
  the decided block is durable in the block store.

Once its height is stored, the log's inputs are needed no more (a restart starts the next
height afresh); :meth:`ConsensusWal.drop_inputs` then cuts it to its start record, so proposals
of a decided height (whole transactions, of a child erased since, say) do not stay on disk until
the next height starts.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from ledger.block import VOTE, Vote
from ledger.encoding import Int, Schema, Spec
from ledger.errors import DecodeError
from ledger.storage.files import temporary_path, write_atomically
from ledger.validators import ValidatorSet
from node.consensus.errors import WalError
from node.consensus.messages import (
    MAX_MESSAGE_BYTES,
    PROPOSAL,
    TIMEOUT,
    Proposal,
    TaggedUnion,
    Timeout,
)

_HEADER = struct.Struct(">II")
HEADER_SIZE = _HEADER.size
#: the largest payload a record may have (a proposal carrying the largest value, and then some)
MAX_RECORD_BYTES = MAX_MESSAGE_BYTES + 64 * 1024


@dataclass(frozen=True, slots=True)
class StartHeight:
    """The first record of a log: the height being decided and its validator set."""

    height: int
    validators: ValidatorSet


class _ValidatorSetSpec(Spec):
    name = "validators"

    def check(self, value: Any, path: str) -> ValidatorSet:
        return ValidatorSet.from_wire(value, path)

    def wire(self, value: ValidatorSet) -> list:
        return value.wire()


START_HEIGHT = Schema(StartHeight, {"height": Int(min=1), "validators": _ValidatorSetSpec()})

Record = StartHeight | Proposal | Vote | Timeout

RECORD = TaggedUnion({"start": START_HEIGHT, "proposal": PROPOSAL, "vote": VOTE,
                      "timeout": TIMEOUT})


def frame(record: Record) -> bytes:
    """One record as stored: length, CRC-32, canonical payload."""
    if type(record) is Vote:
        return _frame_vote(record)
    payload = RECORD.encode(record)
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


@lru_cache(maxsize=2048)
def _frame_vote(vote: Vote) -> bytes:
    # Votes are small and re-sent often (``rebroadcast``): encode each one once. Proposals
    # are not cached, so that no large value is kept alive here.
    payload = RECORD.encode(vote)
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


@dataclass(frozen=True, slots=True)
class WalRecovery:
    """What opening the log found.

    ``records`` are the intact records; ``valid_bytes`` their total size. If the tail was torn
    or corrupt, ``problem`` says how, and ``dropped_bytes`` were cut off.
    """

    records: tuple[Record, ...]
    valid_bytes: int
    dropped_bytes: int = 0
    problem: str | None = None

    @property
    def height(self) -> int | None:
        """The height the log is for, or None if it holds no start record."""
        if self.records and isinstance(self.records[0], StartHeight):
            return self.records[0].height
        return None


def parse(data: bytes) -> WalRecovery:
    """Read records from ``data`` up to the first torn or corrupt one."""
    records: list[Record] = []
    pos, end = 0, len(data)
    problem = None
    while pos < end:
        if end - pos < HEADER_SIZE:
            problem = f"torn record header at offset {pos}"
            break
        length, crc = _HEADER.unpack_from(data, pos)
        if length > MAX_RECORD_BYTES:
            problem = f"record at offset {pos} claims {length} bytes (corrupt length)"
            break
        start = pos + HEADER_SIZE
        if end - start < length:
            problem = f"torn record at offset {pos}: {end - start} of {length} bytes"
            break
        payload = data[start:start + length]
        if zlib.crc32(payload) != crc:
            problem = f"checksum mismatch in record at offset {pos}"
            break
        try:
            record = RECORD.decode(payload, max_size=MAX_RECORD_BYTES)
        except DecodeError as exc:
            problem = f"undecodable record at offset {pos}: {exc}"
            break
        if (not records) != isinstance(record, StartHeight):
            problem = f"record at offset {pos} is out of place (a log starts with one start record)"
            break
        records.append(record)
        pos = start + length
    return WalRecovery(tuple(records), pos, end - pos, problem)


# --------------------------------------------------------------------------- storage


class WalStorage(Protocol):
    """Bytes of one log. ``append`` reaches the OS; ``sync`` makes everything durable."""

    def read(self) -> bytes: ...

    def append(self, data: bytes) -> None: ...

    def sync(self) -> None: ...

    def truncate(self, size: int) -> None: ...

    def rewrite(self, data: bytes) -> None: ...


class FileStorage:
    """A log file. ``rewrite`` goes through a temporary file, fsync, rename, fsync of the dir."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._tmp = temporary_path(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self._tmp.exists():
                self._tmp.unlink()
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as exc:
            raise WalError(f"cannot open the consensus log {self.path}: {exc}") from exc

    def read(self) -> bytes:
        try:
            return self.path.read_bytes()
        except OSError as exc:
            raise WalError(f"cannot read the consensus log {self.path}: {exc}") from exc

    def append(self, data: bytes) -> None:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
        except OSError as exc:
            raise WalError(f"cannot append to the consensus log {self.path}: {exc}") from exc

    def sync(self) -> None:
        try:
            os.fsync(self._fd)
        except OSError as exc:
            raise WalError(f"cannot sync the consensus log {self.path}: {exc}") from exc

    def truncate(self, size: int) -> None:
        try:
            os.ftruncate(self._fd, size)
            os.fsync(self._fd)
        except OSError as exc:
            raise WalError(f"cannot truncate the consensus log {self.path}: {exc}") from exc

    def rewrite(self, data: bytes) -> None:
        try:
            write_atomically(self.path, data)
            old, self._fd = self._fd, os.open(self.path, os.O_RDWR | os.O_APPEND)
            os.close(old)
        except OSError as exc:
            raise WalError(f"cannot start a new consensus log {self.path}: {exc}") from exc

    def close(self) -> None:
        os.close(self._fd)


class MemoryStorage:
    """A log in memory that knows which bytes are durable, to simulate power cuts."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.durable = 0

    def read(self) -> bytes:
        return bytes(self.data)

    def append(self, data: bytes) -> None:
        self.data += data

    def sync(self) -> None:
        self.durable = len(self.data)

    def truncate(self, size: int) -> None:
        del self.data[size:]
        self.durable = min(self.durable, size)

    def rewrite(self, data: bytes) -> None:
        self.data = bytearray(data)
        self.durable = len(data)

    def power_cut(self, keep: int) -> None:
        """Lose everything not synced except the first ``keep`` bytes of it (a torn write)."""
        del self.data[self.durable + max(0, keep):]


# --------------------------------------------------------------------------- the log


class ConsensusWal:
    """The write-ahead log of one node. Opening it recovers it (see :attr:`recovery`)."""

    def __init__(self, storage: WalStorage) -> None:
        self.storage = storage
        data = storage.read()
        self.recovery = parse(data)
        if self.recovery.dropped_bytes:
            storage.truncate(self.recovery.valid_bytes)
        self.height = self.recovery.height
        self._start: StartHeight | None = None
        if self.recovery.records and isinstance(self.recovery.records[0], StartHeight):
            self._start = self.recovery.records[0]

    @classmethod
    def open(cls, path: str | os.PathLike) -> ConsensusWal:
        return cls(FileStorage(path))

    def begin_height(self, height: int, validators: ValidatorSet,
                     carried: Iterable[Proposal | Vote] = ()) -> None:
        """Replace the log, durably, by one for ``height`` (the previous height is decided).

        ``carried`` are messages for ``height`` received before it started (the engine's
        buffer, :meth:`~node.consensus.engine.Engine.pending_for`); they are replayed right
        after the start record, as the engine processes them.
        """
        start = StartHeight(height, validators)
        data = frame(start) + b"".join(frame(m) for m in carried)
        self.storage.rewrite(data)
        self.height, self._start = height, start

    def drop_inputs(self) -> None:
        """Replace the log, durably, by its start record alone: for a height that is stored
        already, whose inputs no restart needs. Appends go on after it as before."""
        if self._start is not None:
            self.storage.rewrite(frame(self._start))

    def append(self, record: Proposal | Vote | Timeout) -> None:
        """Append one input (not yet durable: see :meth:`sync`)."""
        if self.height is None:
            raise WalError("the consensus log has no height: call begin_height first")
        self.storage.append(frame(record))

    def sync(self) -> None:
        """Make every appended record durable."""
        self.storage.sync()

    def close(self) -> None:
        """Close the log file (a memory log has nothing to close)."""
        close = getattr(self.storage, "close", None)
        if close is not None:
            close()
