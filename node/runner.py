"""The node process: open the store, start consensus and the API, stop cleanly on a signal."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
import time
from dataclasses import replace

from aiohttp import web

from ledger.crypto.keys import SigningKey
from ledger.errors import DecodeError, StorageError
from ledger.genesis import Genesis
from ledger.rules.validators import validator_set_at
from ledger.state import smt
from ledger.storage.chainstore import ChainStore
from ledger.storage.files import private_dir
from ledger.storage.health import Patrol, check_recent
from node.api.server import Api, make_web_app, serve, stop
from node.app import NodeApp
from node.config import ConfigError, NodeConfig, split_hostport
from node.consensus.driver import ConsensusDriver
from node.consensus.errors import SignerStateError
from node.consensus.privval import PRIVVAL_FILE, initialise_signer_state
from node.edge.connections import ConnectionGuard, ConnectionLimits
from node.edge.fdbudget import FdPlan, plan, raise_soft_limit
from node.edge.heap import ChurnCollector, return_large_buffers
from node.erasure import Purger
from node.genesis_file import load_genesis
from node.keyfile import load_key_file
from node.ops.logs import BlockLog
from node.ops.metrics import NodeMetrics
from node.ops.routes import OpsRoutes, metrics_app
from node.p2p.frames import STATE_SYNC
from node.p2p.limits import Limits
from node.p2p.network import PeerNetwork
from node.statesync.messages import Message, decode_message, encode_message
from node.statesync.server import SnapshotServer
from node.tls import api_tls_context
from node.version import version

log = logging.getLogger("custos.node")


class Node:
    """One node: store + app + consensus + peer network + API. ``start`` then ``stop``."""

    def __init__(self, config: NodeConfig, *, init: bool = False) -> None:
        """``init``: this is a new node; give it a signer state if it has none."""
        self.config = config
        self.tls = api_tls_context(config.api)  # before anything opens: a bad certificate stops the start
        private_dir(config.node.data_dir)
        self.key = load_key_file(config.node.key_file, config.passphrase())
        genesis = load_genesis(config.node.genesis)
        self.fds = plan_descriptors(config)
        self.store = open_chain(config, genesis, self.fds)
        prepare_signer(config, self.key, genesis.chain_id, init=init)
        self.app = NodeApp(
            self.store,
            max_mempool_txs=config.mempool.max_txs,
            max_mempool_bytes=config.mempool.max_bytes,
            max_clock_drift_ms=config.consensus.max_clock_drift_ms,
            signature_workers=config.consensus.signature_workers,
        )
        self.network = PeerNetwork.from_config(
            config.p2p, self.key, self.store.chain.chain_id, genesis.hash,
            on_message=self._on_peer_message, allowed=self._admits, on_peer=self._on_peer,
            limits=peer_limits(self.fds),
        )
        self.driver = ConsensusDriver(
            self.app, self.key, config.consensus, config.node.data_dir / "consensus", self.network,
            observer=config.node.role == "observer",
        )
        self.app.on_commit(self._after_commit)
        self.snapshot_server = SnapshotServer(self.app, self._send_state_sync, interval=config.statesync.interval,
                                              enabled=config.statesync.serve)
        #: what joining by state sync took, if this node joined that way in this run
        self.joined: dict | None = None
        self.purger = Purger(self.app)
        self.purger.release_snapshots.append(self.snapshot_server.release)
        self.purger.forget_decided_inputs = self.driver.forget_decided_inputs
        self.api = Api(self.app, node_id=self.key.public.hex(), validator=self._is_validator,
                       max_wait_ms=config.api.max_wait_ms, extra_status=self._status)
        self.metrics = NodeMetrics(self.app, peers=lambda: len(self.network.connected_peers()),
                                   consensus=self.driver.status, network=self.network.metrics)
        self.metrics.attach()
        self.ops = OpsRoutes(self.metrics, max_block_age_ms=config.api.ready_max_block_age_ms)
        self.app.on_commit(BlockLog(self.store, log))
        self._metrics_runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task] = []
        self._runner: web.AppRunner | None = None

    def _status(self) -> dict:
        """What ``GET /v1/status`` adds: consensus, erasure purges, state sync, and the access log's size and damage."""
        doc = {**self.driver.status(), **self.purger.status(),
               "state_sync": {"base": self.store.base, "joined": self.joined, **self.snapshot_server.status()}}
        access_log = getattr(self, "access_log", None)
        if access_log is not None:
            doc["access_log"] = {"size": access_log.size, "damaged": access_log.damage is not None}
        return doc

    def _is_validator(self) -> bool:
        return self.config.node.role == "validator" and self.key.public in self._next_validators()

    def _next_validators(self):
        return validator_set_at(self.store.state, self.store.height + 1)

    def _admits(self, key: bytes) -> bool:
        """Peers we accept besides the configured ones: the validators of the coming height
        and the keys the config allows (observers)."""
        return key.hex() in self.config.p2p.allow or key in self._next_validators()

    def _on_peer_message(self, peer: bytes, channel: int, payload: bytes) -> None:
        if channel == STATE_SYNC:
            try:
                self.snapshot_server.on_message(peer, decode_message(payload))
            except DecodeError:
                self.app.metrics.inc("peer_messages_refused")
            return
        self.driver.on_message(peer, channel, payload)

    def _send_state_sync(self, peer: bytes, message: Message) -> None:
        self.network.send(peer, STATE_SYNC, encode_message(message))

    def _on_peer(self, peer: bytes, connected: bool) -> None:
        if connected:
            self.driver.greet(peer)  # tell it our height at once: block sync need not wait

    def _after_commit(self, executed) -> None:
        if executed.changes.validators != executed.changes.next_validators:
            self.network.enforce_permissions()  # a validator that left may no longer connect
        self.snapshot_server.on_commit(executed.height)

    def extra_routes(self) -> list:
        """Routes beyond the core API (signed reads, event streams, the access log), added by
        their modules."""
        from node.access.checkpoints import Checkpointer
        from node.access.log import AccessLog
        from node.api.access_log import AccessLogRoutes
        from node.api.auth import Authenticator
        from node.api.events import EventStreams
        from node.api.index import RequestIndex
        from node.api.policy import Policy
        from node.api.reads import Reads
        from node.api.recorder import ReadRecorder
        from node.api.replay import ReplayCache
        from node.web.routes import WebApps

        api = self.config.api
        p2p = self.config.p2p
        node_keys = {bytes.fromhex(p.key) for p in p2p.peers} | {bytes.fromhex(k) for k in p2p.allow}
        self.replay = ReplayCache.open(self.config.node.data_dir / "replay", per_key=api.replay_per_key)
        auth = Authenticator(self.app, node_id=self.key.public, window_ms=api.read_window_ms, replay=self.replay,
                             node_keys=node_keys)
        policy = Policy(self.app)
        self.access_log = AccessLog.open(self.config.node.data_dir / "access-log")
        self.checkpointer = Checkpointer(self.app, self.access_log, self.key,
                                         interval_ms=self.config.access_log.checkpoint_ms)
        self.access_log.verify(self.checkpointer.anchor())  # a damaged log: /healthz fails, reads are refused
        recorder = ReadRecorder(self.access_log, self.app.clock_ms)
        self.api.health_checks.append(recorder.healthy)
        self.ops.health_checks.append(recorder.healthy)
        self.api.guard(auth, policy, recorder)  # signed reads of integrity data (blocks, transactions)
        self.request_index = RequestIndex.open(self.config.node.data_dir / "reads-index", self.store)
        self.request_index.catch_up()
        self.app.on_commit(self.request_index.on_commit)
        self.event_streams = EventStreams(self.app, auth, policy, recorder)
        routes = (Reads(self.app, auth, policy, self.request_index, recorder).routes() + self.event_streams.routes()
                  + AccessLogRoutes(self.app, auth, policy, recorder, self.access_log).routes())
        routes += self.proof_routes(auth, policy, recorder)
        routes += WebApps().routes()  # the web clients under /app/ (node/web/)
        if self.config.identify is not None:  # an enrolment authority's node (node/api/identify.py)
            from node.api.identify import Identify

            authority = load_key_file(self.config.identify.key_file, self.config.passphrase())
            identify = Identify(auth, policy, recorder, self.config.identify.gallery, authority)
            self.purger.also_forget.append(identify.forget)
            routes += identify.routes()
        return routes

    def proof_routes(self, auth, policy, recorder) -> list:
        """State proofs at the newest heights, and the headers light clients follow."""
        from node.api.proofs import Proofs, Snapshots

        self.snapshots = Snapshots(self.app)
        self.app.on_commit(self.snapshots.take)
        self.purger.release_snapshots.append(self.snapshots.release)
        self.purger.retake_snapshots.append(self.snapshots.take)
        return Proofs(self.app, auth, policy, self.snapshots, recorder).routes()

    async def start(self) -> str:
        host, port = split_hostport(self.config.api.listen)
        api = self.config.api
        web_app = make_web_app(self.api, max_body_bytes=api.max_body_bytes, max_batch_bytes=api.max_batch_bytes,
                               body_timeout_s=api.body_timeout_ms / 1000,
                               extra_routes=self.extra_routes() + self.ops.routes())
        self.purger.resume()  # an erasure a crash interrupted, before the node serves or votes
        # the listeners' ports before anything else: a node whose API or metrics port is taken
        # must find out before it joins consensus (it would vote, then stop)
        for listen in (self.config.api.listen, self.config.metrics.listen):
            if listen:
                _bindable(*split_hostport(listen))
        await self.network.start()
        await self.driver.start()
        if self.joined is None:  # one that has just joined plans when asked or at an interval, not as it catches up
            self.snapshot_server.start()
        guard = api_guard(self.config, self.fds, self.app.metrics.counters)
        self._runner = runner = await serve(web_app, host, port, guard, ssl_context=self.tls)
        actual = runner.addresses[0][1] if port == 0 else port
        self._tasks.extend(self.driver.tasks)
        self._tasks.append(asyncio.create_task(self._watch_fatal(), name="consensus-storage"))
        self._tasks.append(asyncio.create_task(self.purger.run(), name="erasure-purge"))
        self._tasks.append(asyncio.create_task(self._watch_loop_lag(), name="loop-lag"))
        self._tasks.append(asyncio.create_task(patrol_store(self.store, self.app.metrics.gauges), name="store-patrol"))
        self._tasks.append(asyncio.create_task(self.metrics.sample_rounds(), name="round-sampler"))
        self._tasks.append(asyncio.create_task(self.checkpointer.run(), name="access-log-checkpoints"))
        churn = ChurnCollector(lambda: guard.count("opened") + self.network.listener_connections_opened)
        self._tasks.append(asyncio.create_task(collect_after_churn(churn, self.app.metrics.counters),
                                               name="churn-collector"))
        if self.config.metrics.listen is not None:
            m_host, m_port = split_hostport(self.config.metrics.listen)
            self._metrics_runner = await serve(metrics_app(self.ops), m_host, m_port)
        return f"{'https' if self.tls is not None else 'http'}://{host}:{actual}"

    async def _watch_fatal(self) -> None:
        """Ends (with the error) if consensus can no longer store blocks."""
        fatal = self.driver.fatal
        if fatal is None:
            raise RuntimeError("the consensus driver was not started")
        await fatal

    async def _watch_loop_lag(self, interval_s: float = 0.05) -> None:
        """Export how late the event loop runs a timer: a stalled loop stalls consensus."""
        gauges = self.app.metrics.gauges
        worst = 0.0
        window_start = time.monotonic()
        while True:
            before = time.monotonic()
            await asyncio.sleep(interval_s)
            late = (time.monotonic() - before - interval_s) * 1000
            worst = max(worst, late)
            gauges["event_loop_lag_ms"] = round(late, 1)
            if time.monotonic() - window_start >= 10:
                gauges["event_loop_lag_max_10s_ms"] = round(worst, 1)
                worst, window_start = 0.0, time.monotonic()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if getattr(self, "event_streams", None) is not None:
            await self.event_streams.close()  # end the event streams, or the API cannot stop
        if self._runner is not None:
            await stop(self._runner)
        if self._metrics_runner is not None:
            await stop(self._metrics_runner)
        await self.driver.stop()
        await self.network.stop()
        await self.purger.close()
        self.app.close()
        if getattr(self, "request_index", None) is not None:
            self.request_index.close()
        if getattr(self, "replay", None) is not None:
            self.replay.close()
        if getattr(self, "snapshots", None) is not None:
            self.snapshots.close()
        if getattr(self, "access_log", None) is not None:
            self.access_log.close()
        self.snapshot_server.close()
        self.store.close()


def open_chain(config: NodeConfig, genesis: Genesis, fds: FdPlan) -> ChainStore:
    """The node's chain store, checked. A missing one is made (a new node, or one that lost its
    store and syncs the chain again: its signer state keeps it from signing twice); an existing
    one is never made anew, and is refused unless its tip and recent blocks read back whole."""
    path = config.node.data_dir / "chain"
    if not path.exists():
        log.warning("no chain store at %s: starting one from genesis (the chain is synced from peers)", path)
    store = None
    try:
        store = ChainStore.open(path, genesis, create=True, max_open_files=fds.store_files)
        check_recent(store)
    except StorageError as exc:
        if store is not None:
            store.close()
        raise StorageError(f"the chain store at {path} is damaged ({exc}); refusing to start on it. Restore it "
                           "from a backup, or move it aside to sync the chain again") from None
    return store


def prepare_signer(config: NodeConfig, key: SigningKey, chain_id: str, *, init: bool) -> None:
    """A validator signs only with its signer state (what it signed last): never made up anew
    unless told this is a new node (``--init``; ``custos genesis finalize`` writes a new node's
    state too), or it could sign again what it signed before."""
    if config.node.role != "validator":
        return
    path = config.node.data_dir / "consensus" / PRIVVAL_FILE
    if path.exists():
        return
    if not init:
        raise SignerStateError(f"no signer state at {path}: this validator may have signed before. Restore the "
                               "file from a backup; start with --init only if this key never signed on this chain")
    initialise_signer_state(path, key.public, chain_id)


async def patrol_store(store: ChainStore, gauges: dict, *, blocks_per_s: int = 100, step_s: float = 0.5) -> None:
    """Read every stored block back, slowly and forever, so damage shows in /healthz (see
    :class:`ledger.storage.health.Patrol`)."""
    patrol = Patrol(store)
    loop = asyncio.get_running_loop()
    count = max(1, int(blocks_per_s * step_s))
    reported = False
    while True:
        await asyncio.sleep(step_s)
        found = await loop.run_in_executor(None, patrol.step, count)
        gauges["store_blocks_patrolled"] = patrol.checked
        if found is not None and not reported:
            log.error("the chain store is damaged: %s (/healthz fails from now on)", found)
            reported = True


async def collect_after_churn(churn: ChurnCollector, counters: dict, *, step_s: float = 1.0) -> None:
    """Look every ``step_s`` whether callers' connections came and went in numbers (see
    :class:`node.edge.heap.ChurnCollector`); count the collections in the metrics."""
    while True:
        await asyncio.sleep(step_s)
        if churn.step():
            counters["gc_churn_collections"] = churn.collections
            log.debug("collected %d objects after connection churn (longest pass %.0f ms)", churn.found,
                      churn.longest_s * 1000)


def plan_descriptors(config: NodeConfig) -> FdPlan:
    """Share the open-file limit so callers never take the store's or the consensus log's files."""
    limit = raise_soft_limit()
    try:
        fds = plan(limit, api_wanted=config.api.max_connections, p2p_wanted=Limits().max_connections)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    log.info("%s", fds.describe())
    return fds


def peer_limits(fds: FdPlan) -> Limits:
    """The transport's bounds, within the peers' share of the open-file limit."""
    defaults = Limits()
    handshakes = min(defaults.max_handshakes, max(4, fds.p2p_connections // 8))
    return replace(defaults, max_connections=max(4, fds.p2p_connections - handshakes), max_handshakes=handshakes,
                   max_handshakes_per_ip=min(defaults.max_handshakes_per_ip, handshakes))


def api_guard(config: NodeConfig, fds: FdPlan, counters) -> ConnectionGuard:
    """The API's connection bounds (:mod:`node.edge.connections`); counts go to the node's metrics."""
    api = config.api
    limits = ConnectionLimits(max_connections=fds.api_connections, idle_timeout_s=api.idle_timeout_ms / 1000,
                              header_timeout_s=api.header_timeout_ms / 1000)
    return ConnectionGuard(limits, counters=counters, name="http")


def _bindable(host: str, port: int) -> None:
    """Raise the OSError that listening on ``host:port`` raises now (a port in use, an address
    not of this host); the listener itself binds later, as aiohttp does (SO_REUSEADDR)."""
    if port == 0:
        return
    for family, kind, proto, _, address in socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                              flags=socket.AI_PASSIVE):
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                reason = (exc.strerror or str(exc)).lower()
                raise OSError(exc.errno, f"cannot listen on {host}:{port}: {reason}") from None


async def run(config: NodeConfig, *, init: bool = False, state_sync: bool = False) -> None:
    """Run a node until SIGINT or SIGTERM. ``state_sync`` (or ``[statesync] join``): a node whose
    data directory holds no chain first joins from a snapshot its peers offer."""
    joined = None
    if state_sync or config.statesync.join:
        from node.statesync.start import join_from_peers

        report = await join_from_peers(config)
        joined = None if report is None else report.to_json()
    node = Node(config, init=init)
    node.joined = joined
    try:
        url = await node.start()
    except BaseException:
        # a port in use, say: what start() opened (p2p listener, sessions, stores) is closed, so
        # the one-line error is not followed by asyncio's complaints about what was left open
        with contextlib.suppress(Exception):
            await node.stop()
        raise
    # A node allocates many short-lived objects per transaction; with the default thresholds
    # the collector runs full passes over the long-lived ones (caches, event rings) often
    # enough to stall consensus for tens of milliseconds. Start-up objects are frozen out of
    # collection and young generations are collected less often.
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    return_large_buffers()  # a burst of uploads must not leave the heap at its peak
    metrics = f", metrics http://{config.metrics.listen}/metrics" if config.metrics.listen else ""
    log.info("node %s %s serving %s%s (chain %s, height %d)", config.node.name, version(), url, metrics,
             node.store.chain.chain_id, node.store.height)
    if smt.NATIVE is None:
        log.warning("the state tree is updated in Python, about twice as slowly as by its C walk, which was not "
                    "built with this install (it needs a C compiler and OpenSSL's headers: docs/OPERATOR.md)")
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    tasks = [asyncio.create_task(done.wait()), *node._tasks]
    finished, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    failed = False
    for task in finished:
        if task in node._tasks and not task.cancelled() and task.exception() is not None:
            log.error("node task %s failed", task.get_name(), exc_info=task.exception())
            failed = True
    await node.stop()
    log.info("node %s stopped at height %d", config.node.name, node.store.height)
    if failed:
        raise SystemExit(1)  # a supervisor sees the failure and restarts the node
