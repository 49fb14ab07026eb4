"""Errors of the peer-to-peer transport.

They derive from :class:`ledger.errors.CustosError`, so logs and the CLI explain them like every
other deliberate error. A refused handshake names its reason with a stable short string
(:class:`Reason`), which is also what the metrics count and what the refused side is told.
"""

from __future__ import annotations

from ledger.errors import CustosError


class P2PError(CustosError):
    """Base of the transport's errors."""

    code = "p2p"


class Reason:
    """Why a handshake was refused: stable names for logs, metrics and close frames."""

    MALFORMED = "malformed-handshake"
    VERSION = "unsupported-version"
    SELF = "self-connection"
    REFLECTED = "reflected-challenge"
    WRONG_CHAIN = "wrong-chain-id"
    WRONG_GENESIS = "wrong-genesis"
    UNEXPECTED_KEY = "unexpected-key"
    UNKNOWN_KEY = "unknown-key"
    BAD_SIGNATURE = "bad-signature"
    BAD_EPHEMERAL = "bad-ephemeral-key"
    TIMEOUT = "handshake-timeout"
    CLOSED = "closed-during-handshake"
    REFUSED = "refused-by-peer"
    BUSY = "busy"


class HandshakeRejected(P2PError):
    """The peer failed mutual authentication; ``reason`` is one of :class:`Reason`."""

    code = "peer-rejected"

    def __init__(self, reason: str, message: str, *, peer_key: bytes | None = None) -> None:
        self.reason = reason
        #: the key the peer claimed in its hello, if it got that far (unproven)
        self.peer_key = peer_key
        super().__init__(f"{reason}: {message}")


class FrameTooLarge(P2PError, ValueError):
    """A payload handed to the transport does not fit in one frame (a caller's bug)."""

    code = "frame-too-large"
