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


def start_pool(jobs: int) -> ProcessPoolExecutor:
    """Worker processes, started now.

    Forking is fastest, and safe while this process runs no other thread: the pool is started
    before any thread (the HTTP fetcher) exists. Otherwise a fork server starts them.
    """
    methods = multiprocessing.get_all_start_methods()
    ctx: multiprocessing.context.BaseContext
    if "fork" in methods and threading.active_count() == 1:
        ctx = multiprocessing.get_context("fork")
    elif "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["ledger.audit.signatures"])
    else:
        ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_worker_init)
    list(pool.map(_ready, range(jobs)))
    return pool
