"""Feed an engine through its write-ahead log, and rebuild it from the log after a restart.

:class:`RecordedEngine` has the engine's inputs. For each one it

1. appends the input to the log if the engine will act on it (current height, undecided);
2. runs the engine;
3. appends this node's newly signed messages from the outputs, and if there are any, syncs the
   log **before** returning the outputs, so nothing this node announces (its votes, and with
   its precommits its lock) can be forgotten in a crash.

Start-up: build a fresh engine with the node's signer and call :meth:`RecordedEngine.recover`
with the height the block store says comes next. If the log is for that height, its records
are replayed into the engine; while replaying, the engine's signing requests are answered
from the node's own messages found in the log (the signer would refuse to sign an earlier
step again), and anything else goes to the real signer, which refuses conflicts. The engine
ends in the round and step it had reached, with its lock. If the log is for an earlier
height (the block was stored, the log not yet replaced) or empty, the height starts afresh;
if it is for a later height or another validator set, :class:`~node.consensus.errors.WalError`
stops the node rather than let it forget a lock.
"""

from __future__ import annotations

from ledger.block import Vote
from ledger.validators import ValidatorSet
from node.consensus.engine import Engine, Signer
from node.consensus.errors import WalError
from node.consensus.messages import STEP_PROPOSE, Message, Proposal, Timeout
from node.consensus.outputs import Broadcast, Output
from node.consensus.wal import ConsensusWal, StartHeight, WalRecovery


class _ReplaySigner:
    """Answers signing requests from the messages the node signed before it crashed."""

    def __init__(self, real: Signer, recorded: dict[tuple[str, int], Message]) -> None:
        self.real = real
        self.public = real.public
        self.recorded = recorded

    def sign_vote(self, kind: str, height: int, round_: int, block: bytes | None) -> Vote:
        v = self.recorded.get((kind, round_))
        if isinstance(v, Vote) and v.height == height and v.block == block:
            return v
        return self.real.sign_vote(kind, height, round_, block)

    def sign_proposal(self, height: int, round_: int, pol_round: int, value_id: bytes,
                      value: bytes) -> Proposal:
        p = self.recorded.get((STEP_PROPOSE, round_))
        if (isinstance(p, Proposal) and p.height == height and p.pol_round == pol_round
                and p.value_id == value_id and p.value == value):
            return p
        return self.real.sign_proposal(height, round_, pol_round, value_id, value)


class RecordedEngine:
    """An :class:`~node.consensus.engine.Engine` whose inputs go through a :class:`ConsensusWal`."""

    def __init__(self, engine: Engine, wal: ConsensusWal) -> None:
        self.engine = engine
        self.wal = wal

    # ------------------------------------------------------------------ inputs

    def start_height(self, height: int, validators: ValidatorSet) -> list[Output]:
        """Start a new log for ``height`` (durably), then the height itself."""
        self.wal.begin_height(height, validators, self.engine.pending_for(height))
        return self._record_own(self.engine.start_height(height, validators))

    def on_proposal(self, p: Proposal) -> list[Output]:
        if self._acts_on(p.height):
            self.wal.append(p)
        return self._record_own(self.engine.on_proposal(p))

    def on_vote(self, v: Vote) -> list[Output]:
        if self._acts_on(v.height):
            self.wal.append(v)
        return self._record_own(self.engine.on_vote(v))

    def on_timeout(self, t: Timeout) -> list[Output]:
        if self._acts_on(t.height):
            self.wal.append(t)
        return self._record_own(self.engine.on_timeout(t))

    def rebroadcast(self) -> list[Output]:
        return self.engine.rebroadcast()

    def _acts_on(self, height: int) -> bool:
        return height == self.engine.height and self.engine.decision is None

    def _record_own(self, outputs: list[Output]) -> list[Output]:
        own = [o.message for o in outputs if isinstance(o, Broadcast)]
        if own:
            for m in own:
                self.wal.append(m)
            self.wal.sync()  # durable before any of them is sent
        return outputs

    # ------------------------------------------------------------------ start-up

    def recover(self, height: int, validators: ValidatorSet) -> list[Output]:
        """Resume ``height`` from the log if it holds that height, else start it afresh.

        Returns the outputs to carry out, like any input's: timers to schedule (stale ones are
        ignored when they fire), this node's messages (sending them again is harmless), and a
        ``Decide`` if the height was decided before the block reached the store.
        """
        rec: WalRecovery = self.wal.recovery
        start = rec.records[0] if rec.records else None
        if not isinstance(start, StartHeight) or start.height < height:
            return self.start_height(height, validators)  # empty, or the height was stored
        if start.height > height or start.validators != validators:
            # The log is ahead of the block store, or disagrees on who votes: the node's state
            # is not what this log was written against. Starting afresh would forget a lock.
            raise WalError(
                f"the consensus log is for height {start.height} with validators "
                f"{start.validators.hash.hex()[:16]}, but the node resumes height {height} "
                f"with {validators.hash.hex()[:16]}; refusing to guess")
        engine = self.engine
        signer = engine.signer
        recorded: dict[tuple[str, int], Message] = {}
        if signer is not None:
            for r in rec.records[1:]:
                if isinstance(r, Vote) and r.validator == signer.public:
                    recorded.setdefault((r.kind, r.round), r)
                elif isinstance(r, Proposal) and r.proposer == signer.public:
                    recorded.setdefault((STEP_PROPOSE, r.round), r)
            engine.signer = _ReplaySigner(signer, recorded)
        outputs: list[Output] = []
        try:
            outputs += engine.start_height(height, validators)
            for r in rec.records[1:]:
                if isinstance(r, Proposal):
                    outputs += engine.on_proposal(r)
                elif isinstance(r, Vote):
                    outputs += engine.on_vote(r)
                elif isinstance(r, Timeout):
                    outputs += engine.on_timeout(r)
        finally:
            engine.signer = signer
        # Anything signed during replay that the log did not hold (it was cut in the crash)
        # was perhaps never sent: record it durably before it is.
        known = set(map(id, recorded.values()))
        new = [o.message for o in outputs if isinstance(o, Broadcast) and id(o.message) not in known]
        if new:
            for m in new:
                self.wal.append(m)
            self.wal.sync()
        return outputs
