"""Frames: what one sealed websocket message carries once the handshake is done.

A frame is canonical msgpack, either ``[channel, payload]`` (a message for the receiving node
only) or ``[channel, payload, ttl]`` (a gossip message the receiver relays, once, to its other
peers while ``ttl`` > 1). ``channel`` is a small integer naming the application's stream,
``payload`` is opaque bytes. The transport's own control frame is ``[1]`` (FIN: "this end sends
nothing more on this connection"; see the one-per-pair rule in :mod:`node.p2p.network`).
Anything else is malformed and closes the connection.
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger.encoding import MAX_ENCODED, decode, encode
from ledger.errors import DecodeError
from node.p2p.session import TAG_SIZE

#: channels the node uses (the transport itself treats every channel alike)
CONSENSUS = 0
TRANSACTIONS = 1
EVIDENCE = 2
BLOCK_SYNC = 3
STATE_SYNC = 4  # snapshots for nodes that join by state sync (node/statesync/)

MAX_CHANNEL = 255
#: the most hops a gossip message may travel
MAX_TTL = 64
#: bytes a frame adds around its payload: msgpack headers and the authentication tag
FRAME_OVERHEAD = 16 + TAG_SIZE


#: the control frame that ends one direction of a connection
FIN = 1
FIN_FRAME = encode([FIN])


@dataclass(frozen=True, slots=True)
class Control:
    code: int


@dataclass(frozen=True, slots=True)
class Frame:
    channel: int
    payload: bytes
    #: 0 for a direct message; otherwise the hops a gossip message may still travel
    ttl: int = 0


def max_payload(max_frame_bytes: int) -> int:
    """The largest payload that fits in a frame of ``max_frame_bytes``."""
    return min(max_frame_bytes - FRAME_OVERHEAD, MAX_ENCODED)


def check_channel(channel: int) -> None:
    if type(channel) is not int or not 0 <= channel <= MAX_CHANNEL:
        raise ValueError(f"channel must be an integer 0..{MAX_CHANNEL}, got {channel!r}")


def encode_frame(channel: int, payload: bytes, ttl: int = 0) -> bytes:
    check_channel(channel)
    if type(payload) is not bytes:
        raise TypeError(f"payload must be bytes, got {type(payload).__name__}")
    if ttl:
        if not 1 <= ttl <= MAX_TTL:
            raise ValueError(f"gossip ttl must be 1..{MAX_TTL}, got {ttl}")
        return encode([channel, payload, ttl])
    return encode([channel, payload])


def decode_frame(data: bytes, *, max_size: int) -> Frame | Control:
    """Parse a frame's plaintext; :class:`DecodeError` names what is wrong."""
    value = decode(data, max_size=max_size)
    if type(value) is not list or len(value) not in (1, 2, 3):
        raise DecodeError("a frame is [channel, payload], [channel, payload, ttl] or [control]")
    if len(value) == 1:
        if value[0] != FIN or type(value[0]) is not int:
            raise DecodeError("unknown control frame", "frame.control")
        return Control(FIN)
    channel, payload = value[0], value[1]
    if type(channel) is not int or not 0 <= channel <= MAX_CHANNEL:
        raise DecodeError(f"channel outside 0..{MAX_CHANNEL}", "frame.channel")
    if type(payload) is not bytes:
        raise DecodeError("payload is not bytes", "frame.payload")
    if len(value) == 2:
        return Frame(channel, payload)
    ttl = value[2]
    if type(ttl) is not int or not 1 <= ttl <= MAX_TTL:
        raise DecodeError(f"ttl outside 1..{MAX_TTL}", "frame.ttl")
    return Frame(channel, payload, ttl)
