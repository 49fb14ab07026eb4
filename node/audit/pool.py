"""The auditor's worker processes, which verify signatures ahead of the replay
(see :mod:`ledger.audit.signatures`)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from concurrent.futures import ProcessPoolExecutor


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _worker_init() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle


def _ready(_: int) -> int:
    return os.getpid()


def threadsafe_context(preload: list[str]) -> multiprocessing.context.BaseContext:
    """A way to start processes that is safe while this process runs threads: a fork server
    (forking from a clean process that imported ``preload``), else spawning afresh."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(preload)
        return ctx
    return multiprocessing.get_context("spawn")


def start_pool(jobs: int) -> ProcessPoolExecutor:
    """Worker processes, started now.

    Forking is fastest, and safe while this process runs no other thread: the pool is started
    before any thread (the HTTP fetcher) exists. Otherwise a fork server starts them.
    """
    ctx: multiprocessing.context.BaseContext
    if "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1:
        ctx = multiprocessing.get_context("fork")
    else:
        ctx = threadsafe_context(["ledger.audit.signatures"])
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_worker_init)
    list(pool.map(_ready, range(jobs)))
    return pool
