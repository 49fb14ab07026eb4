"""The validator's signer: it never signs two conflicting consensus messages, across restarts.

The rule (as CometBFT's ``privval/file.go`` applies it) orders what a validator signs by
height, round and step (propose 1 < prevote 2 < precommit 3):

* a height/round/step (HRS) below the last one signed is refused;
* the same HRS with the same sign bytes returns the stored signature (the node crashed after
  signing but before its write-ahead log kept the message, and asks again);
* the same HRS with different content is refused: that would be equivocation;
* anything higher is signed, and recorded **durably before the signature is returned**.

:class:`FilePrivValidator` keeps the last signed (height, round, step, digest of the sign
bytes, signature) in one small file, rewritten atomically: write a temporary file, fsync it,
rename it over the old one, fsync the directory. A crash at any point leaves either the old
state or the new one, never a torn file; and since the signature is only returned after the
rename is durable, no signature ever leaves the process unrecorded.
:class:`MemoryPrivValidator` applies the same rule without a disk, for the simulator (whose
crash-restarts keep the object, as a real restart keeps the file).

This guards against double signing only. A validator must also not forget a *lock* it
announced (Algorithm 1, lines 36-41); that is the write-ahead log's job, see
:mod:`node.consensus.wal`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from ledger.block import PRECOMMIT, PREVOTE, Vote, vote_digest
from ledger.crypto.keys import DOMAIN_PROPOSAL, DOMAIN_VOTE, SigningKey, sign_bytes
from ledger.encoding import Bytes, Int, Schema, Str
from ledger.errors import DecodeError
from ledger.storage.files import temporary_path, write_atomically
from node.consensus.errors import DoubleSignRefused, SignerStateError
from node.consensus.messages import Proposal, proposal_digest

STEP_NONE = 0
STEP_PROPOSE = 1
STEP_PREVOTE = 2
STEP_PRECOMMIT = 3
_VOTE_STEPS = {PREVOTE: STEP_PREVOTE, PRECOMMIT: STEP_PRECOMMIT}


@dataclass(frozen=True, slots=True)
class SignState:
    """The last thing signed: its height/round/step, a digest of its sign bytes, the signature.

    ``chain_id`` and ``key`` tie a state file to one validator on one network, so a file
    copied to the wrong node is refused instead of silently reset.
    """

    chain_id: str
    key: bytes
    height: int
    round: int
    step: int
    digest: bytes
    signature: bytes

    @property
    def hrs(self) -> tuple[int, int, int]:
        return (self.height, self.round, self.step)


SIGN_STATE = Schema(
    SignState,
    {
        "chain_id": Str(min=1, max=64),
        "key": Bytes(32),
        "height": Int(),
        "round": Int(),
        "step": Int(max=STEP_PRECOMMIT),
        "digest": Bytes(max=32),
        "signature": Bytes(max=64),
    },
)


class MemoryPrivValidator:
    """A double-sign-protected signer whose state lives in memory (see the module doc)."""

    def __init__(self, key: SigningKey, chain_id: str, state: SignState | None = None) -> None:
        self._key = key
        self.chain_id = chain_id
        self.public: bytes = key.public
        self.state = state or SignState(chain_id, key.public, 0, 0, STEP_NONE, b"", b"")

    # -------------------------------------------------------------- the Signer protocol

    def sign_vote(self, kind: str, height: int, round_: int, block: bytes | None) -> Vote:
        step = _VOTE_STEPS.get(kind)
        if step is None:
            raise ValueError(f"unknown vote kind {kind!r}")
        digest = vote_digest(kind, height, round_, block)
        sig = self._sign(height, round_, step, DOMAIN_VOTE, digest)
        return Vote(kind, height, round_, block, self.public, sig)

    def sign_proposal(self, height: int, round_: int, pol_round: int, value_id: bytes,
                      value: bytes) -> Proposal:
        digest = proposal_digest(height, round_, pol_round, value_id)
        sig = self._sign(height, round_, STEP_PROPOSE, DOMAIN_PROPOSAL, digest)
        return Proposal(height, round_, pol_round, value_id, value, self.public, sig)

    # -------------------------------------------------------------- the rule

    def _sign(self, height: int, round_: int, step: int, domain: str, digest: bytes) -> bytes:
        message = sign_bytes(domain, self.chain_id, digest)
        content = hashlib.sha256(message).digest()
        last = self.state
        asked = (height, round_, step)
        if asked < last.hrs:
            raise DoubleSignRefused("height/round/step regression", last=last.hrs, asked=asked)
        if asked == last.hrs:
            if content == last.digest:
                return last.signature
            raise DoubleSignRefused("conflicting data at the same height/round/step",
                                    last=last.hrs, asked=asked)
        signature = self._key.sign_raw(message)
        new = SignState(self.chain_id, self.public, height, round_, step, content, signature)
        self._persist(new)  # durable before the signature leaves this method
        self.state = new
        return signature

    def _persist(self, state: SignState) -> None:
        """Record ``state`` durably (nothing to do in memory)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.public.hex()[:12]}, last h/r/s {self.state.hrs})"


#: the signer state's file name in a node's consensus directory
PRIVVAL_FILE = "privval.json"


def initialise_signer_state(path: str | os.PathLike, public_key: bytes, chain_id: str) -> bool:
    """Write a new validator's signer state (nothing signed yet) at ``path``, unless there is one;
    True if it was written. Only a node that never signed may be given one: see the callers."""
    path = Path(path)
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_atomically(path, SIGN_STATE.encode(SignState(chain_id, public_key, 0, 0, STEP_NONE, b"", b"")))
    except OSError as exc:
        raise SignerStateError(f"cannot write signer state {path}: {exc}") from exc
    return True


class FilePrivValidator(MemoryPrivValidator):
    """The signer for a real validator: its state survives restarts in ``path``."""

    def __init__(self, path: str | os.PathLike, key: SigningKey, chain_id: str, *,
                 create: bool = True) -> None:
        """Load the state at ``path``; if there is none and ``create``, start a fresh one.

        Pass ``create=False`` on every start but the very first: a missing state file then
        stops the validator (:class:`SignerStateError`) instead of letting it sign again
        what it may have signed before.
        """
        self.path = Path(path)
        self._tmp = temporary_path(self.path)
        if self._tmp.exists():
            self._tmp.unlink()  # a crash before the rename: the old state is the valid one
        state = self._load(key, chain_id)
        if state is None:
            if not create:
                raise SignerStateError(f"no signer state at {self.path}; refusing to sign "
                                       "without knowing what was signed before")
            super().__init__(key, chain_id)
            self._persist(self.state)
        else:
            super().__init__(key, chain_id, state)

    def _load(self, key: SigningKey, chain_id: str) -> SignState | None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SignerStateError(f"cannot read signer state {self.path}: {exc}") from exc
        try:
            state = SIGN_STATE.decode(data)
        except DecodeError as exc:
            raise SignerStateError(f"signer state {self.path} is corrupt: {exc}") from exc
        if state.chain_id != chain_id or state.key != key.public:
            raise SignerStateError(
                f"signer state {self.path} belongs to key {state.key.hex()[:16]} on chain "
                f"{state.chain_id!r}, not to key {key.public.hex()[:16]} on {chain_id!r}")
        return state

    def _persist(self, state: SignState) -> None:
        try:
            write_atomically(self.path, SIGN_STATE.encode(state))
        except OSError as exc:
            raise SignerStateError(f"cannot record signer state in {self.path}: {exc}") from exc
