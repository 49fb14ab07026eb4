"""Who may hold an inbound handshake slot: strangers cannot crowd out the chain's own nodes.

Inbound connections are counted in two stages (:class:`Admission` is bookkeeping only; the
network closes whatever it names as evicted):

* **anonymous**: connected, no hello checked yet. At most ``per_ip`` per address and
  ``total`` in all. A newcomer is always admitted: when its address is at its bound, its own
  oldest anonymous connection is evicted; when the total is reached, the oldest anonymous
  connection of all is. An honest node sends its hello as soon as it connects, so it is
  anonymous for about a round trip; to push it out a stranger would have to open ``total``
  connections within that round trip, and from one address it can only push out itself.
* **claimed**: the hello named this chain, its genesis and a permitted key (a configured peer,
  a validator of the coming height, an allowed observer). Those slots are reserved: they do
  not count against the anonymous bounds. Anyone may *claim* a known key, but cannot prove
  it; at most ``per_key`` handshakes may claim one key at a time, and a newer claim evicts
  the oldest, so the real node's redial always gets through.

Time is passed in, so tests drive it without waiting.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False, slots=True)
class Ticket:
    """One inbound handshake in progress. ``handle`` is what the network closes on eviction."""

    ip: str
    opened_at: float
    handle: Any
    key: bytes | None = None
    done: bool = field(default=False)


class Admission:
    def __init__(self, *, total: int, per_ip: int, per_key: int) -> None:
        if not (total >= 1 and per_ip >= 1 and per_key >= 1):
            raise ValueError("admission bounds must be positive")
        self.total = total
        self.per_ip = per_ip
        self.per_key = per_key
        #: anonymous tickets, oldest first
        self._anonymous: OrderedDict[Ticket, None] = OrderedDict()
        self._by_ip: dict[str, list[Ticket]] = {}
        self._by_key: dict[bytes, list[Ticket]] = {}
        #: how many handshakes were evicted to make room (a gauge of pressure on the listener)
        self.evicted = 0

    @property
    def in_progress(self) -> int:
        return len(self._anonymous) + sum(len(v) for v in self._by_key.values())

    @property
    def anonymous(self) -> int:
        return len(self._anonymous)

    def open(self, ip: str, handle: Any, now: float) -> tuple[Ticket, list[Ticket]]:
        """Admit a new connection from ``ip``; returns its ticket and the tickets to evict."""
        evicted: list[Ticket] = []
        same_ip = self._by_ip.get(ip, [])
        if len(same_ip) >= self.per_ip:
            evicted.append(self._drop_anonymous(same_ip[0]))
        if len(self._anonymous) >= self.total:
            evicted.append(self._drop_anonymous(next(iter(self._anonymous))))
        ticket = Ticket(ip, now, handle)
        self._anonymous[ticket] = None
        self._by_ip.setdefault(ip, []).append(ticket)
        self.evicted += len(evicted)
        return ticket, evicted

    def claim(self, ticket: Ticket, key: bytes) -> list[Ticket]:
        """``ticket``'s hello checked and names ``key``: move it to the reserved stage."""
        if ticket.done or ticket.key is not None:
            return []
        self._drop_anonymous(ticket, finished=False)
        ticket.key = key
        claims = self._by_key.setdefault(key, [])
        evicted = []
        while len(claims) >= self.per_key:
            victim = claims.pop(0)
            victim.done = True
            evicted.append(victim)
        claims.append(ticket)
        self.evicted += len(evicted)
        return evicted

    def close(self, ticket: Ticket) -> None:
        """The handshake ended (either way); idempotent."""
        if ticket.done:
            return
        if ticket.key is None:
            self._drop_anonymous(ticket)
            return
        ticket.done = True
        claims = self._by_key.get(ticket.key, [])
        if ticket in claims:
            claims.remove(ticket)
            if not claims:
                del self._by_key[ticket.key]

    def _drop_anonymous(self, ticket: Ticket, finished: bool = True) -> Ticket:
        self._anonymous.pop(ticket, None)
        same_ip = self._by_ip.get(ticket.ip)
        if same_ip is not None and ticket in same_ip:
            same_ip.remove(ticket)
            if not same_ip:
                del self._by_ip[ticket.ip]
        if finished:
            ticket.done = True
        return ticket
