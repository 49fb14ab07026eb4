"""The edge's bookkeeping without sockets: connection caps and timeouts, body budgets, the
throttled error log, and how the open-file limit is shared."""

from __future__ import annotations

import logging

import pytest

from ledger.storage.kv import DEFAULT_MAX_OPEN_FILES
from node.edge.bodies import BodyBudget
from node.edge.connections import ConnectionGuard, ConnectionLimits
from node.edge.errorlog import ThrottledLog
from node.edge.fdbudget import RESERVED, plan


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def guard(max_connections=3, idle=10.0, header=2.0):
    clock, closed = Clock(), []
    g = ConnectionGuard(ConnectionLimits(max_connections=max_connections, idle_timeout_s=idle, header_timeout_s=header),
                        clock=clock, close=closed.append)
    return g, clock, closed


def test_a_newcomer_evicts_the_connection_idle_the_longest():
    g, clock, closed = guard()
    for name in "abc":
        g.opened(name)
        clock.now += 1
    g.busy("a")  # a is being served: never evicted
    g.opened("d")
    assert closed == ["b"] and len(g) == 3
    assert g.count("evicted") == 1


def test_rejects_a_newcomer_when_every_connection_is_busy():
    g, clock, closed = guard(max_connections=2)
    g.opened("a"), g.busy("a")
    g.opened("b"), g.busy("b")
    g.opened("c")
    assert closed == ["c"] and g.count("refused") == 1
    g.idle("a")
    g.opened("d")
    assert closed == ["c", "a"]


def test_rejects_a_connection_that_stays_idle_or_trickles_its_headers():
    g, clock, closed = guard(idle=10.0, header=2.0)
    g.opened("silent")
    g.opened("slow")
    g.opened("served")
    clock.now = 5
    g.received("slow")  # the first byte of a request that never completes
    g.busy("served")
    clock.now = 7.5
    assert g.sweep() == 1 and closed == ["slow"]
    clock.now = 10.5
    assert g.sweep() == 1 and closed == ["slow", "silent"]
    g.idle("served")  # answered at 10.5: its idle time starts now
    clock.now = 20
    assert g.sweep() == 0
    clock.now = 21
    assert g.sweep() == 1 and closed[-1] == "served"
    assert g.count("idle_timeouts") == 2 and g.count("header_timeouts") == 1


def test_body_budget_keeps_small_bodies_apart_from_large_ones():
    b = BodyBudget(small=128 * 1024, large=16 * 1024 * 1024)
    assert b.reserve(8 * 1024 * 1024) and b.reserve(8 * 1024 * 1024)
    assert not b.reserve(8 * 1024 * 1024)  # the large pool is spent ...
    assert b.reserve(1000) and b.reserve(60_000)  # ... small bodies still get in
    b.release(8 * 1024 * 1024)
    assert b.reserve(8 * 1024 * 1024)
    assert b.refused == 1


def test_throttled_log_writes_a_burst_per_window_and_counts_the_rest(caplog):
    clock = Clock()
    tlog = ThrottledLog(logging.getLogger("custos.test"), window_s=60, burst=2, clock=clock)
    caplog.set_level(logging.WARNING, logger="custos.test")
    written = [tlog.warning("bad json", "malformed %d", i) for i in range(100)]
    assert written[:2] == [True, True] and not any(written[2:])
    assert tlog.warning("other", "a new kind of failure")  # is logged at once
    clock.now = 61
    assert tlog.warning("bad json", "malformed again")
    assert "(98 similar suppressed)" in caplog.records[-1].getMessage()
    assert len(caplog.records) == 4


@pytest.mark.parametrize("limit", [256, 1024, 4096, 1 << 20])
def test_the_open_file_limit_always_leaves_the_node_its_own_files(limit):
    p = plan(limit, api_wanted=100_000, p2p_wanted=256)
    worst = RESERVED + DEFAULT_MAX_OPEN_FILES + p.store_files + p.p2p_connections + p.api_connections
    assert worst <= limit
    assert p.api_connections >= 16 and p.p2p_connections >= 8
    assert p.api_connections <= 100_000


def test_rejects_an_open_file_limit_too_small_for_a_node():
    with pytest.raises(ValueError, match="ulimit"):
        plan(128, api_wanted=1024, p2p_wanted=256)
