"""Every bound the transport enforces, and the small clocks-in pieces that enforce them.

:class:`Limits` gathers the tunables that are not in the node's config file (those are
``max_frame_bytes``, ``peer_rate`` and the reconnect bounds). :class:`TokenBucket` and
:class:`FloodGuard` rate-limit one peer; :func:`backoff_ms` spaces reconnection attempts. They
take the time as an argument, so tests drive them without waiting.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, fields


@dataclass(frozen=True, slots=True)
class Limits:
    #: a peer must complete the handshake (connect, hello, signature) within this; it also
    #: bounds how long a connection that lost the one-per-pair tie-break waits for the peer's FIN
    handshake_timeout_s: float = 5.0
    #: a websocket close waits this long for the peer's close frame
    close_timeout_s: float = 1.0
    #: ``PeerNetwork.stop`` returns within about this long, whatever the peers do
    stop_timeout_s: float = 5.0
    #: a frame the peer does not take within this closes the connection (a stalled reader)
    send_timeout_s: float = 10.0
    #: websocket ping interval; a peer that does not answer within half of it is dropped
    heartbeat_s: float = 10.0
    #: per-peer outbound queue, in messages and in bytes (at least two full frames)
    queue_messages: int = 4096
    queue_bytes: int = 64 * 1024 * 1024
    #: the token bucket holds this many seconds' worth of ``peer_rate`` (the allowed burst)
    rate_burst_s: float = 1.0
    #: a peer with dropped messages in this many consecutive windows is disconnected
    flood_windows: int = 3
    flood_window_s: float = 1.0
    #: authenticated connections at any one time
    max_connections: int = 256
    #: inbound handshakes whose hello is not in yet, in all and per remote address; a
    #: newcomer evicts the oldest of them (see :mod:`node.p2p.admission`)
    max_handshakes: int = 32
    max_handshakes_per_ip: int = 8
    #: inbound handshakes claiming one permitted key (a newer claim evicts the oldest)
    max_handshakes_per_key: int = 2
    #: gossip: message ids remembered to relay each message once, and the initial hop count
    seen_cache: int = 65_536
    gossip_ttl: int = 16

    def __post_init__(self) -> None:
        for f in fields(self):
            if not getattr(self, f.name) > 0:
                raise ValueError(f"Limits.{f.name} must be positive")
        if self.flood_windows < 2:
            raise ValueError("Limits.flood_windows must be at least 2 (one burst is not a flood)")


class TokenBucket:
    """``rate`` tokens per second, holding at most ``burst``; one message costs one token."""

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs a positive rate and a burst of at least 1")
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._last = now

    def take(self, now: float) -> bool:
        elapsed = now - self._last
        if elapsed > 0:
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
            self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


class FloodGuard:
    """Tells when drops persist: drops in ``windows`` consecutive windows of ``window_s``."""

    __slots__ = ("_last", "_streak", "window_s", "windows")

    def __init__(self, windows: int, window_s: float) -> None:
        self.windows = windows
        self.window_s = window_s
        self._last: int | None = None
        self._streak = 0

    def dropped(self, now: float) -> bool:
        """Record a drop at ``now``; True once the peer should be disconnected."""
        window = int(now // self.window_s)
        if window != self._last:
            self._streak = self._streak + 1 if self._last is not None and window == self._last + 1 else 1
            self._last = window
        return self._streak >= self.windows


def backoff_ms(attempt: int, min_ms: float, max_ms: float, rng: random.Random) -> float:
    """Delay before reconnection attempt ``attempt`` (0 after a connection ended).

    The ceiling doubles per failed attempt from ``min_ms`` up to ``max_ms``; the delay is drawn
    uniformly from the upper half of it (never below ``min_ms``), so nodes that lost each
    other at the same moment do not redial in lockstep.
    """
    ceiling = min(max_ms, min_ms * 2 ** min(max(attempt, 0), 32))
    return rng.uniform(max(min_ms, ceiling / 2), ceiling)
