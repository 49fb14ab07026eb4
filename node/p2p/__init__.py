"""The peer-to-peer transport: authenticated, sealed websocket connections among the chain's nodes.

* :mod:`node.p2p.handshake`: mutual authentication bound to the chain id and genesis, as pure
  functions and a sans-I/O state machine.
* :mod:`node.p2p.session`: per-direction keys from the handshake; every frame is sealed.
* :mod:`node.p2p.frames`: ``[channel, payload]`` and gossip ``[channel, payload, ttl]`` frames,
  and the channel numbers the node uses.
* :mod:`node.p2p.limits`: every bound (timeouts, queues, token bucket, flood guard, backoff).
* :mod:`node.p2p.outqueue`, :mod:`node.p2p.gossip`, :mod:`node.p2p.stats`: a peer's bounded
  queue, the seen-message cache, the counters.
* :mod:`node.p2p.peer`: one connection (handshake over a websocket, writer, rate-limited reader).
* :mod:`node.p2p.network`: :class:`PeerNetwork`, the listener, the dialers, one connection per
  pair, broadcast and gossip.
"""

from node.p2p.errors import FrameTooLarge, HandshakeRejected, P2PError, Reason
from node.p2p.frames import BLOCK_SYNC, CONSENSUS, EVIDENCE, TRANSACTIONS
from node.p2p.limits import Limits
from node.p2p.network import PeerInfo, PeerNetwork

__all__ = [
    "BLOCK_SYNC",
    "CONSENSUS",
    "EVIDENCE",
    "TRANSACTIONS",
    "FrameTooLarge",
    "HandshakeRejected",
    "Limits",
    "P2PError",
    "PeerInfo",
    "PeerNetwork",
    "Reason",
]
