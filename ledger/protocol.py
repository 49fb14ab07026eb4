"""Protocol versions: which rules a block at a given height follows.

Every header carries the protocol version in force at its height (``proto/<height>`` records in
the state, the first written by genesis, later ones by ``gov.schedule-upgrade``). The state
machine keeps the rules of every version it knows, so an auditor re-executing old blocks applies
the rules those blocks were made under.

=========  ==================================================================================
version    what it is
=========  ==================================================================================
1          enrolment, crossings, guardians' decisions, consents, council registrations,
           validator stakes, key revocation and rotation, erasure, upgrade scheduling
2          adds council membership changes (``gov.set-council``), parameter changes at a future
           height (``gov.set-params``) and validator key rotation (``gov.rotate-validator``)
3          adds oversight bodies (``gov.register-oversight``) and nodes' access-log checkpoints
           (``node.access-checkpoint``)
4          the state root also covers the transaction index: every block appends its entries'
           ids, places and result rows to the transaction-id log (:mod:`ledger.state.txindex`),
           so a node can join from a verified snapshot and still refuse an old transaction
           replayed (docs/adr/0007-state-sync.md)
5          a pending request's marker moves out of the child's tree into a derived index
           (``x/pd/``): a minor's crossing writes one record to the child's tree, not two, so
           the state root costs less per crossing. Markers written before the upgrade stay
           where they are until their request closes; the request records (what clients are
           given proofs of) are unchanged
=========  ==================================================================================

A node refuses to build or accept a block under a version it does not know, with a message that
says to upgrade the software; the council schedules an upgrade only to a version the software of
its validators knows (the rule refuses others), at least ``validator_delay`` blocks ahead.
"""

from __future__ import annotations

from ledger.encoding import Int, decode, encode
from ledger.errors import ChainError
from ledger.state.records import P_PROTOCOL, k_protocol
from ledger.state.view import StateReader
from ledger.tx import bodies as k

LATEST = 5
SUPPORTED = (1, 2, 3, 4, 5)
#: the first version whose state root covers the transaction index (ledger/state/txindex.py)
TX_INDEX_VERSION = 4
#: the first version that keeps pending requests' markers in a derived index (ledger/rules/crossing.py)
PENDING_INDEX_VERSION = 5
_VERSION = Int(min=1, max=1000)

_SINCE_2 = frozenset({k.GOV_SET_COUNCIL, k.GOV_SET_PARAMS, k.GOV_ROTATE_VALIDATOR})
_SINCE_3 = frozenset({k.GOV_REGISTER_OVERSIGHT, k.ACCESS_CHECKPOINT})
KINDS: dict[int, frozenset[str]] = {
    1: frozenset(k.BODIES) - _SINCE_2 - _SINCE_3,
    2: frozenset(k.BODIES) - _SINCE_3,
    3: frozenset(k.BODIES),
    4: frozenset(k.BODIES),
    5: frozenset(k.BODIES),
}


def encode_version(version: int) -> bytes:
    return encode(version)


def protocol_at(state: StateReader, height: int) -> int:
    """The version in force at ``height``: the latest one scheduled at or before it."""
    last = None
    for _key, value in state.scan(P_PROTOCOL, k_protocol(height + 1)):
        last = value
    return 1 if last is None else _VERSION.check(decode(last), "protocol version")


def require_supported(version: int, height: int) -> None:
    if version not in SUPPORTED:
        raise ChainError("protocol-version",
                         f"protocol version {version} is in force from height {height}, and this software knows "
                         f"versions {SUPPORTED[0]}..{SUPPORTED[-1]}: upgrade Custos",
                         height=height, obj="header", expected=SUPPORTED, found=version)
