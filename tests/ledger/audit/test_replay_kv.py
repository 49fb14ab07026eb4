"""The replay's key-value stores answer exactly as the reference in-memory store does."""

from __future__ import annotations

import random

import pytest

from ledger.audit.replay import OverlayKV, ReplayKV
from ledger.storage.kv import MemoryKV


def _changes(rng: random.Random) -> dict[bytes, bytes | None]:
    changes = {}
    for _ in range(rng.randint(1, 6)):
        key = bytes([rng.choice(b"LNSXT")]) + bytes(rng.randrange(4) for _ in range(rng.randint(0, 3)))
        changes[key] = None if rng.random() < 0.3 else bytes([rng.randrange(256)])
    return changes


def _same(kv, reference, rng: random.Random) -> None:
    start, stop = sorted(bytes(rng.randrange(90) for _ in range(rng.randint(0, 3))) for _ in range(2))
    assert list(kv.iterate(start, stop)) == list(reference.iterate(start, stop)), (start, stop)
    assert list(kv.iterate(start, stop, reverse=True)) == list(reference.iterate(start, stop, reverse=True))
    assert list(kv.iterate(b"", b"\xff")) == list(reference.iterate(b"", b"\xff"))


@pytest.mark.parametrize("seed", range(40))
def test_replay_kv_matches_the_reference(seed):
    rng = random.Random(seed)
    kv, reference = ReplayKV(), MemoryKV()
    for _ in range(60):
        changes = _changes(rng)
        kv.write(changes)
        reference.write(changes)
        for key in changes:
            assert kv.get(key) == reference.get(key)
        _same(kv, reference, rng)


@pytest.mark.parametrize("seed", range(40))
def test_groups_written_long_before_their_first_scan_answer_like_the_reference(seed):
    # keys deleted and written again while their group is unscanned, then scanned in narrow
    # ranges now and then, then written again (the group is kept sorted from its first scan)
    rng = random.Random(seed)
    kv, reference = ReplayKV(), MemoryKV()
    for step in range(80):
        changes = _changes(rng)
        kv.write(changes)
        reference.write(changes)
        if step > 40 and rng.random() < 0.2:
            start = bytes([rng.choice(b"LNSXT")]) + bytes([rng.randrange(4)])
            stop = start + b"\xff"
            assert list(kv.iterate(start, stop)) == list(reference.iterate(start, stop)), start
    assert list(kv.iterate(b"", b"\xff")) == list(reference.iterate(b"", b"\xff"))


@pytest.mark.parametrize("seed", range(40))
def test_overlay_reads_through_to_an_untouched_base(seed):
    rng = random.Random(seed)
    base, reference = MemoryKV(), MemoryKV()
    for _ in range(20):
        changes = _changes(rng)
        base.write(changes)
        reference.write(changes)
    frozen = list(base.iterate(b"", b"\xff"))
    overlay = OverlayKV(base)
    for _ in range(40):
        changes = _changes(rng)
        overlay.write(changes)
        reference.write(changes)
        _same(overlay, reference, rng)
    assert list(base.iterate(b"", b"\xff")) == frozen
