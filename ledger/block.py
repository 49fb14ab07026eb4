"""Blocks, their headers, votes, commit certificates and evidence of equivocation.

A block at height ``h`` carries:

* ``header``: the protocol version it follows (ledger/protocol.py), chain id, height, time
  (integer ms, chosen by the proposer, strictly increasing),
  the previous header's hash, the root of this block's transactions, the state root after
  applying them, the hash of their results, the size and root of the global transaction log,
  the hash of the validator set that signs this block and of the one that signs the next, the
  proposer, the hash of the commit certificate of block ``h-1`` carried here, and the hash of the
  evidence carried here;
* ``txs``: transaction envelopes, as bytes, or the stubs of erased ones (see below);
* ``last_commit``: more than 2/3 of the stake's precommits for block ``h-1`` (absent at h=1);
* ``evidence``: proofs that a validator signed two different votes for one height/round/step.

**Erased transactions.** When a child's records are erased by order, every node replaces each of
the child's committed transactions in its stored blocks by a 97-byte *stub*::

    0x00 || leaf_hash(envelope) || tx_id || result_row

An envelope is a canonical msgpack map, so its first byte is never 0x00: a stub cannot be
mistaken for a transaction. The stub keeps the RFC 6962 leaf hash of the bytes it replaces, so
the block's ``tx_root``, the global log and every inclusion and consistency proof still verify
(:func:`tx_leaf`); the transaction id, so the transaction index still says where it was and what
it did; and the hash of its result row (:func:`ledger.state.machine.result_row`), so the header's
results hash still verifies. What a stub cannot do is execute: :func:`ledger.chain.execute_block`
re-executes a block with stubs only when given the block's recorded slot changes, which stand in
for the erased children's records (docs/adr/0002-authenticated-state.md), and otherwise refuses
it with :class:`ledger.errors.ErasedTransactions`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from ledger.crypto.keys import DOMAIN_VOTE, SigningKey, verify
from ledger.encoding import Bytes, Int, List, Optional, Schema, Str, encode
from ledger.errors import ChainError
from ledger.hashing import TAG_COMMIT, TAG_EVIDENCE, TAG_HEADER, tagged_hash
from ledger.merkle import leaf_hash, root_of
from ledger.validators import MAX_VALIDATORS, ValidatorSet

ZERO_HASH = bytes(32)
PREVOTE = "prevote"
PRECOMMIT = "precommit"
MAX_ROUND = 2**31 - 1
MAX_BLOCK_TXS = 20_000
MAX_TX_BYTES = 64 * 1024
MAX_EVIDENCE = 32
CHAIN_ID = Str(min=1, max=64)


# --------------------------------------------------------------------------- votes


@dataclass(frozen=True, slots=True)
class Vote:
    """A signed prevote or precommit. ``block`` is None for a vote for nil."""

    kind: str
    height: int
    round: int
    block: bytes | None
    validator: bytes
    signature: bytes

    def digest(self) -> bytes:
        return vote_digest(self.kind, self.height, self.round, self.block)

    def verify(self, chain_id: str) -> bool:
        return verify(self.validator, DOMAIN_VOTE, chain_id, self.digest(), self.signature)

    def conflicts_with(self, other: Vote) -> bool:
        """Same signer, same height/round/step, different block: equivocation."""
        return (
            self.validator == other.validator
            and self.kind == other.kind
            and self.height == other.height
            and self.round == other.round
            and self.block != other.block
        )


def vote_digest(kind: str, height: int, round_: int, block: bytes | None) -> bytes:
    return tagged_hash(b"custos/vote", encode([kind, height, round_, block]))


def sign_vote(key: SigningKey, chain_id: str, kind: str, height: int, round_: int,
              block: bytes | None) -> Vote:
    sig = key.sign(DOMAIN_VOTE, chain_id, vote_digest(kind, height, round_, block))
    return Vote(kind, height, round_, block, key.public, sig)


VOTE = Schema(
    Vote,
    {
        "kind": Str(max=16, choices=(PREVOTE, PRECOMMIT)),
        "height": Int(min=1),
        "round": Int(max=MAX_ROUND),
        "block": Optional(Bytes(32)),
        "validator": Bytes(32),
        "signature": Bytes(64),
    },
)


# --------------------------------------------------------------------------- commits


@dataclass(frozen=True, slots=True)
class CommitSig:
    validator: bytes
    signature: bytes


COMMIT_SIG = Schema(CommitSig, {"validator": Bytes(32), "signature": Bytes(64)})


@dataclass(frozen=True, slots=True)
class Commit:
    """The precommits that decided ``block`` at ``height`` in ``round``.

    Signatures are sorted by validator key, one per validator.
    """

    height: int
    round: int
    block: bytes
    signatures: tuple[CommitSig, ...]

    @property
    def hash(self) -> bytes:
        return tagged_hash(TAG_COMMIT, COMMIT.encode(self))

    def votes(self) -> list[Vote]:
        return [
            Vote(PRECOMMIT, self.height, self.round, self.block, s.validator, s.signature)
            for s in self.signatures
        ]

    def check(self, chain_id: str, validators: ValidatorSet, *, height: int, block: bytes,
              verify_signatures: bool = True) -> None:
        """Raise :class:`ChainError` unless this commits ``block`` at ``height`` with > 2/3 power."""
        if self.height != height:
            raise ChainError("commit-height", "commit is for another height", height=height,
                             obj="commit", expected=height, found=self.height)
        if self.block != block:
            raise ChainError("commit-block", "commit is for another block", height=height,
                             obj="commit", expected=block, found=self.block)
        power = 0
        digest = vote_digest(PRECOMMIT, self.height, self.round, self.block)
        previous = b""
        for s in self.signatures:
            if s.validator <= previous:
                raise ChainError("commit-order", "signatures not sorted and unique by validator",
                                 height=height, obj="commit")
            previous = s.validator
            p = validators.power_of(s.validator)
            if p == 0:
                raise ChainError("commit-signer", "signature by a key outside the validator set",
                                 height=height, obj="commit", found=s.validator)
            if verify_signatures and not verify(s.validator, DOMAIN_VOTE, chain_id, digest, s.signature):
                raise ChainError("commit-signature", "precommit signature does not verify",
                                 height=height, obj=f"commit signature of {s.validator.hex()}")
            power += p
        if not validators.has_quorum(power):
            raise ChainError("commit-quorum", "precommits carry no more than 2/3 of the power",
                             height=height, obj="commit",
                             expected=f"> {2 * validators.total_power // 3}", found=power)

    @classmethod
    def from_votes(cls, votes: list[Vote]) -> Commit:
        first = votes[0]
        sigs = sorted((CommitSig(v.validator, v.signature) for v in votes), key=lambda s: s.validator)
        return cls(first.height, first.round, first.block, tuple(sigs))  # type: ignore[arg-type]


COMMIT = Schema(
    Commit,
    {
        "height": Int(min=1),
        "round": Int(max=MAX_ROUND),
        "block": Bytes(32),
        "signatures": List(COMMIT_SIG, min=1, max=MAX_VALIDATORS),
    },
)


# --------------------------------------------------------------------------- evidence


@dataclass(frozen=True, slots=True)
class DuplicateVoteEvidence:
    """Two votes by one validator for one height/round/step and different blocks.

    ``a`` sorts before ``b`` (by their encodings), so one equivocation has one evidence hash.
    """

    a: Vote
    b: Vote

    @property
    def hash(self) -> bytes:
        return tagged_hash(TAG_EVIDENCE, EVIDENCE.encode(self))

    @classmethod
    def of(cls, x: Vote, y: Vote) -> DuplicateVoteEvidence:
        ex, ey = VOTE.encode(x), VOTE.encode(y)
        return cls(x, y) if ex < ey else cls(y, x)


EVIDENCE = Schema(DuplicateVoteEvidence, {"a": VOTE, "b": VOTE})


# --------------------------------------------------------------------------- blocks


@dataclass(frozen=True, slots=True)
class Header:
    version: int
    chain_id: str
    height: int
    time: int
    prev_hash: bytes
    tx_root: bytes
    tx_count: int
    state_root: bytes
    results_hash: bytes
    log_size: int
    log_root: bytes
    validators_hash: bytes
    next_validators_hash: bytes
    proposer: bytes
    last_commit_hash: bytes
    evidence_hash: bytes

    @property
    def hash(self) -> bytes:
        return header_hash(self)


HEADER = Schema(
    Header,
    {
        "version": Int(min=1, max=1000),
        "chain_id": CHAIN_ID,
        "height": Int(min=1),
        "time": Int(),
        "prev_hash": Bytes(32),
        "tx_root": Bytes(32),
        "tx_count": Int(max=MAX_BLOCK_TXS),
        "state_root": Bytes(32),
        "results_hash": Bytes(32),
        "log_size": Int(),
        "log_root": Bytes(32),
        "validators_hash": Bytes(32),
        "next_validators_hash": Bytes(32),
        "proposer": Bytes(32),
        "last_commit_hash": Bytes(32),
        "evidence_hash": Bytes(32),
    },
)


def header_hash(header: Header) -> bytes:
    return tagged_hash(TAG_HEADER, HEADER.encode(header))


@dataclass(frozen=True)
class Block:
    header: Header
    txs: tuple[bytes, ...]
    last_commit: Commit | None
    evidence: tuple[DuplicateVoteEvidence, ...]

    @cached_property
    def hash(self) -> bytes:
        return header_hash(self.header)

    @property
    def height(self) -> int:
        return self.header.height

    def encode(self) -> bytes:
        """The canonical bytes, computed once (a block is immutable)."""
        raw = self.__dict__.get("_encoded")
        if raw is None:
            raw = self.__dict__["_encoded"] = BLOCK.encode(self)
        return raw

    @classmethod
    def decode(cls, data: bytes) -> Block:
        block = BLOCK.decode(data)
        block.__dict__["_encoded"] = bytes(data)  # canonical: decoding checked it re-encodes to this
        return block


BLOCK = Schema(
    Block,
    {
        "header": HEADER,
        "txs": List(Bytes(max=MAX_TX_BYTES, min=1), max=MAX_BLOCK_TXS),
        "last_commit": Optional(COMMIT),
        "evidence": List(EVIDENCE, max=MAX_EVIDENCE),
    },
)


# --------------------------------------------------------------------------- erased transactions

STUB_MARK = 0x00
STUB_SIZE = 1 + 32 + 32 + 32


def make_stub(envelope: bytes, tx_id: bytes, row: bytes) -> bytes:
    """The stub that replaces an erased transaction's envelope in a stored block; ``row`` is the
    hash of its result row."""
    if not envelope or envelope[0] == STUB_MARK:
        raise ValueError("only a transaction envelope can be erased into a stub")
    if len(tx_id) != 32 or len(row) != 32:
        raise ValueError("a transaction id and a result row hash are 32 bytes")
    return bytes([STUB_MARK]) + leaf_hash(envelope) + tx_id + row


def is_stub(entry: bytes) -> bool:
    """True if this block entry is the stub of an erased transaction."""
    return len(entry) == STUB_SIZE and entry[0] == STUB_MARK


def stub_parts(entry: bytes) -> tuple[bytes, bytes, bytes]:
    """(leaf hash of the erased envelope, its transaction id, its result row hash) of a stub."""
    if not is_stub(entry):
        raise ValueError("not the stub of an erased transaction")
    return entry[1:33], entry[33:65], entry[65:]


def tx_leaf(entry: bytes) -> bytes:
    """The RFC 6962 leaf hash of a block entry: of the envelope, or the one its stub kept."""
    return entry[1:33] if is_stub(entry) else leaf_hash(entry)


def erased_positions(txs: tuple[bytes, ...] | list[bytes]) -> list[int]:
    """Positions of the stubs among a block's entries."""
    return [i for i, entry in enumerate(txs) if is_stub(entry)]


def tx_root(txs: tuple[bytes, ...] | list[bytes]) -> bytes:
    """RFC 6962 root over the block's transaction envelopes (a stub stands for its envelope)."""
    return root_of([tx_leaf(t) for t in txs])


def commit_hash(commit: Commit | None) -> bytes:
    return ZERO_HASH if commit is None else commit.hash


def evidence_hash(evidence: tuple[DuplicateVoteEvidence, ...] | list[DuplicateVoteEvidence]) -> bytes:
    return tagged_hash(TAG_EVIDENCE, encode([EVIDENCE.wire(e) for e in evidence]))
