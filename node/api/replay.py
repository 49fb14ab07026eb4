"""The replay cache: each (key, nonce) of a signed request is accepted once while it is fresh.

A signed request is fresh while its time lies within the node's window of the node's clock, so
an entry is kept until ``time + window`` and then forgotten (the time check refuses it from
then on). Entries live in memory for the check and in the node's own LevelDB
(``DATA_DIR/replay``) so that a restart within the window forgets nothing: written before the
request is served, without fsync (a killed process loses nothing the kernel holds; a power cut
may lose the last writes, which an attacker must also capture and replay within the window).

Quotas are per key: one key can hold at most ``per_key`` fresh entries (a caller that signs
faster than ``per_key`` per window is told 429 and slows down), so no key can fill the cache for
the others. Only keys that may read something are remembered at all (node.api.auth), and those
are registered by the council, so the whole cache is bounded by the keys the chain knows.

Layout: ``b"e" + expiry (8 bytes, big-endian) + token (32)`` -> the signing key, where
``token = SHA-256(key || nonce)``; ordered by expiry, so forgetting is a range delete.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
from collections import Counter
from pathlib import Path

from ledger.storage.kv import KV, LevelKV, MemoryKV

log = logging.getLogger("custos.replay")

_ENTRY = b"e"
_END = b"f"


class QuotaExceeded(Exception):
    """The key holds ``per_key`` fresh requests already."""


class ReplayCache:
    def __init__(self, kv: KV, *, per_key: int = 10_000) -> None:
        self.kv = kv
        self.per_key = per_key
        self._expiry: dict[bytes, int] = {}  # token -> expiry
        self._heap: list[tuple[int, bytes, bytes]] = []  # (expiry, token, key)
        self._per_key: Counter[bytes] = Counter()
        for k, key in kv.iterate(_ENTRY, _END):
            expiry, token = int.from_bytes(k[1:9], "big"), k[9:]
            self._remember(token, key, expiry)

    @classmethod
    def open(cls, path: Path, **kwargs: int) -> ReplayCache:
        return cls(LevelKV(path), **kwargs)

    @classmethod
    def memory(cls, **kwargs: int) -> ReplayCache:
        return cls(MemoryKV(), **kwargs)

    def __len__(self) -> int:
        return len(self._expiry)

    def held_by(self, key: bytes) -> int:
        return self._per_key[key]

    def _remember(self, token: bytes, key: bytes, expiry: int) -> None:
        self._expiry[token] = expiry
        heapq.heappush(self._heap, (expiry, token, key))
        self._per_key[key] += 1

    def _forget_expired(self, now_ms: int) -> None:
        gone: dict[bytes, bytes | None] = {}
        while self._heap and self._heap[0][0] < now_ms:
            expiry, token, key = heapq.heappop(self._heap)
            del self._expiry[token]
            self._per_key[key] -= 1
            if self._per_key[key] <= 0:
                del self._per_key[key]
            gone[_ENTRY + expiry.to_bytes(8, "big") + token] = None
        if gone:
            self.kv.write(gone, sync=False)

    def add(self, key: bytes, nonce: bytes, expires_ms: int, now_ms: int) -> bool:
        """Remember (key, nonce) until ``expires_ms``. False if it was seen and is still fresh;
        raises :class:`QuotaExceeded` when ``key`` holds its quota of fresh entries."""
        self._forget_expired(now_ms)
        token = hashlib.sha256(key + nonce).digest()
        if token in self._expiry:
            return False
        if self._per_key[key] >= self.per_key:
            raise QuotaExceeded(f"at most {self.per_key} signed requests per key within the validity window")
        self.kv.write({_ENTRY + expires_ms.to_bytes(8, "big") + token: key}, sync=False)
        self._remember(token, key, expires_ms)
        return True

    def close(self) -> None:
        self.kv.close()
