"""What the in-process benchmarks share: a chain with one validator, a council, an enrolment
authority, one post with its terminal and enrolled children, built block by block on a real
store; and how a benchmark writes its JSON result.

Scripts run as ``python scripts/NAME.py``, so this module is importable as ``benchkit``.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ledger.block import PRECOMMIT, Block, Commit, sign_vote
from ledger.chain import ExecutedBlock, build_block, execute_block
from ledger.crypto.keys import SigningKey
from ledger.genesis import Genesis, GenesisValidator
from ledger.state import machine
from ledger.state.authenticated import Commitment
from ledger.state.records import DEFAULT_PARAMS, Council
from ledger.storage.chainstore import ChainStore
from ledger.tx.envelope import Transaction
from node.client.txs import TxFactory

CHAIN = "bench"
T0 = 1_800_000_000_000  # the genesis time (ms): fixed, so runs build the same kind of chain
POST = "P1"
DAY_MS = 86_400_000
#: a majority day far after T0: a child enrolled with it is a minor throughout a run
MINOR_UNTIL_DAY = (T0 + 10**12) // DAY_MS
SETUP_BLOCK_TXS = 1000  # enrolments a setup block holds


@dataclass(frozen=True)
class Child:
    identity: bytes
    biometric: SigningKey
    adult: bool


@dataclass
class BenchWorld:
    """The keys of a one-validator benchmark chain and the transactions that set it up."""

    council: list[SigningKey] = field(default_factory=lambda: [SigningKey.generate() for _ in range(3)])
    validator: SigningKey = field(default_factory=SigningKey.generate)
    authority: SigningKey = field(default_factory=SigningKey.generate)
    terminal: SigningKey = field(default_factory=SigningKey.generate)
    guardian: SigningKey = field(default_factory=SigningKey.generate)

    def __post_init__(self) -> None:
        self.txs = TxFactory(CHAIN)
        self.genesis = Genesis(CHAIN, T0, Council(2, tuple(sorted(k.public for k in self.council))),
                               (GenesisValidator(self.validator.public, 10, "v"),), DEFAULT_PARAMS)

    def registrations(self) -> list[Transaction]:
        """The council registers the authority, the post and its terminal."""
        f, quorum = self.txs, self.council[:2]
        return [f.register_authority(quorum, self.authority.public), f.register_post(quorum, POST),
                f.register_terminal(quorum, self.terminal.public, POST)]

    @staticmethod
    def children(n: int, *, adults: str = "all") -> list[Child]:
        """``n`` new children: all adults, none (``"none"``), or every other one (``"half"``)."""
        kinds = {"all": lambda i: True, "none": lambda i: False, "half": lambda i: i % 2 == 0}[adults]
        return [Child(os.urandom(16), SigningKey.generate(), kinds(i)) for i in range(n)]

    def enrol(self, child: Child, *, deadline_ms: int = DAY_MS, own_guardian: bool = False) -> Transaction:
        """Enrol ``child`` with one guardian (the world's, or a new one) whose single approval
        decides."""
        guardian = SigningKey.generate() if own_guardian else self.guardian
        return self.txs.enrol(self.authority, child.biometric, child.identity,
                              majority_day=0 if child.adult else MINOR_UNTIL_DAY, guardians=[guardian.public],
                              approvals=1, deadline_ms=deadline_ms, veto=False)

    def setup_blocks(self, children: list[Child]) -> list[list[Transaction]]:
        """The registrations, then the children's enrolments, at most ``SETUP_BLOCK_TXS`` a
        block (so that a large population fits the block limit); block ``i`` is meant for time
        ``T0 + 1000 + i`` (before the first block of crossings)."""
        enrolments = [self.enrol(c) for c in children]
        return [self.registrations()] + [enrolments[i:i + SETUP_BLOCK_TXS]
                                         for i in range(0, len(enrolments), SETUP_BLOCK_TXS)]

    def crossing(self, child: Child, nonce: int, *, event_time: int, direction: str = "exit") -> Transaction:
        return self.txs.crossing(self.terminal, child.biometric, child.identity, post=POST, direction=direction,
                                 event_time=event_time, destination="RO", nonce=nonce)

    def crossing_blocks(self, children: list[Child], blocks: int, block_txs: int) -> list[list[Transaction]]:
        """The crossings of ``blocks`` blocks, the children taking turns, exits and entries
        alternating; block ``b`` is meant for time ``T0 + 1000 * (b + 2)`` (after a setup block)."""
        out, k = [], 0
        for b in range(blocks):
            txs = []
            for _ in range(block_txs):
                txs.append(self.crossing(children[k % len(children)], k, event_time=T0 + 1000 * (b + 2),
                                         direction="exit" if k % 2 else "entry"))
                k += 1
            out.append(txs)
        return out


class Proposer:
    """Builds blocks on ``store`` as the chain's only validator and commits them with its vote."""

    def __init__(self, world: BenchWorld, store: ChainStore) -> None:
        self.world = world
        self.store = store
        self.last: Commit | None = None

    def certify(self, executed: ExecutedBlock) -> Commit:
        vote = sign_vote(self.world.validator, CHAIN, PRECOMMIT, executed.height, 0, executed.hash)
        return Commit.from_votes([vote])

    def commit(self, txs: list[Transaction], time_ms: int) -> ExecutedBlock:
        """Build a block of ``txs`` at ``time_ms`` and store it; every transaction must apply."""
        executed, rejected = build_block(self.store, txs, time=time_ms, proposer=self.world.validator.public,
                                         last_commit=self.last)
        if rejected:
            raise SystemExit(f"unexpected rejection: {rejected[0][1].diagnostics()}")
        self.last = self.certify(executed)
        self.store.commit_block(executed, self.last)
        return executed


@dataclass
class ChainFile:
    """A benchmark chain built once and replayed in child processes (so that each measured run
    starts from a fresh interpreter and store): the genesis, the setup blocks (registrations,
    then the enrolments), the blocks of crossings (``BenchWorld.crossing_blocks``, half adults,
    half minors), each encoded with its certificate, and a signature to time raw verification
    with (public key, message, signature)."""

    genesis: Genesis
    setup: list[tuple[bytes, Commit]]
    blocks: list[tuple[bytes, Commit]]
    raw: tuple[bytes, bytes, bytes]

    @classmethod
    def build(cls, blocks: int, block_txs: int, children: int) -> ChainFile:
        world = BenchWorld()
        kids = world.children(children, adults="half")
        work = Path(tempfile.mkdtemp(prefix="custos-bench-build-"))
        try:
            chain = Proposer(world, ChainStore.open(work / "proposer", world.genesis))
            setup = [(chain.commit(txs, T0 + 1000 + i).block.encode(), chain.last)
                     for i, txs in enumerate(world.setup_blocks(kids))]
            made = [(chain.commit(txs, T0 + 1000 * (b + 2)).block.encode(), chain.last)
                    for b, txs in enumerate(world.crossing_blocks(kids, blocks, block_txs))]
        finally:
            shutil.rmtree(work, ignore_errors=True)
        message = b"m" * 80
        return cls(world.genesis, setup, made, (world.terminal.public, message, world.terminal.sign_raw(message)))  # type: ignore[arg-type]

    def save(self, path: Path) -> None:
        path.write_bytes(pickle.dumps(self))

    @staticmethod
    def load(path: Path) -> ChainFile:
        chain = pickle.loads(path.read_bytes())
        if not isinstance(chain, ChainFile):
            raise SystemExit(f"{path} is not a benchmark chain file")
        return chain


def timed_tree_commit(total: list[float], clock: Callable[[], float] = time.perf_counter) -> Callable:
    """``machine.commit`` (computing the state trees), adding the seconds each call takes by
    ``clock`` to ``total[0]``: put it in ``machine.commit``'s place around the calls to time."""
    real = machine.commit

    def timed(get, writes, known_slots=None):  # type: ignore[no-untyped-def]
        started = clock()
        try:
            return real(get, writes, known_slots)
        finally:
            total[0] += clock() - started

    return timed


def apply_block(store: ChainStore, block: Block, commit: Commit, *, signatures: bool = True,
                state_map: bool = True) -> None:
    """A validator's path for one block: execute (checking its signatures, or taking them as
    checked) and store. Without the state map, the tree update is skipped by a benchmark-only
    stand-in that returns the header's root: no tree nodes computed or stored."""
    if state_map:
        store.commit_block(execute_block(store, block, verify_signatures=signatures), commit)
        return
    root = block.header.state_root
    real = machine.commit
    machine.commit = lambda get, writes, known=None: Commitment(root, {}, ())  # type: ignore[assignment]
    try:
        store.commit_block(execute_block(store, block, verify_signatures=signatures), commit)
    finally:
        machine.commit = real  # type: ignore[assignment]


def write_result(result: dict, out: Path | None) -> None:
    """Print the result as JSON, and write it to ``out`` too if given."""
    text = json.dumps(result, indent=2)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    print(text)
