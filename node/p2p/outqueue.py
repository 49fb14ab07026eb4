"""A peer's bounded outbound queue: pushing never blocks, and never grows without limit.

Messages on *priority* channels (consensus) are sent before the others. When the queue is full
(in messages or in bytes), the oldest non-priority message is dropped first; only a queue
holding nothing but priority messages drops its oldest priority message. Each drop is counted.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable


class OutQueue:
    __slots__ = ("_bytes", "_normal", "_urgent", "dropped", "max_bytes", "max_messages", "priority")

    def __init__(self, max_messages: int, max_bytes: int, priority: Iterable[int]) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.priority = frozenset(priority)
        #: messages dropped because the queue was full
        self.dropped = 0
        self._urgent: deque[bytes] = deque()
        self._normal: deque[bytes] = deque()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._urgent) + len(self._normal)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def push(self, channel: int, frame: bytes) -> int:
        """Queue ``frame``; return how many messages were dropped to make room."""
        return self.push_item(channel in self.priority, frame)

    def push_item(self, urgent: bool, frame: bytes) -> int:
        """Queue ``frame`` as priority (``urgent``) or not; return how many were dropped."""
        (self._urgent if urgent else self._normal).append(frame)
        self._bytes += len(frame)
        dropped = 0
        while len(self) > self.max_messages or self._bytes > self.max_bytes:
            victim = self._normal.popleft() if self._normal else self._urgent.popleft()
            self._bytes -= len(victim)
            dropped += 1
        self.dropped += dropped
        return dropped

    def pop(self) -> bytes | None:
        """The next frame to send (priority first), or None if the queue is empty."""
        if self._urgent:
            frame = self._urgent.popleft()
        elif self._normal:
            frame = self._normal.popleft()
        else:
            return None
        self._bytes -= len(frame)
        return frame

    def take_all(self) -> list[tuple[bool, bytes]]:
        """Empty the queue; return its frames as ``(priority, frame)`` in sending order."""
        items = [(True, f) for f in self._urgent] + [(False, f) for f in self._normal]
        self._urgent.clear()
        self._normal.clear()
        self._bytes = 0
        return items
