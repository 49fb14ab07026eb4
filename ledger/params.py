"""Chain parameters: fixed in genesis, changed by the council at a future height.

Kept apart from the state records and the transaction bodies because both use them: the
``chain`` record holds the parameters in force, and ``gov.set-params`` carries new ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger.encoding import Int, Schema


@dataclass(frozen=True, slots=True)
class Params:
    """Chain parameters: set in genesis, changed by ``gov.set-params`` from a given height on."""

    validator_delay: int  # a validator-set change made in block h takes effect at h + delay
    slash_bps: int  # share of stake slashed for equivocation, in basis points
    evidence_max_age: int  # blocks after which evidence is no longer accepted
    max_block_txs: int
    max_block_bytes: int
    event_future_ms: int  # how far past the block time an event time may lie (clock skew)
    event_max_age_ms: int  # how old an event may be when it arrives (offline terminals)
    max_consent_ms: int  # longest travel-consent window
    retention_days: int  # days after majority after which a child's records are erased (0: never)


PARAMS = Schema(
    Params,
    {
        "validator_delay": Int(min=1, max=1000),
        "slash_bps": Int(max=10_000),
        "evidence_max_age": Int(min=1, max=10**9),
        "max_block_txs": Int(min=1, max=20_000),
        "max_block_bytes": Int(min=1024, max=8 * 1024 * 1024),
        "event_future_ms": Int(max=86_400_000),
        "event_max_age_ms": Int(max=365 * 86_400_000),
        "max_consent_ms": Int(min=1, max=5 * 365 * 86_400_000),
        "retention_days": Int(max=100 * 366),
    },
)

DEFAULT_PARAMS = Params(
    validator_delay=2,
    slash_bps=500,
    evidence_max_age=100_000,
    max_block_txs=5000,
    max_block_bytes=4 * 1024 * 1024,
    event_future_ms=5 * 60_000,
    event_max_age_ms=7 * 86_400_000,
    max_consent_ms=366 * 86_400_000,
    retention_days=5 * 365 + 1,
)
