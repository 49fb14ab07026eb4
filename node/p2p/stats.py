"""Counters of what the transport did, for metrics and for tests (all monotonic)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields


@dataclass(slots=True)
class Counters:
    """Monotonic counters. ``rejections`` counts refused handshakes by :class:`~node.p2p.errors.Reason`."""

    handshakes_completed: int = 0
    handshakes_rejected: int = 0
    connections_closed: int = 0
    duplicate_connections: int = 0
    frames_received: int = 0
    frames_sent: int = 0
    bytes_received: int = 0
    bytes_sent: int = 0
    dropped_rate_limited: int = 0
    dropped_queue_full: int = 0
    rate_limit_disconnects: int = 0
    malformed_frames: int = 0
    oversized_frames: int = 0
    gossip_relayed: int = 0
    gossip_duplicates: int = 0
    callback_errors: int = 0
    task_failures: int = 0
    handshakes_evicted: int = 0
    rejections: dict[str, int] = field(default_factory=dict)

    def rejected(self, reason: str) -> None:
        self.handshakes_rejected += 1
        self.rejections[reason] = self.rejections.get(reason, 0) + 1

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "rejections"}
