"""Counters of what the transport did, for metrics and for tests (all monotonic)."""

from __future__ import annotations

_NAMES = (
    "handshakes_completed",
    "handshakes_rejected",
    "connections_closed",
    "duplicate_connections",
    "frames_received",
    "frames_sent",
    "bytes_received",
    "bytes_sent",
    "dropped_rate_limited",
    "dropped_queue_full",
    "rate_limit_disconnects",
    "malformed_frames",
    "oversized_frames",
    "gossip_relayed",
    "gossip_duplicates",
    "callback_errors",
    "task_failures",
    "handshakes_evicted",
)


class Counters:
    """Monotonic counters. ``rejections`` counts refused handshakes by :class:`~node.p2p.errors.Reason`."""

    __slots__ = (*_NAMES, "rejections")

    def __init__(self) -> None:
        for name in _NAMES:
            setattr(self, name, 0)
        self.rejections: dict[str, int] = {}

    def rejected(self, reason: str) -> None:
        self.handshakes_rejected += 1
        self.rejections[reason] = self.rejections.get(reason, 0) + 1

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in _NAMES}
