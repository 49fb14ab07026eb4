"""The border-post terminal: submit crossing requests, work through outages, follow decisions.

A request is signed by the terminal's key and the child's biometric key (recovered from a fresh
scan and the child's card, see :mod:`node.client.cards`), written to the durable outbox
(:mod:`node.client.queue`) and only then sent. Delivery tries every configured node; a node's
acknowledgement moves the request from "waiting" to "sent"; its final decision (permitted,
denied, expired) arrives over the signed event stream, and a request whose decision was seen
leaves the outbox. :meth:`TerminalClient.wait_decision` shows each step as it happens.

Configuration lives in ``DIR/terminal.json`` (written by ``custos terminal init``)::

    {"format": "custos-terminal/1", "chain_id": "...", "post": "MD-LEU",
     "key_file": "terminal.key", "nodes": ["http://127.0.0.1:8700", ...],
     "card_keys": ["card-2026.key", ...]}

``card_keys`` are the card-opening key files the terminal opens children's cards with (see
:mod:`node.client.cards`); several during a key rotation.

The chain id and the post are in the file because a terminal must sign requests while no node
is reachable.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from ledger.crypto.keys import SigningKey
from ledger.errors import PROBLEM_BASE, CustosError
from ledger.state.records import PENDING
from ledger.tx.envelope import Transaction
from node.access.purpose import Purpose
from node.client.http import NodeUnreachable, ProblemError
from node.client.light import LightClient
from node.client.proven import request_status
from node.client.queue import DurableQueue, QueueBusy, Sent, Waiting
from node.client.signed import SignedClient, StreamEvent
from node.client.tls import trust
from node.client.txs import TxFactory

log = logging.getLogger("custos.terminal")

CONFIG_FORMAT = "custos-terminal/1"
CONFIG_FILE = "terminal.json"
QUEUE_DIR = "queue"
TRUST_FILE = "trust.json"
FINAL = ("permitted", "denied", "expired")
#: rules whose rejection is temporary: the request stays in the outbox
TRANSIENT_RULES = frozenset({"mempool-full"})
BATCH = 100


class TerminalError(CustosError):
    code = "terminal"


@dataclass(frozen=True)
class TerminalConfig:
    directory: Path
    chain_id: str
    post: str
    key_file: Path
    nodes: tuple[str, ...]
    card_keys: tuple[Path, ...] = ()
    genesis_hash: bytes | None = None  # the pinned genesis every answer is proven from
    #: CA certificates trusted for the nodes' TLS besides the system's (node.client.tls)
    cas: tuple[Path, ...] = ()

    @classmethod
    def load(cls, directory: Path) -> TerminalConfig:
        path = Path(directory) / CONFIG_FILE
        try:
            doc = json.loads(path.read_text())
        except OSError as exc:
            raise TerminalError(f"no terminal set up in {directory} ({exc.strerror}); "
                                "run `custos terminal init`") from None
        except ValueError:
            raise TerminalError(f"{path} is not valid JSON") from None
        if not isinstance(doc, dict) or doc.get("format") != CONFIG_FORMAT:
            raise TerminalError(f"{path} is not a terminal configuration")
        try:
            key_file = Path(doc["key_file"])
            if not key_file.is_absolute():
                key_file = Path(directory) / key_file
            card_keys = tuple(Path(directory) / Path(p) for p in doc.get("card_keys", []))
            pinned = doc.get("genesis_hash")
            cas = tuple(Path(p) for p in doc.get("ca", []))
            for ca in cas:
                trust(ca)
            return cls(Path(directory), str(doc["chain_id"]), str(doc["post"]), key_file,
                       tuple(str(u) for u in doc["nodes"]), card_keys,
                       bytes.fromhex(pinned) if pinned else None, cas)
        except (KeyError, TypeError, ValueError) as exc:
            raise TerminalError(f"{path} lacks a field: {exc}") from None

    def save(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        doc = {"format": CONFIG_FORMAT, "chain_id": self.chain_id, "post": self.post,
               "key_file": str(self.key_file), "nodes": list(self.nodes),
               "card_keys": [str(p) for p in self.card_keys],
               "genesis_hash": self.genesis_hash.hex() if self.genesis_hash else None,
               "ca": [str(p) for p in self.cas]}
        tmp = self.directory / (CONFIG_FILE + ".tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        tmp.replace(self.directory / CONFIG_FILE)

    @property
    def queue_dir(self) -> Path:
        return self.directory / QUEUE_DIR

    @property
    def trust_file(self) -> Path:
        """The last header this terminal's light client trusts (node.client.light)."""
        return self.directory / TRUST_FILE


@dataclass
class Delivery:
    """What one delivery round did."""

    acknowledged: list[tuple[Sent, str]] = field(default_factory=list)  # (entry, crossing status or "")
    refused: list[tuple[Waiting, str, str]] = field(default_factory=list)  # (entry, rule, detail)
    left: int = 0  # still waiting
    error: str = ""  # why delivery stopped early (no node reachable, ...)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class TerminalClient:
    """One terminal: its key, its post, its outbox and the nodes it may talk to."""

    def __init__(self, *, key: SigningKey, chain_id: str, post: str, queue: DurableQueue | Path, urls: list[str],
                 timeout_s: float = 10.0, genesis_hash: bytes | None = None, trust_file: Path | None = None,
                 warn: Callable[[str], None] | None = None) -> None:
        """``queue``: an open outbox, or its directory (opened when first needed)."""
        self.key = key
        self.post = post
        self._queue: DurableQueue | None = queue if isinstance(queue, DurableQueue) else None
        self._queue_path = queue.path if isinstance(queue, DurableQueue) else Path(queue)
        self.chain_id = chain_id
        self.txs = TxFactory(chain_id)
        self.signed = SignedClient(urls, key, chain_id=chain_id, timeout_s=timeout_s,
                                   purpose=Purpose("border-check"))
        self.node = self.signed.node
        self.light = LightClient(self.signed, genesis_hash=genesis_hash, trust_file=trust_file, warn=warn)

    @classmethod
    def from_config(cls, config: TerminalConfig, key: SigningKey, *, urls: list[str] | None = None,
                    timeout_s: float = 10.0, warn: Callable[[str], None] | None = None) -> TerminalClient:
        return cls(key=key, chain_id=config.chain_id, post=config.post, queue=config.queue_dir,
                   urls=list(urls or config.nodes), timeout_s=timeout_s, genesis_hash=config.genesis_hash,
                   trust_file=config.trust_file, warn=warn)

    async def __aenter__(self) -> TerminalClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.signed.close()
        self.release_outbox()

    @property
    def queue(self) -> DurableQueue:
        if self._queue is None:
            self._queue = DurableQueue(self._queue_path)  # QueueBusy if another process holds it
        return self._queue

    def release_outbox(self) -> None:
        """Let another terminal process use the outbox (say, to record the next child while this
        one waits for guardians); it is reopened when needed."""
        if self._queue is not None:
            self._queue.close()
            self._queue = None

    def settle(self, request_id: bytes) -> None:
        """Forget a decided request, unless another process holds the outbox (it settles later)."""
        try:
            queue = self.queue
        except QueueBusy:
            return
        if queue.is_sent(request_id):
            queue.settle(request_id)

    # ------------------------------------------------------------------ requests
    def make_request(self, biometric: SigningKey, identity: bytes, *, direction: str, destination: str,
                     companion: bytes | None = None, event_time: int | None = None) -> Transaction:
        return self.txs.crossing(self.key, biometric, identity, post=self.post, direction=direction,
                                 event_time=_now_ms() if event_time is None else event_time,
                                 destination=destination, companion=companion)

    def enqueue(self, tx: Transaction) -> Waiting:
        """Write the signed request to the outbox (synchronously) before anything is sent."""
        return self.queue.put(tx.id, tx.raw)

    async def cross(self, biometric: SigningKey, identity: bytes, *, direction: str, destination: str,
                    companion: bytes | None = None) -> tuple[Waiting, Delivery]:
        """Record a crossing: queue it durably, then try to deliver everything waiting."""
        entry = self.enqueue(self.make_request(biometric, identity, direction=direction,
                                               destination=destination, companion=companion))
        return entry, await self.deliver()

    # ------------------------------------------------------------------ delivery
    async def deliver(self) -> Delivery:
        """Send every waiting request, oldest first, in batches; stop at the first outage."""
        report = Delivery()
        while True:
            batch = self.queue.waiting(BATCH)
            if not batch:
                break
            try:
                results = await self.node.submit_batch([e.raw for e in batch])
            except NodeUnreachable as exc:
                report.error = f"no node reachable ({exc})"
                self.queue.note_failure(batch, report.error)
                break
            except ProblemError as exc:
                report.error = f"node refused the batch: {exc.diagnostics()}"
                self.queue.note_failure(batch, report.error)
                break
            if len(results) != len(batch):
                report.error = "node answered a different number of results"
                break
            stop = False
            for entry, result in zip(batch, results, strict=True):
                status = result.get("status")
                if status in ("accepted", "committed"):
                    sent = self.queue.acknowledge(entry, status, self.node.current_url)
                    report.acknowledged.append((sent, ""))
                elif result.get("rule") in TRANSIENT_RULES:
                    report.error = f"node busy: {result.get('detail', '')}"
                    stop = True
                else:
                    rule, detail = str(result.get("rule", "rejected")), str(result.get("detail", ""))
                    self.queue.refuse(entry, rule, detail)
                    report.refused.append((entry, rule, detail))
            if stop:
                break
        report.left = len(self.queue.waiting())
        return report

    async def deliver_until_empty(self, *, timeout_s: float, retry_s: float = 1.0,
                                  on_round: Callable[[Delivery], None] | None = None) -> Delivery:
        """Deliver, retrying outages with backoff, until the outbox is empty or ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        total = Delivery()
        delay = retry_s
        while True:
            report = await self.deliver()
            total.acknowledged += report.acknowledged
            total.refused += report.refused
            total.left, total.error = report.left, report.error
            if on_round is not None:
                on_round(report)
            if report.left == 0 or time.monotonic() + delay > deadline:
                return total
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0) if report.error else retry_s

    async def reconcile(self) -> list[tuple[Sent, str]]:
        """Check every sent request with the nodes; settle decided ones, requeue lost ones.

        Returns (entry, status) for each, status being the crossing status, "accepted" (still in
        a node's mempool) or "requeued".
        """
        out = []
        for sent in self.queue.sent():
            try:
                doc = await self.status(sent.request_id)
            except ProblemError as exc:
                if exc.status != 404:
                    raise
                try:
                    await self.node.tx(sent.request_id)
                    out.append((sent, "accepted"))
                except ProblemError as exc2:
                    if exc2.status != 404:
                        raise
                    self.queue.resend(sent)
                    out.append((sent, "requeued"))
                continue
            if doc["status"] in FINAL:
                self.queue.settle(sent.request_id)
            out.append((sent, doc["status"]))
        return out

    # ------------------------------------------------------------------ decisions
    async def status(self, request_id: bytes) -> dict:
        """The request as the chain holds it, proven at a certified header (a signed read: only
        the submitting terminal may); raises :class:`ProblemError` 404 if no node holds it."""
        doc = await self.status_or_none(request_id)
        if doc is None:
            raise ProblemError(404, {"type": PROBLEM_BASE + "not-found", "title": "no such crossing request",
                                     "detail": f"no crossing request {request_id.hex()} is on the chain"})
        return doc

    async def status_or_none(self, request_id: bytes) -> dict | None:
        """The proven request, or None if no node holds it (not committed yet). Raises
        :class:`node.client.light.Unproven` if nodes answer but none proves its answer."""
        return await request_status(self.light, request_id)

    async def wait_decision(self, request_id: bytes, *, timeout_s: float,
                            on_update: Callable[[str, dict], None] | None = None,
                            heartbeat_ms: int = 15_000) -> dict | None:
        """Follow the request until its decision is final; returns its last known document.

        Subscribes first, then reads the current status (so nothing falls between the two), and
        then only listens: updates arrive as the blocks that carry them commit. Returns None if
        the request was not committed within ``timeout_s``.
        """
        hexid = request_id.hex()
        last: dict | None = None

        def note(kind: str, doc: dict) -> None:
            nonlocal last
            last = doc
            if on_update is not None:
                on_update(kind, doc)

        async def follow() -> None:
            async for ev in self.signed.events(heartbeat_ms=heartbeat_ms):
                if ev.type == "sync":
                    doc = await self.status_or_none(request_id)
                    if doc is not None and (last is None or doc["status"] != last.get("status")):
                        note("status", doc)
                elif ev.data.get("id") == hexid and ev.type == "closed":
                    # a final status is acted on only once proven (the event is the node's word)
                    for _ in range(3):
                        doc = await self.status_or_none(request_id)
                        if doc is not None and doc["status"] in FINAL:
                            note("closed", doc)
                            break
                        await asyncio.sleep(0.2)
                elif ev.data.get("id") == hexid and ev.type in ("pending", "decision"):
                    note(ev.type, ev.data)
                if last is not None and last.get("status") in FINAL:
                    return

        try:
            await asyncio.wait_for(follow(), timeout_s)
        except TimeoutError:
            pass
        if last is not None and last.get("status") in FINAL:
            self.settle(request_id)
        return last

    async def events(self, **kwargs) -> AsyncIterator[StreamEvent]:
        """Every decision about this terminal's requests, as it commits."""
        async for ev in self.signed.events(**kwargs):
            if ev.type == "closed":
                self.settle(bytes.fromhex(ev.data["id"]))
            yield ev


def describe(doc: dict) -> str:
    """One line a border officer reads."""
    status = doc.get("status", "?").upper()
    if doc.get("status") == PENDING:
        got = len(doc.get("approvals", []))
        return (f"{status}: guardians alerted; {got} of {doc.get('approvals_needed', '?')} approvals, "
                f"decision due by {_iso(doc.get('deadline'))}")
    if doc.get("status") == "permitted":
        why = " under a travel consent" if doc.get("consent") else ""
        return f"{status}{why}"
    if doc.get("status") == "denied":
        return f"{status} by a guardian: do not let the child cross; an alert was raised"
    if doc.get("status") == "expired":
        return f"{status}: no guardian decision in time; an alert was raised"
    return status


def _iso(ms: int | None) -> str:
    if not ms:
        return "?"
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ms / 1000))
