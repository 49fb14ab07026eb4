"""The signature pass: every Ed25519 signature of upcoming blocks, verified in worker processes.

The replay that follows is serial (each block needs the state the previous one left), but
signatures need nothing but their bytes. So, ahead of the replay, worker processes verify every
transaction signature and every precommit (the certificate carried in each block and the one
stored or served with it). The replay then runs ``execute_block(..., verify_signatures=False)``
and ``Commit.check(..., verify_signatures=False)`` for blocks whose signatures all verified.

Where a worker found a bad or unreadable signature, the replay does not take the worker's word
for it: it runs the serial checks on that block (``verify_signatures=True``, with the
transactions the workers verified marked as such), so the failure it reports is exactly the one
a serial run (``--jobs 1``) reports, at the same height and in the same object.

Work crosses process boundaries as raw bytes, in tasks of a few hundred signatures, and a
bounded number of tasks is ahead of the replay, so memory stays flat however long the chain is.
Every task is handed to the pool as soon as it is made, so a worker that finishes one takes the
next at once, while the replay executes a block. Whenever the replay would wait for a worker,
the replaying process takes back the furthest task no worker has started (cancelling it in the
pool) and verifies it itself: whichever of signatures and re-execution is the slower part, no
core idles. A verdict is a verdict whoever computed it, so the report cannot depend on the
schedule.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field

import msgpack

from ledger.block import BLOCK, COMMIT, PRECOMMIT, Block, Commit, is_stub, vote_digest
from ledger.crypto.keys import DOMAIN_TX, DOMAIN_VOTE, sign_bytes, verify_raw
from ledger.encoding import pack
from ledger.errors import CustosError
from ledger.hashing import TAG_TX, tagged_hash
from ledger.tx.envelope import unsigned_part

#: signatures per task: large enough to amortise the IPC, small enough to balance the workers
TASK_SIGNATURES = 384
#: tasks created ahead of the replay, per worker: enough that a worker never waits for the
#: replay to ask for a verdict before it has more to do (a replayed block takes about as long as
#: two or three tasks)
WINDOW_PER_WORKER = 8


# --------------------------------------------------------------------------- one block, decoded


@dataclass
class Prepared:
    """One height as the source gave it, decoded once (the decode errors are kept for the
    replay, which reports them in order)."""

    height: int
    block_raw: bytes | None
    commit_raw: bytes | None
    block: Block | None = None
    block_error: str | None = None
    commit: Commit | None = None
    commit_error: str | None = None


def prepare(height: int, block_raw: bytes | None, commit_raw: bytes | None) -> Prepared:
    p = Prepared(height, block_raw, commit_raw)
    if block_raw is not None:
        try:
            p.block = BLOCK.decode(block_raw)
        except CustosError as exc:
            p.block_error = str(exc)
    if commit_raw is not None:
        try:
            p.commit = COMMIT.decode(commit_raw)
        except CustosError as exc:
            p.commit_error = str(exc)
    return p


@dataclass
class Verdict:
    """What the workers found for one height. Only "everything verified" is ever relied on."""

    bad_txs: set[int] = field(default_factory=set)  # positions whose signatures did not all verify
    last_commit_ok: bool = True
    commit_ok: bool = True

    @property
    def all_ok(self) -> bool:
        return not self.bad_txs and self.last_commit_ok and self.commit_ok


# --------------------------------------------------------------------------- worker side


def tx_signing_parts(raw: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]] | None:
    """The transaction id and its (key, signature) pairs, read fast; None if anything is odd.

    A transaction that ``decode_tx`` accepts is canonical: a map of exactly body, kind, nonce,
    sigs in that order, so its unsigned part (``{body, kind, nonce}``) is the same bytes with a
    three-entry map header. For any other input the answer is None, the replay verifies the
    transaction itself, and ``decode_tx`` rejects it there.
    """
    if len(raw) < 2 or raw[0] != 0x84:
        return None
    try:
        value = msgpack.unpackb(raw, raw=False, strict_map_key=True, max_bin_len=len(raw), max_str_len=len(raw),
                                max_array_len=64, max_map_len=64, max_ext_len=0)
        sigs = value["sigs"]
        tail = b"\xa4sigs" + pack(sigs)
    except Exception:  # malformed in any way: the replay decides
        return None
    if type(sigs) is not list or not raw.endswith(tail) or len(value) != 4:
        return None
    pairs = []
    for s in sigs:
        if type(s) is not dict or len(s) != 2 or type(s.get("key")) is not bytes or type(s.get("sig")) is not bytes:
            return None
        pairs.append((s["key"], s["sig"]))
    return tagged_hash(TAG_TX, unsigned_part(raw, len(tail))), pairs


def verify_task(chain_id: str, txs: list[bytes],
                votes: list[tuple[bytes, bytes, bytes]]) -> tuple[list[int], list[int]]:
    """Positions (in this task) of transactions and votes whose signatures did not all verify."""
    bad_txs = []
    for i, raw in enumerate(txs):
        parts = tx_signing_parts(raw)
        if parts is None:
            bad_txs.append(i)
            continue
        tx_id, pairs = parts
        message = sign_bytes(DOMAIN_TX, chain_id, tx_id)
        for key, sig in pairs:
            if not verify_raw(key, message, sig):
                bad_txs.append(i)
                break
    bad_votes = [i for i, (key, message, sig) in enumerate(votes) if not verify_raw(key, message, sig)]
    return bad_txs, bad_votes


# --------------------------------------------------------------------------- parent side


@dataclass
class _Slot:
    prepared: Prepared
    verdict: Verdict
    last_task: int = -1  # index of the last task holding work of this height; -1: none


@dataclass
class _Task:
    index: int
    txs: list[bytes] = field(default_factory=list)
    votes: list[tuple[bytes, bytes, bytes]] = field(default_factory=list)
    # where each item came from: (slot, position in its block) / (slot, "last_commit" | "commit")
    tx_from: list[tuple[_Slot, int]] = field(default_factory=list)
    vote_from: list[tuple[_Slot, str]] = field(default_factory=list)
    weight: int = 0
    future: Future | None = None  # set once handed to the pool
    settled: bool = False


@dataclass
class _Filling:
    filling: _Task  # the task items are being added to
    next: int = 1  # the index of the task after it


def _commit_votes(chain_id: str, commit: Commit) -> list[tuple[bytes, bytes, bytes]]:
    message = sign_bytes(DOMAIN_VOTE, chain_id, vote_digest(PRECOMMIT, commit.height, commit.round, commit.block))
    return [(s.validator, message, s.signature) for s in commit.signatures]


def serial_blocks(items: Iterable[tuple[int, bytes | None, bytes | None]]) -> Iterator[tuple[Prepared, None]]:
    """No signature pass: the replay verifies every signature itself (``--jobs 1``)."""
    for height, block_raw, commit_raw in items:
        yield prepare(height, block_raw, commit_raw), None


def verified_blocks(items: Iterable[tuple[int, bytes | None, bytes | None]], chain_id: str,
                    pool: ProcessPoolExecutor, workers: int, *,
                    task_signatures: int = TASK_SIGNATURES) -> Iterator[tuple[Prepared, Verdict]]:
    """Heights in order, each with the verdict on its signatures, computed ahead.

    Each task goes to the pool when it is made; the pool's workers take them in order. While
    the replay would wait for a worker, this process takes back the furthest task no worker has
    started and verifies it itself, so no core idles whether signatures or re-execution is the
    slower part.
    """
    source = iter(items)
    window = max(8, WINDOW_PER_WORKER * workers)  # tasks created and not yet settled
    slots: deque[_Slot] = deque()
    tasks: deque[_Task] = deque()  # unsettled, in index order
    state = _Filling(_Task(0))
    exhausted = False

    def close() -> None:
        task = state.filling
        if task.weight:
            task.future = pool.submit(verify_task, chain_id, task.txs, task.votes)
            tasks.append(task)
            state.filling = _Task(state.next)
            state.next += 1

    def settle(task: _Task, bad_txs: list[int], bad_votes: list[int]) -> None:
        for i in bad_txs:
            slot, position = task.tx_from[i]
            slot.verdict.bad_txs.add(position)
        for i in bad_votes:
            slot, which = task.vote_from[i]
            if which == "commit":
                slot.verdict.commit_ok = False
            else:
                slot.verdict.last_commit_ok = False
        task.settled = True

    def run_here(task: _Task) -> None:
        settle(task, *verify_task(chain_id, task.txs, task.votes))

    def take_back(task: _Task) -> bool:
        """Verify ``task`` here if no worker has started it."""
        if task.future is not None and not task.future.cancel():
            return False
        run_here(task)
        return True

    def steal() -> bool:
        return any(take_back(task) for task in reversed(tasks) if not task.settled)

    def ensure(index: int) -> None:
        """Settle every task up to ``index``."""
        if state.filling.index <= index:
            close()
        while tasks and (tasks[0].settled or tasks[0].index <= index):
            task = tasks[0]
            if not task.settled:
                if not take_back(task):
                    future = task.future
                    assert future is not None
                    if future.done() or not steal():
                        settle(task, *future.result())
                continue
            tasks.popleft()

    def add(slot: _Slot) -> None:
        p = slot.prepared
        groups = []
        if p.block is not None:
            for i, raw in enumerate(p.block.txs):
                if is_stub(raw):
                    continue  # an erased transaction: nothing left to verify
                task = state.filling
                task.txs.append(raw)
                task.tx_from.append((slot, i))
                task.weight += 2  # a crossing carries two signatures; a guess is enough here
                slot.last_task = task.index
                if task.weight >= task_signatures:
                    close()
            if p.block.last_commit is not None:
                groups.append(("last_commit", p.block.last_commit))
        if p.commit is not None:
            groups.append(("commit", p.commit))
        for which, commit in groups:
            for vote in _commit_votes(chain_id, commit):
                task = state.filling
                task.votes.append(vote)
                task.vote_from.append((slot, which))
                task.weight += 1
                slot.last_task = task.index
                if task.weight >= task_signatures:
                    close()

    try:
        while True:
            while not exhausted and len(tasks) < window:
                try:
                    height, block_raw, commit_raw = next(source)
                except StopIteration:
                    exhausted = True
                    break
                slot = _Slot(prepare(height, block_raw, commit_raw), Verdict())
                slots.append(slot)
                add(slot)
            if not slots:
                return
            head = slots.popleft()
            ensure(head.last_task)
            yield head.prepared, head.verdict
    finally:
        for task in tasks:
            if task.future is not None:
                task.future.cancel()
