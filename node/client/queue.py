"""The terminal's durable outbox: signed crossing requests waiting for a node, on disk.

A border post loses its network; the officer keeps working. Every request is written here
(LevelDB, synchronous write) *before* any attempt to send it, and leaves the outbox only when a
node has acknowledged it, which it does only once the request is on the node's disk. Delivery
resends the very same signed bytes; a node answers an identical resubmission with the original
result, so a request is committed exactly once however often the terminal crashes or retries.

Layout (keys of one LevelDB, ``DIR/queue``)::

    b"n"                      next sequence number
    b"q" + seq (8 bytes)      waiting: not yet acknowledged by any node
    b"s" + request id         sent: acknowledged, its final decision not yet seen
    b"r" + seq (8 bytes)      refused: a node rejected it by a rule (kept for the officer)

Moving an entry from one state to the next is one synchronous batch, so after a crash it is in
exactly one of them. One process at a time holds the outbox (LevelDB's lock); a second is
refused with :class:`QueueBusy`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgpack

from ledger.errors import CustosError, StorageError
from ledger.storage.kv import LevelKV

_NEXT = b"n"
_WAITING = b"q"
_SENT = b"s"
_REFUSED = b"r"


class QueueBusy(CustosError):
    code = "queue-busy"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _pack(doc: dict) -> bytes:
    return msgpack.packb(doc, use_bin_type=True)


def _unpack(raw: bytes) -> dict:
    return msgpack.unpackb(raw, raw=False)


@dataclass(frozen=True, slots=True)
class Waiting:
    seq: int
    request_id: bytes
    raw: bytes
    queued_ms: int
    attempts: int
    last_error: str


@dataclass(frozen=True, slots=True)
class Sent:
    request_id: bytes
    raw: bytes
    queued_ms: int
    acked_ms: int
    answer: str  # "accepted" (on a node's disk) or "committed"
    node: str


@dataclass(frozen=True, slots=True)
class Refused:
    seq: int
    request_id: bytes
    raw: bytes
    queued_ms: int
    rule: str
    detail: str


class DurableQueue:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.kv = LevelKV(self.path)
        except StorageError as exc:
            if "lock" in str(exc).lower():
                raise QueueBusy(f"the outbox {self.path} is in use by another terminal process") from None
            raise
        raw = self.kv.get(_NEXT)
        self._next = 0 if raw is None else int.from_bytes(raw, "big")

    def close(self) -> None:
        self.kv.close()

    def __enter__(self) -> DurableQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- waiting
    def put(self, request_id: bytes, raw: bytes) -> Waiting:
        """Durably queue a signed request; returns once it is on disk."""
        seq = self._next
        entry = Waiting(seq, request_id, raw, _now_ms(), 0, "")
        self.kv.write({_WAITING + seq.to_bytes(8, "big"): self._waiting_value(entry),
                       _NEXT: (seq + 1).to_bytes(8, "big")}, sync=True)
        self._next = seq + 1
        return entry

    @staticmethod
    def _waiting_value(e: Waiting) -> bytes:
        return _pack({"id": e.request_id, "raw": e.raw, "queued_ms": e.queued_ms, "attempts": e.attempts,
                      "error": e.last_error})

    def waiting(self, limit: int | None = None) -> list[Waiting]:
        """Waiting requests in the order they were queued."""
        out = []
        for key, raw in self.kv.iterate(_WAITING, _WAITING + b"\xff" * 9):
            d = _unpack(raw)
            out.append(Waiting(int.from_bytes(key[1:], "big"), d["id"], d["raw"], d["queued_ms"], d["attempts"],
                               d["error"]))
            if limit is not None and len(out) >= limit:
                break
        return out

    def note_failure(self, entries: list[Waiting], error: str) -> None:
        """Count a failed delivery attempt (not synchronous: only a counter for the officer)."""
        batch = {}
        for e in entries:
            key = _WAITING + e.seq.to_bytes(8, "big")
            if self.kv.get(key) is not None:
                batch[key] = self._waiting_value(Waiting(e.seq, e.request_id, e.raw, e.queued_ms, e.attempts + 1,
                                                         error[:200]))
        if batch:
            self.kv.write(batch, sync=False)

    def acknowledge(self, entry: Waiting, answer: str, node: str) -> Sent:
        """A node holds the request: waiting -> sent, in one synchronous batch."""
        sent = Sent(entry.request_id, entry.raw, entry.queued_ms, _now_ms(), answer, node)
        self.kv.write({_WAITING + entry.seq.to_bytes(8, "big"): None,
                       _SENT + entry.request_id: _pack({"raw": sent.raw, "queued_ms": sent.queued_ms,
                                                        "acked_ms": sent.acked_ms, "answer": answer, "node": node})},
                      sync=True)
        return sent

    def refuse(self, entry: Waiting, rule: str, detail: str) -> Refused:
        """A node rejected the request by a rule: waiting -> refused (never resent by itself)."""
        refused = Refused(entry.seq, entry.request_id, entry.raw, entry.queued_ms, rule, detail[:300])
        self.kv.write({_WAITING + entry.seq.to_bytes(8, "big"): None,
                       _REFUSED + entry.seq.to_bytes(8, "big"): _pack({"id": entry.request_id, "raw": entry.raw,
                                                                       "queued_ms": entry.queued_ms, "rule": rule,
                                                                       "detail": refused.detail})},
                      sync=True)
        return refused

    # ---- sent
    def sent(self) -> list[Sent]:
        out = []
        for key, raw in self.kv.iterate(_SENT, _SENT + b"\xff" * 33):
            d = _unpack(raw)
            out.append(Sent(key[1:], d["raw"], d["queued_ms"], d["acked_ms"], d["answer"], d["node"]))
        out.sort(key=lambda s: s.queued_ms)
        return out

    def is_sent(self, request_id: bytes) -> bool:
        return self.kv.get(_SENT + request_id) is not None

    def settle(self, request_id: bytes) -> None:
        """The final decision was seen: forget the request."""
        self.kv.write({_SENT + request_id: None}, sync=True)

    def resend(self, sent: Sent) -> Waiting:
        """A node no longer knows an acknowledged request (it was dropped): queue it again."""
        seq = self._next
        entry = Waiting(seq, sent.request_id, sent.raw, sent.queued_ms, 0, "resent: no node knew it any more")
        self.kv.write({_SENT + sent.request_id: None, _WAITING + seq.to_bytes(8, "big"): self._waiting_value(entry),
                       _NEXT: (seq + 1).to_bytes(8, "big")}, sync=True)
        self._next = seq + 1
        return entry

    # ---- refused
    def refused(self) -> list[Refused]:
        out = []
        for key, raw in self.kv.iterate(_REFUSED, _REFUSED + b"\xff" * 9):
            d = _unpack(raw)
            out.append(Refused(int.from_bytes(key[1:], "big"), d["id"], d["raw"], d["queued_ms"], d["rule"],
                               d["detail"]))
        return out

    def discard_refused(self, seq: int) -> None:
        self.kv.write({_REFUSED + seq.to_bytes(8, "big"): None}, sync=True)

    def counts(self) -> dict[str, int]:
        def count(prefix: bytes, width: int) -> int:
            return sum(1 for _ in self._keys(prefix, width))

        return {"waiting": count(_WAITING, 9), "sent": count(_SENT, 33), "refused": count(_REFUSED, 9)}

    def _keys(self, prefix: bytes, width: int) -> Iterator[bytes]:
        for key, _ in self.kv.iterate(prefix, prefix + b"\xff" * width):
            yield key
