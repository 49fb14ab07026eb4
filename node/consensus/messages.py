"""Consensus messages: proposals, timeouts and the tagged union that travels between peers.

A :class:`Proposal` is the paper's ``<PROPOSAL, h, r, v, vr>`` (Algorithm 1, line 18): the
proposer signs a digest of ``(height, round, pol_round, value_id)`` in the
:data:`~ledger.crypto.keys.DOMAIN_PROPOSAL` domain, bound to the chain id. The value itself (a
block, up to :data:`MAX_VALUE_BYTES`) is not signed directly: the application binds it to
``value_id`` when it validates it (``validate`` returns the id it computes, and the engine
compares). Votes (:class:`~ledger.block.Vote`) and evidence
(:class:`~ledger.block.DuplicateVoteEvidence`) come from :mod:`ledger.block`.

On the wire every message is ``{"type": "proposal" | "vote" | "evidence", "body": ...}`` in
canonical msgpack (:func:`encode_message`, :func:`decode_message`); every field is bounded, so a
peer cannot make a node allocate more than :data:`MAX_MESSAGE_BYTES` for one message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ledger.block import EVIDENCE, MAX_ROUND, VOTE, DuplicateVoteEvidence, Vote
from ledger.crypto.keys import DOMAIN_PROPOSAL, SigningKey, verify
from ledger.encoding import Bytes, Int, Schema, Spec, Str, decode, encode
from ledger.errors import DecodeError
from ledger.hashing import tagged_hash

#: the largest value (block) a proposal may carry
MAX_VALUE_BYTES = 8 * 1024 * 1024
#: the largest encoded message a node accepts from a peer
MAX_MESSAGE_BYTES = MAX_VALUE_BYTES + 4096

#: the three steps of a round (Algorithm 1: step_p in {propose, prevote, precommit})
STEP_PROPOSE = "propose"
STEP_PREVOTE = "prevote"
STEP_PRECOMMIT = "precommit"
STEPS = (STEP_PROPOSE, STEP_PREVOTE, STEP_PRECOMMIT)

TAG_PROPOSAL = b"custos/proposal"


def proposal_digest(height: int, round_: int, pol_round: int, value_id: bytes) -> bytes:
    """The digest a proposer signs: it binds height, round, POL round and the value's id."""
    return tagged_hash(TAG_PROPOSAL, encode([height, round_, pol_round, value_id]))


@dataclass(frozen=True, slots=True)
class Proposal:
    """``<PROPOSAL, height, round, value, pol_round>`` signed by ``proposer``.

    ``pol_round`` is the paper's ``vr``: -1 for a fresh value, otherwise the earlier round in
    which the proposer saw 2f+1 prevotes for this value (its ``validRound``, line 18).
    """

    height: int
    round: int
    pol_round: int
    value_id: bytes
    value: bytes
    proposer: bytes
    signature: bytes

    def __post_init__(self) -> None:
        if not (self.pol_round == -1 or 0 <= self.pol_round < self.round):
            raise DecodeError(f"pol_round {self.pol_round} is not -1 or below round {self.round}",
                              "pol_round")

    def digest(self) -> bytes:
        return proposal_digest(self.height, self.round, self.pol_round, self.value_id)

    def verify(self, chain_id: str) -> bool:
        """True if ``signature`` is the proposer's over this proposal on ``chain_id``."""
        return verify(self.proposer, DOMAIN_PROPOSAL, chain_id, self.digest(), self.signature)

    def same_content(self, other: Proposal) -> bool:
        """Same signed fields and same value (signatures may differ only if a key signed twice)."""
        return (
            self.height == other.height
            and self.round == other.round
            and self.pol_round == other.pol_round
            and self.value_id == other.value_id
            and self.proposer == other.proposer
            and self.value == other.value
        )

    def __repr__(self) -> str:
        return (f"Proposal(h={self.height}, r={self.round}, pol={self.pol_round}, "
                f"id={self.value_id.hex()[:12]}, {len(self.value)} bytes, "
                f"by={self.proposer.hex()[:8]})")


def sign_proposal(key: SigningKey, chain_id: str, height: int, round_: int, pol_round: int,
                  value_id: bytes, value: bytes) -> Proposal:
    """A proposal signed with ``key`` (no double-sign protection: see :mod:`.privval`)."""
    sig = key.sign(DOMAIN_PROPOSAL, chain_id, proposal_digest(height, round_, pol_round, value_id))
    return Proposal(height, round_, pol_round, value_id, value, key.public, sig)


PROPOSAL = Schema(
    Proposal,
    {
        "height": Int(min=1),
        "round": Int(max=MAX_ROUND),
        "pol_round": Int(min=-1, max=MAX_ROUND),
        "value_id": Bytes(32),
        "value": Bytes(max=MAX_VALUE_BYTES, min=1),
        "proposer": Bytes(32),
        "signature": Bytes(64),
    },
)


@dataclass(frozen=True, slots=True)
class Timeout:
    """A timer that fired: ``OnTimeoutPropose/Prevote/Precommit(height, round)`` (lines 57-65)."""

    step: str
    height: int
    round: int


TIMEOUT = Schema(
    Timeout,
    {"step": Str(max=16, choices=STEPS), "height": Int(min=1), "round": Int(max=MAX_ROUND)},
)


# --------------------------------------------------------------------------- tagged unions


class TaggedUnion(Spec):
    """``{"type": tag, "body": object}`` where the tag chooses the body's schema."""

    def __init__(self, members: Mapping[str, Schema]) -> None:
        self.members = dict(members)
        self._tags = {schema.cls: tag for tag, schema in self.members.items()}
        self.name = "|".join(self.members)

    def check(self, value: Any, path: str = "") -> Any:
        if type(value) is not dict or set(value) != {"type", "body"}:
            raise DecodeError(f"expected a map with exactly 'type' and 'body' ({self.name})", path)
        tag = value["type"]
        schema = self.members.get(tag) if type(tag) is str else None
        if schema is None:
            raise DecodeError(f"unknown message type {tag!r}; expected one of {sorted(self.members)}",
                              f"{path}.type" if path else "type")
        return schema.check(value["body"], f"{path}.body" if path else "body")

    def wire(self, obj: Any) -> dict:
        tag = self._tags.get(type(obj))
        if tag is None:
            raise TypeError(f"{type(obj).__name__} is not one of {self.name}")
        return {"body": self.members[tag].wire(obj), "type": tag}

    def encode(self, obj: Any) -> bytes:
        return encode(self.wire(obj))

    def decode(self, data: bytes, *, max_size: int) -> Any:
        return self.check(decode(data, max_size=max_size))


Message = Proposal | Vote | DuplicateVoteEvidence

MESSAGE = TaggedUnion({"proposal": PROPOSAL, "vote": VOTE, "evidence": EVIDENCE})


def encode_message(msg: Message) -> bytes:
    """The canonical wire bytes of a proposal, vote or evidence."""
    return MESSAGE.encode(msg)


def decode_message(data: bytes) -> Message:
    """Parse wire bytes; raise :class:`~ledger.errors.DecodeError` for anything not canonical.

    Signatures are *not* checked here: the node checks them (``msg.verify(chain_id)``, and
    for evidence both votes) before handing a message to the engine.
    """
    return MESSAGE.decode(data, max_size=MAX_MESSAGE_BYTES)
