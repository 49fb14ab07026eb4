"""Errors of the consensus layer.

They derive from :class:`ledger.errors.CustosError`, so the node's CLI and logs explain them the
same way as every other deliberate error.
"""

from __future__ import annotations

from ledger.errors import CustosError


class ConsensusError(CustosError):
    """Base of the consensus layer's errors."""

    code = "consensus"


class EngineUsageError(ConsensusError):
    """The engine was driven in a way its contract forbids (e.g. starting an earlier height)."""

    code = "consensus-usage"


class DoubleSignRefused(ConsensusError):
    """The signer refused: signing would conflict with something it signed before.

    Raised for a lower height/round/step than the last one signed, or for the same
    height/round/step with different content. The engine treats it as "do not send".
    """

    code = "double-sign-refused"

    def __init__(self, message: str, *, last: tuple[int, int, int], asked: tuple[int, int, int]) -> None:
        self.last = last
        self.asked = asked
        super().__init__(f"{message} (last signed h/r/s {last}, asked {asked})")


class SignerStateError(ConsensusError):
    """The signer's state file is unreadable, corrupt or belongs to another key or chain.

    The validator must not sign until an operator looks: guessing could mean double signing.
    """

    code = "signer-state"


class WalError(ConsensusError):
    """The write-ahead log cannot be opened or written (not raised for a torn tail)."""

    code = "consensus-wal"
