"""The replay cache: once per (key, nonce) while fresh, quotas per key, and restarts forget nothing."""

from __future__ import annotations

import pytest

from node.api.replay import QuotaExceeded, ReplayCache

A, B = b"a" * 32, b"b" * 32


def nonce(i: int) -> bytes:
    return i.to_bytes(16, "big")


def test_a_nonce_is_accepted_once_while_fresh_then_forgotten():
    cache = ReplayCache.memory()
    assert cache.add(A, nonce(1), expires_ms=1_000, now_ms=0)
    assert not cache.add(A, nonce(1), expires_ms=1_000, now_ms=500)
    assert cache.add(B, nonce(1), expires_ms=1_000, now_ms=500)  # another key, same nonce
    assert cache.add(A, nonce(1), expires_ms=3_000, now_ms=1_001)  # expired: the time check guards it now
    assert len(cache) == 1  # and B's entry, which expired at the same time, is gone


def test_rejects_a_key_over_its_quota_but_serves_the_others():
    """The attack: one key signs as fast as it can to fill the cache and lock every reader out."""
    cache = ReplayCache.memory(per_key=100)
    for i in range(100):
        assert cache.add(A, nonce(i), expires_ms=60_000, now_ms=0)
    with pytest.raises(QuotaExceeded):
        cache.add(A, nonce(100), expires_ms=60_000, now_ms=0)
    assert cache.add(B, nonce(0), expires_ms=60_000, now_ms=0)  # the others are unaffected
    assert cache.held_by(A) == 100
    assert cache.add(A, nonce(100), expires_ms=120_000, now_ms=60_001)  # the quota frees as entries expire
    assert cache.held_by(A) == 1


def test_restart_within_the_window_remembers(tmp_path):
    cache = ReplayCache.open(tmp_path / "replay", per_key=10)
    for i in range(5):
        cache.add(A, nonce(i), expires_ms=10_000 + i, now_ms=0)
    cache.add(B, nonce(9), expires_ms=500, now_ms=0)
    cache.close()
    again = ReplayCache.open(tmp_path / "replay", per_key=10)
    assert not again.add(A, nonce(3), expires_ms=20_000, now_ms=1_000)
    assert again.held_by(A) == 5
    assert again.add(B, nonce(9), expires_ms=20_000, now_ms=1_000)  # B's entry had expired
    again.close()
    final = ReplayCache.open(tmp_path / "replay", per_key=10)
    assert len(final) == 6  # the expired entry was deleted from disk too
    final.close()
