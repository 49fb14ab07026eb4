"""Signature checks of a block's transactions in worker processes, ahead of its execution.

A validator executing a block whose transactions its mempool did not admit (another
proposer's block holding transactions gossip has not brought yet, or blocks fetched while
catching up) checks two Ed25519 signatures a crossing, which cost about as much as executing
it. Signatures need nothing but their bytes, so :class:`SigChecker` hands them to worker
processes, in tasks of consecutive transactions, and the execution, on the caller's thread,
asks for each transaction's verdict as it reaches it (:func:`ledger.chain.execute_block`'s
``verified``). Workers take tasks from the front of the block; when the execution needs a task
no worker has taken, it verifies the last task not taken yet itself rather than wait, so
neither side idles while the other has work, and they meet in the middle.

Why processes and pipes, not threads or a process pool: verification releases the
interpreter lock only inside libsodium, and a verifying thread must take the lock back
between two signatures, which it gets only when the executing thread lets go of it; two such
threads beside the execution ran slower than one thread doing everything. A process pool
hands work over through helper threads of the calling process, which wait for the same lock,
and its workers sat idle a third of the time. Here the caller writes a block's transactions to
each worker's pipe in one call, and the workers claim tasks and post verdicts in a small shared
array, so nothing in the calling process but the caller itself has to run.

Small batches (a block of a few transactions) are checked in process, where a round trip to a
worker costs more than it saves; the workers start the first time a batch is large enough, in
the background (that batch is checked in process).

Only "every signature of this task verified" is taken from a worker. A task with a bad or
unreadable transaction is left to the execution, which verifies each of its transactions
itself and refuses the block naming the bad one, exactly as without the workers. A worker
that dies is noticed while waiting for it; its tasks are verified by the caller, and the next
large batch starts new workers.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.synchronize
import os
import select
import signal
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

from ledger.audit.signatures import verify_task
from ledger.block import is_stub
from ledger.tx.envelope import Transaction
from node.audit.pool import available_cores, threadsafe_context

log = logging.getLogger(__name__)

TASK_TXS = 32  # transactions per task: claiming one costs little; stealing one holds up the caller little
MIN_BATCH = 128  # fewer unchecked transactions than this are checked in process
MAX_TASKS = 1024  # verdict slots; a larger block gets larger tasks

# the shared array: the current job, the next task a worker takes (front), one past the last
# task not taken by the caller (back), then one verdict per task, tagged with its job
_JOB, _FRONT, _BACK, _VERDICTS = 0, 1, 2, 3
_OK, _BAD = 1, 2  # verdict = job * 4 + _OK / _BAD; anything else: not verified yet
_WAIT_S = 0.5  # how long to wait for a worker before checking that it is alive
#: a task a worker holds this long is taken as lost (a stopped or starved worker): the caller
#: checks it and the workers are replaced; one task is about 3 ms of work
STALL_S = 5.0


def _send(fd: int, data: bytes, deadline: float) -> bool:
    """Write a length-prefixed message to a non-blocking pipe; False if the reader has not
    taken it by ``deadline`` (a stopped worker must not stop the node) or has gone."""
    view = memoryview(struct.pack("!Q", len(data)) + data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            pass
        except OSError:
            return False
        if view:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            select.select([], [fd], [], min(left, _WAIT_S))
    return True


def _recv(fd: int) -> bytes:
    """Read one length-prefixed message (blocking); EOFError once the writer has closed."""
    def exactly(n: int) -> bytes:
        buf = bytearray(n)
        view, got = memoryview(buf), 0
        while got < n:
            k = os.readv(fd, [view[got:]])
            if k == 0:
                raise EOFError
            got += k
        return bytes(buf)
    (n,) = struct.unpack("!Q", exactly(8))
    return exactly(n)


def _serve(jobs: multiprocessing.connection.Connection, done: multiprocessing.connection.Connection,
           shared: Any, lock: multiprocessing.synchronize.Lock) -> None:
    """A worker: for each job, claim tasks from the front and post their verdicts."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the node's to handle
    while True:
        try:
            job, chain_id, size, raws = msgpack.unpackb(_recv(jobs.fileno()))
        except (EOFError, OSError):
            return
        while True:
            with lock:
                if shared[_JOB] != job or shared[_FRONT] >= shared[_BACK]:
                    break
                k = shared[_FRONT]
                shared[_FRONT] = k + 1
            bad, _ = verify_task(chain_id, raws[k * size:(k + 1) * size], [])
            with lock:  # a later job may have been posted meanwhile: its slot is not this one's
                if shared[_JOB] == job:
                    shared[_VERDICTS + k] = job * 4 + (_BAD if bad else _OK)
            done.send_bytes(b"")


class _Workers:
    """Worker processes, their pipes and the shared array."""

    def __init__(self, n: int) -> None:
        ctx: Any = threadsafe_context([__name__])  # not fork: the node runs threads
        self.lock = ctx.Lock()
        self.shared = ctx.RawArray("q", _VERDICTS + MAX_TASKS)
        self.job = 0
        self.jobs: list[multiprocessing.connection.Connection] = []
        self.done: list[multiprocessing.connection.Connection] = []
        self.procs: list[Any] = []
        for i in range(n):
            job_r, job_w = ctx.Pipe(duplex=False)
            done_r, done_w = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_serve, args=(job_r, done_w, self.shared, self.lock),
                               name=f"custos-sigcheck-{i}", daemon=True)
            proc.start()
            job_r.close()
            done_w.close()
            os.set_blocking(job_w.fileno(), False)
            self.jobs.append(job_w)
            self.done.append(done_r)
            self.procs.append(proc)
        self.broken = False

    def submit(self, chain_id: str, raws: list[bytes], size: int) -> int:
        """Post a job of ``len(raws)`` transactions in tasks of ``size``; returns its number."""
        self.drain()
        tasks = -(-len(raws) // size)
        with self.lock:
            self.job += 1
            self.shared[_JOB] = self.job
            self.shared[_FRONT] = 0
            self.shared[_BACK] = tasks
        data = msgpack.packb([self.job, chain_id, size, raws])
        deadline = time.monotonic() + STALL_S
        for conn in self.jobs:
            if not _send(conn.fileno(), data, deadline):
                log.warning("a signature worker did not take a job; replacing the workers")
                self.broken = True
                break
        return self.job

    def steal(self, job: int) -> int | None:
        """Take the last task no worker has taken; None if there is none."""
        with self.lock:
            if self.shared[_JOB] != job or self.shared[_BACK] <= self.shared[_FRONT]:
                return None
            self.shared[_BACK] -= 1
            return int(self.shared[_BACK])

    def taken(self, job: int, k: int) -> bool:
        return self.shared[_JOB] == job and k < self.shared[_FRONT]

    def verdict(self, job: int, k: int) -> bool | None:
        v = self.shared[_VERDICTS + k]
        return True if v == job * 4 + _OK else False if v == job * 4 + _BAD else None

    def wait(self, timeout: float = _WAIT_S) -> None:
        """Wait for a worker to finish a task; marks the workers broken if one has died."""
        ready = multiprocessing.connection.wait(self.done + [p.sentinel for p in self.procs], timeout)
        if any(p.sentinel in ready or not p.is_alive() for p in self.procs):
            self.broken = True
        self.drain()

    def drain(self) -> None:
        for conn in self.done:
            try:
                while conn.poll():
                    conn.recv_bytes()
            except (EOFError, OSError):
                self.broken = True

    def close(self) -> None:
        for conn in self.jobs + self.done:
            conn.close()
        for proc in self.procs:
            proc.join(0 if self.broken else 2)
            if proc.is_alive():
                proc.kill()


@dataclass
class Ahead:
    """The verdicts on one block's transactions, as ``execute_block``'s ``verified``."""

    chain_id: str
    workers: _Workers | None = None
    job: int = 0
    raws: list[bytes] = field(default_factory=list)
    size: int = TASK_TXS
    where: dict[bytes, int] = field(default_factory=dict)  # raw -> its position in ``raws``
    verdicts: dict[int, bool] = field(default_factory=dict)  # task -> all verified

    def verified(self, tx: Transaction) -> bool:
        """True only if every signature of ``tx``'s task verified (here or in a worker)."""
        position = self.where.get(tx.raw)
        if position is None:
            return False
        k = position // self.size
        found = self.verdicts.get(k)
        if found is None:
            found = self.verdicts[k] = self._settle(k)
        return found

    def _settle(self, k: int) -> bool:
        w = self.workers
        assert w is not None
        deadline = None
        while not w.broken:
            found = w.verdict(self.job, k)
            if found is not None:
                return found
            stolen = w.steal(self.job)
            if stolen is not None:  # work from the back while a worker has k
                self.verdicts[stolen] = self._here(stolen)
                if stolen == k:
                    return self.verdicts[k]
            elif w.taken(self.job, k):
                now = time.monotonic()
                deadline = deadline or now + STALL_S
                if now >= deadline:
                    log.warning("a signature worker held a task for %.0f s; replacing the workers", STALL_S)
                    w.broken = True
                else:
                    w.wait(min(_WAIT_S, deadline - now))
            else:  # another job replaced this one
                break
        return self._here(k)

    def _here(self, k: int) -> bool:
        bad, _ = verify_task(self.chain_id, self.raws[k * self.size:(k + 1) * self.size], [])
        return not bad


class SigChecker:
    """Worker processes for signature checks; ``workers=0`` checks everything in process."""

    def __init__(self, workers: int | None = None, *, min_batch: int = MIN_BATCH,
                 count: Callable[[str], None] | None = None) -> None:
        self.workers = max(0, available_cores() - 1) if workers is None else workers
        self.min_batch = min_batch
        #: told of each batch handed to the workers ("signature_jobs") and each replacement of
        #: the workers ("signature_workers_replaced"): the node's metrics
        self._count = count or (lambda _name: None)
        self._pool: _Workers | None = None
        self._starting: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    def start(self, *, wait: bool = True) -> None:
        """Start the workers (``ahead`` does, in the background, when a batch first needs them)."""
        if self.workers == 0:
            return
        with self._lock:
            if self._starting is None:
                self._starting = threading.Thread(target=self._start, name="custos-sigcheck-start", daemon=True)
                self._starting.start()
            starting = self._starting
        if wait:
            starting.join()

    def _start(self) -> None:
        try:
            pool = _Workers(self.workers)
        except (OSError, RuntimeError):
            log.exception("signature workers did not start; signatures are checked in process")
            return
        with self._lock:
            keep = not self._closed
            if keep:
                self._pool = pool
        if not keep:
            pool.close()

    def running(self) -> int:
        """How many worker processes take batches now (0 while they start, and after one died
        until the next large batch starts new ones)."""
        pool = self._pool
        return 0 if pool is None or pool.broken else len(pool.procs)

    def ahead(self, chain_id: str, raws: Sequence[bytes],
              already: Callable[[bytes], Transaction | None] | None = None) -> Ahead:
        """Start checking the signatures of ``raws`` not in ``already`` (the mempool's, which
        ``execute_block`` takes as ``known``)."""
        result = Ahead(chain_id)
        if self.workers == 0 or len(raws) < self.min_batch:
            return result
        todo = [raw for raw in raws if not is_stub(raw) and (already is None or already(raw) is None)]
        if len(todo) < self.min_batch:
            return result
        pool = self._pool
        if pool is not None and pool.broken:
            self._restart(pool)
            pool = None
        if pool is None:
            self.start(wait=False)
            return result
        result.size = max(TASK_TXS, -(-len(todo) // MAX_TASKS))
        result.job = pool.submit(chain_id, todo, result.size)
        self._count("signature_jobs")
        result.workers, result.raws = pool, todo
        result.where = {raw: i for i, raw in enumerate(todo)}
        return result

    def _restart(self, broken: _Workers) -> None:
        """Drop workers of which one died; the next large batch starts new ones."""
        with self._lock:
            if self._pool is not broken:
                return
            self._pool, self._starting = None, None
        log.warning("a signature worker stopped; starting new ones")
        self._count("signature_workers_replaced")
        broken.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
        if self._starting is not None:
            self._starting.join()  # workers still starting are closed as they come up
