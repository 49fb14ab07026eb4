"""The node's Prometheus metrics, with HELP and TYPE for every family, valid OpenMetrics.

One registry per node (tests run several nodes in one process). What it holds:

* histograms measured here: ``custos_block_interval_seconds`` (block time minus the previous
  block's, from the headers), ``custos_submit_to_commit_seconds`` (a transaction submitted to
  this node's API until this node committed it), ``custos_consensus_round_seconds`` (how long
  each consensus round lasted at this node, sampled every :data:`SAMPLE_S`, so to about 25 ms),
  ``custos_consensus_rounds_per_height`` (rounds a height needed: 1 when the first proposal won);
* gauges read when scraped: height, connected peers, mempool, last block time, seconds since
  the last block, signature workers running, uptime;
* the counters and gauges the node, the consensus driver and the peer network keep in their
  own dictionaries, each exported under a stable name with its help text.

``render(accept)`` answers a scrape: OpenMetrics when the scraper asks for it (Prometheus does),
else the classic text format.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram, Info
from prometheus_client import generate_latest as text_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

from ledger.chain import ExecutedBlock
from ledger.tx.envelope import Transaction
from node.app import NodeApp
from node.version import version

TEXT = "text/plain; version=0.0.4; charset=utf-8"
SAMPLE_S = 0.025
#: transactions whose submit time is remembered until they commit (the oldest are forgotten)
MAX_TRACKED_SUBMISSIONS = 200_000

_LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)
_INTERVAL_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)

#: help texts of the counters the node keeps in ``NodeApp.metrics.counters`` (others get a generic one)
COUNTER_HELP = {
    "blocks_committed": "Blocks this node committed (decided here or received by block sync).",
    "txs_committed": "Transactions in the blocks this node committed.",
    "tx_admitted": "Transactions admitted to the mempool.",
    "tx_rejected": "Transactions refused at admission (malformed or breaking a rule).",
    "proposals_refused": "Proposed blocks this validator refused as invalid.",
    "equivocations_sent": "Conflicting votes sent on purpose (test-only misbehaviour).",
    "heights_decided_after_round_0": "Heights decided in a round after the first.",
    "stall_warnings": "Warnings that no block came for 10 s (or twice the heartbeat), each saying where it stood.",
    "peer_messages_refused": "Peer messages refused as malformed or invalid.",
    "bad_signatures": "Consensus messages dropped for a bad signature.",
    "bad_evidence": "Evidence of double voting refused as invalid.",
    "evidence_seen": "Valid evidence of double voting seen.",
    "sync_blocks_refused": "Blocks from block sync that did not verify.",
    "blocks_synced": "Blocks applied by block sync.",
    "events_derived": "Event-stream events derived from committed blocks.",
    "signature_jobs": "Blocks whose unadmitted transactions' signatures went to the signature workers.",
    "signature_workers_replaced": "Times the signature workers were replaced after one died or stalled.",
    "event_subscribers_dropped": "Event-stream subscribers dropped for falling behind.",
}
GAUGE_HELP = {
    "event_loop_lag_ms": "How late the event loop last ran a 50 ms timer, in milliseconds.",
    "event_loop_lag_max_10s_ms": "The worst event-loop lag in the last 10 s window, in milliseconds.",
    "event_subscribers": "Open event-stream subscriptions.",
}
_P2P_LABELLED = re.compile(r"^(?P<name>[a-z0-9_]+)\{(?P<label>[a-z_]+)=\"(?P<value>[^\"]*)\"\}$")


def _metric_name(name: str) -> str:
    return "custos_" + re.sub(r"[^a-zA-Z0-9_]", "_", name)


class NodeMetrics:
    """Every metric of one node. Call :meth:`attach` once the node's parts exist."""

    def __init__(self, app: NodeApp, *, peers: Callable[[], int] = lambda: 0,
                 consensus: Callable[[], dict] = lambda: {}, network: Callable[[], dict] = lambda: {},
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.peers = peers
        self.consensus = consensus
        self.network = network
        self.clock = clock
        self.started = clock()
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        Info("custos_build", "The version of Custos this node runs.", registry=r).info({"version": version()})
        self.block_interval = Histogram(
            "custos_block_interval_seconds", "Block time minus the previous block's time (from the headers).",
            buckets=_INTERVAL_BUCKETS, registry=r)
        self.submit_to_commit = Histogram(
            "custos_submit_to_commit_seconds",
            "From a transaction's submission to this node's API until this node committed it.",
            buckets=_LATENCY_BUCKETS, registry=r)
        self.round_time = Histogram(
            "custos_consensus_round_seconds",
            "How long each consensus round lasted at this node (sampled to about 25 ms).",
            buckets=_LATENCY_BUCKETS, registry=r)
        self.rounds_per_height = Histogram(
            "custos_consensus_rounds_per_height", "Rounds a height needed (1: decided in its first round).",
            buckets=(1, 2, 3, 5, 10), registry=r)
        store = app.store
        Gauge("custos_height", "Height of the last committed block.", registry=r).set_function(
            lambda: store.height)
        Gauge("custos_peers", "Connected peers.", registry=r).set_function(lambda: self.peers())
        Gauge("custos_mempool_txs", "Transactions waiting in the mempool.", registry=r).set_function(
            lambda: len(app.mempool))
        Gauge("custos_last_block_time_seconds", "Block time of the last committed block (Unix seconds).",
              registry=r).set_function(lambda: store.tip.time / 1000)
        Gauge("custos_last_block_age_seconds", "Wall-clock time since the last committed block's time.",
              registry=r).set_function(lambda: max(0.0, time.time() - store.tip.time / 1000))
        Gauge("custos_signature_workers", "Signature worker processes taking blocks' unadmitted transactions "
              "(0: checked in the node's own process; they start with the first large block).",
              registry=r).set_function(lambda: app.signature_workers())
        Gauge("custos_tree_blocks_held", "Blocks whose state-tree nodes are held in memory, not yet written "
              "(their changes are in the tree journal; a restart after a crash replays them).",
              registry=r).set_function(lambda: store.tree_blocks_held)
        Gauge("custos_uptime_seconds", "Seconds since this node started.", registry=r).set_function(
            lambda: self.clock() - self.started)
        r.register(_Dictionaries(self))
        self._submitted: OrderedDict[bytes, float] = OrderedDict()
        self._last_block_time = store.tip.time if store.height else None
        self._round: tuple[Any, Any] | None = None  # (height, round) as the driver's status says
        self._round_since = 0.0
        self._rounds_seen: dict[int, int] = {}

    def attach(self) -> None:
        self.app.on_new_tx(self._on_submitted)
        self.app.on_commit(self._on_commit)

    # ---------------------------------------------------------------- measured here
    def _on_submitted(self, tx: Transaction) -> None:
        self._submitted[tx.id] = self.clock()
        while len(self._submitted) > MAX_TRACKED_SUBMISSIONS:
            self._submitted.popitem(last=False)

    def _on_commit(self, executed: ExecutedBlock) -> None:
        header = executed.block.header
        if self._last_block_time is not None:
            self.block_interval.observe(max(0, header.time - self._last_block_time) / 1000)
        self._last_block_time = header.time
        if self._submitted:
            now = self.clock()
            for tx in executed.txs:
                since = self._submitted.pop(tx.id, None)
                if since is not None:
                    self.submit_to_commit.observe(now - since)
        commit = self.app.store.commit(header.height)
        if commit is not None:
            self.rounds_per_height.observe(commit.round + 1)

    async def sample_rounds(self) -> None:
        """Time each (height, round) the consensus engine goes through, while it runs a height."""
        while True:
            await asyncio.sleep(SAMPLE_S)
            self.sample_once()

    def sample_once(self) -> None:
        c = self.consensus().get("consensus") or {}
        now = self.clock()
        position = (c.get("height"), c.get("round")) if c.get("running") else None
        if position == self._round:
            return
        if self._round is not None:
            self.round_time.observe(now - self._round_since)
        self._round, self._round_since = position, now

    # ---------------------------------------------------------------- scrapes
    def render(self, accept: str = "") -> tuple[bytes, str]:
        """The exposition for a scrape: OpenMetrics if ``accept`` asks for it, else classic text."""
        if "application/openmetrics-text" in accept:
            return openmetrics_latest(self.registry), OPENMETRICS
        return text_latest(self.registry), TEXT


class _Dictionaries:
    """Exports the counters and gauges kept as plain dictionaries by the node's parts."""

    def __init__(self, metrics: NodeMetrics) -> None:
        self.m = metrics

    def describe(self) -> Iterable:
        return []  # names depend on what has been counted so far

    def collect(self) -> Iterable:
        app_metrics = self.m.app.metrics
        for name, value in sorted(app_metrics.counters.items()):
            help_ = COUNTER_HELP.get(name, f"Count of {name.replace('_', ' ')}.")
            yield CounterMetricFamily(_metric_name(name), help_, value=value)
        for name, level in sorted(app_metrics.gauges.items()):
            help_ = GAUGE_HELP.get(name, f"{name.replace('_', ' ').capitalize()}.")
            yield GaugeMetricFamily(_metric_name(name), help_, value=level)
        yield from _network_families(self.m.network())


def _network_families(flat: dict) -> Iterable:
    """The peer network's flat dictionary (``p2p_x_total``, ``p2p_y``, ``p2p_z_total{reason="r"}``)
    as metric families: names ending in ``_total`` are counters, the others gauges."""
    labelled: dict[str, tuple[str, list[tuple[str, float]]]] = {}
    for key, value in sorted(flat.items()):
        m = _P2P_LABELLED.match(key)
        if m:
            labelled.setdefault(m["name"], (m["label"], []))[1].append((m["value"], value))
            continue
        if key.endswith("_total"):
            base = key.removesuffix("_total")
            if base + "_total" in labelled or any(k.startswith(key + "{") for k in flat):
                continue  # the labelled family of the same name carries it
            yield CounterMetricFamily(_metric_name(base), f"Peer network: {base.replace('_', ' ')}.", value=value)
        else:
            yield GaugeMetricFamily(_metric_name(key), f"Peer network: {key.replace('_', ' ')}.", value=value)
    for name, (label, values) in labelled.items():
        base = name.removesuffix("_total")
        family = CounterMetricFamily(_metric_name(base), f"Peer network: {base.replace('_', ' ')}, by {label}.",
                                     labels=[label])
        for label_value, value in values:
            family.add_metric([label_value], value)
        yield family
