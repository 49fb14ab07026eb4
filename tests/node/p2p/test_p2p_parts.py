"""The transport's small parts, without sockets: frames, bounds, queue, gossip cache, tie-break."""

from __future__ import annotations

import random

import msgpack
import pytest

from ledger.encoding import encode
from ledger.errors import DecodeError
from node.p2p.frames import MAX_TTL, Frame, decode_frame, encode_frame, max_payload
from node.p2p.gossip import SeenCache, message_id
from node.p2p.limits import FloodGuard, Limits, TokenBucket, backoff_ms
from node.p2p.network import keeps_new
from node.p2p.outqueue import OutQueue

# ---------------------------------------------------------------- frames


def test_frames_round_trip():
    assert decode_frame(encode_frame(0, b"vote"), max_size=1024) == Frame(0, b"vote")
    assert decode_frame(encode_frame(3, b"", 7), max_size=1024) == Frame(3, b"", 7)


@pytest.mark.parametrize("value", [
    [0],
    [0, b"x", 1, 2],
    {"channel": 0},
    [256, b"x"],
    [-1, b"x"],
    [0, "text, not bytes"],
    [0, b"x", 0],
    [0, b"x", MAX_TTL + 1],
    [0, b"x", True],
], ids=["short", "long", "map", "channel-too-big", "negative-channel", "text-payload", "ttl-zero",
        "ttl-too-big", "ttl-bool"])
def test_rejects_malformed_frame(value):
    with pytest.raises(DecodeError):
        decode_frame(encode(value), max_size=1024)


def test_rejects_non_canonical_frame():
    padded = msgpack.packb([0, b"x"], use_bin_type=True).replace(b"\x00", b"\xcc\x00", 1)
    with pytest.raises(DecodeError):
        decode_frame(padded, max_size=1024)


def test_rejects_frame_over_the_size_bound():
    with pytest.raises(DecodeError):
        decode_frame(encode_frame(1, b"x" * 2000), max_size=1024)


def test_largest_payload_fits_the_frame_bound():
    limit = 64 * 1024
    frame = encode_frame(255, b"x" * max_payload(limit), MAX_TTL)
    assert len(frame) + 16 <= limit


def test_encode_frame_refuses_bad_channel_or_payload():
    with pytest.raises(ValueError):
        encode_frame(300, b"")
    with pytest.raises(TypeError):
        encode_frame(1, "text")  # type: ignore[arg-type]


# ---------------------------------------------------------------- rate limit and flood guard


def test_token_bucket_allows_burst_then_rate():
    bucket = TokenBucket(rate=10, burst=10, now=0.0)
    assert sum(bucket.take(0.0) for _ in range(50)) == 10
    assert sum(bucket.take(0.5) for _ in range(50)) == 5
    assert sum(bucket.take(10.0) for _ in range(50)) == 10  # never more than the burst


def test_flood_guard_needs_persistent_drops():
    guard = FloodGuard(windows=3, window_s=1.0)
    assert not any(guard.dropped(0.1 + i * 0.005) for i in range(100))  # one burst, one window
    assert not guard.dropped(2.5)  # a gap resets the streak
    assert not guard.dropped(3.5)
    assert guard.dropped(4.5)  # third consecutive window


def test_limits_refuse_nonsense():
    with pytest.raises(ValueError):
        Limits(queue_messages=0)
    with pytest.raises(ValueError):
        Limits(flood_windows=1)


def test_backoff_grows_with_jitter_within_bounds():
    rng = random.Random(7)
    for attempt in range(40):
        for _ in range(20):
            delay = backoff_ms(attempt, 100, 2000, rng)
            assert 100 <= delay <= 2000
    assert backoff_ms(0, 100, 2000, rng) == 100
    assert all(1000 <= backoff_ms(10, 100, 2000, rng) <= 2000 for _ in range(50))
    assert len({round(backoff_ms(10, 100, 2000, rng)) for _ in range(50)}) > 10  # jittered


# ---------------------------------------------------------------- outbound queue


def test_queue_sends_priority_first():
    q = OutQueue(10, 10_000, priority={0})
    q.push(1, b"tx1")
    q.push(0, b"vote")
    q.push(1, b"tx2")
    assert [q.pop(), q.pop(), q.pop(), q.pop()] == [b"vote", b"tx1", b"tx2", None]


def test_full_queue_drops_oldest_non_priority_first():
    q = OutQueue(3, 10_000, priority={0})
    q.push(0, b"vote1")
    q.push(1, b"tx1")
    q.push(1, b"tx2")
    assert q.push(0, b"vote2") == 1
    assert q.dropped == 1
    assert [q.pop() for _ in range(3)] == [b"vote1", b"vote2", b"tx2"]


def test_queue_of_only_priority_drops_oldest_priority():
    q = OutQueue(2, 10_000, priority={0})
    for i in range(5):
        q.push(0, b"vote%d" % i)
    assert q.dropped == 3
    assert [q.pop(), q.pop()] == [b"vote3", b"vote4"]


def test_queue_bounded_in_bytes():
    q = OutQueue(1000, 100, priority=())
    for _ in range(10):
        q.push(1, b"x" * 30)
    assert q.nbytes <= 100 and len(q) == 3


def test_queue_hands_over_its_frames_in_order():
    q = OutQueue(10, 10_000, priority={0})
    q.push(1, b"tx")
    q.push(0, b"vote")
    items = q.take_all()
    assert items == [(True, b"vote"), (False, b"tx")]
    assert len(q) == 0 and q.nbytes == 0


# ---------------------------------------------------------------- gossip cache


def test_seen_cache_is_a_bounded_lru():
    cache = SeenCache(3)
    ids = [message_id(1, b"m%d" % i) for i in range(4)]
    assert all(cache.add(i) for i in ids[:3])
    assert not cache.add(ids[0])  # refreshed
    assert cache.add(ids[3])  # evicts ids[1], the least recently seen
    assert ids[0] in cache and ids[1] not in cache and len(cache) == 3


def test_message_id_binds_the_channel():
    assert message_id(0, b"x") != message_id(1, b"x")


# ---------------------------------------------------------------- one connection per pair


def test_tie_break_is_the_same_on_both_ends():
    low, high = b"\x01" * 32, b"\x02" * 32
    # each end holds one connection and sees the other complete: both keep the low-initiated one
    assert keeps_new(new_initiator=low, old_initiator=high)
    assert not keeps_new(new_initiator=high, old_initiator=low)
    # a redial by the same initiator replaces its stale connection
    assert keeps_new(new_initiator=high, old_initiator=high)


def test_fin_is_the_only_control_frame():
    from node.p2p.frames import FIN, FIN_FRAME, Control

    assert decode_frame(FIN_FRAME, max_size=1024) == Control(FIN)
    for value in ([2], [True], [b"\x01"]):
        with pytest.raises(DecodeError):
            decode_frame(encode(value), max_size=1024)
