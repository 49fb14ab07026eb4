"""Gossip bookkeeping: message ids and the bounded memory of ids already seen.

A gossip message is relayed by each node once: the first time its id arrives (or is sent) it
enters :class:`SeenCache`; later copies are dropped. The cache is a bounded LRU, so a node's
memory stays fixed however much is gossiped; the frame's hop count (``ttl``) stops a message
that outlived every cache from circulating for ever.
"""

from __future__ import annotations

from collections import OrderedDict

from ledger.hashing import tagged_hash

TAG_GOSSIP = b"custos/p2p-gossip"


def message_id(channel: int, payload: bytes) -> bytes:
    """The id of a gossip message: its channel and payload, not its remaining hop count."""
    return tagged_hash(TAG_GOSSIP, channel.to_bytes(1, "big") + payload)


class SeenCache:
    __slots__ = ("_ids", "capacity")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("the seen cache needs room for at least one id")
        self.capacity = capacity
        self._ids: OrderedDict[bytes, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, mid: bytes) -> bool:
        return mid in self._ids

    def add(self, mid: bytes) -> bool:
        """Remember ``mid``; True if it is new, False if it was seen (and is now refreshed)."""
        if mid in self._ids:
            self._ids.move_to_end(mid)
            return False
        self._ids[mid] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
        return True
