"""``custos audit``: verify the chain, or one transaction's inclusion, trusting no node.

    custos audit verify (--data-dir DIR [--copy] | [--node URL ... | --devnet DIR] [--key FILE])
                        [--genesis FILE] [--jobs N|auto] [--from-checkpoint FILE] [--write-checkpoint FILE]
                        [--json] [--no-progress]
    custos audit prove TXHASH [--node URL ... | --devnet DIR] [--key FILE] [--out FILE]
                       [--genesis FILE | --validators-hash HEX] [--json]
    custos audit verify-receipt FILE [--genesis FILE | --validators-hash HEX] [--json]

``verify --data-dir`` reads a node's LevelDB (a stopped node, or a copy: a running node holds
the lock) and also checks the records only a store holds (transaction index, state, log nodes,
tip). Otherwise ``verify`` fetches the blocks over the API from the first node that answers
of those named with ``--node`` (repeatable), ``--devnet DIR`` or ``$CUSTOS_NODES``. Either way
every block is re-executed from the genesis (or from a checkpoint the auditor wrote earlier) on the auditor's own state.

Over the API, transactions' bytes (blocks, the block feed, a receipt's transaction) are served
only to signed requests of an integrity reader: give the key of a registered auditor with
``--key FILE`` (its passphrase from ``--passphrase-file``, ``$CUSTOS_PASSPHRASE`` or a prompt).
A node that refuses an unsigned audit makes the command exit 2 and ask for ``--key``.

Exit codes: 0 valid, 1 the chain or proof is invalid, 2 usage or input error, 3 cannot reach
the node.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import queue
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ledger.audit.auditor import Auditor
from ledger.audit.findings import AuditFailure, AuditReport
from ledger.audit.receipt import Certified, Outcome, Receipt, SetChange, request_key, verify_receipt
from ledger.audit.source import SourceError, read_slots
from ledger.audit.text import receipt_summary, summary
from ledger.block import BLOCK, COMMIT, HEADER
from ledger.crypto.keys import SigningKey
from ledger.errors import PROBLEM_BASE, CustosError
from ledger.genesis import Genesis
from ledger.merkle import inclusion_proof_of, leaf_hash
from ledger.state.proof import RecordProof
from ledger.storage.files import write_atomically
from ledger.validators import ValidatorSet
from node.access.purpose import Purpose
from node.audit.checkpoints import open_checkpoint_replay, read_checkpoint, write_checkpoint
from node.audit.datadir import DamagedStore, DataDirSource
from node.audit.pool import available_cores, start_pool
from node.audit.progress import ProgressBar
from node.audit.receipts import read_receipt
from node.cli.common import EXIT_INVALID, EXIT_OK, EXIT_USAGE, Unreachable, add_passphrase_arg, load_key
from node.cli.options import add_node_args, node_urls, seconds
from node.client.http import NodeClient, NodeUnreachable, ProblemError
from node.client.signed import path_with_query, sign_request
from node.genesis_file import load_genesis

AUDIT = Purpose("audit")  # what an auditor's signed reads state
#: below this many signatures to verify, worker processes cost more than they save
PARALLEL_MIN_SIGNATURES = 2_000
PAGE = 100  # blocks per request (the API's limit)


class InputError(CustosError):
    code = "input"


class KeyNeeded(InputError):
    """The node serves what the audit needs only to a signed request of an integrity reader."""


def register(sub) -> None:
    audit = sub.add_parser("audit", help="verify the chain or a transaction's inclusion, trusting no node",
                           description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    asub = audit.add_subparsers(dest="audit_command", metavar="ACTION")
    asub.required = True

    verify = asub.add_parser("verify", help="verify every block, certificate, signature and root from genesis")
    verify.add_argument("--data-dir", type=Path, metavar="DIR",
                        help="a node's data directory (or its chain/ LevelDB); stop the node or audit a copy")
    add_node_args(verify)  # or fetch the blocks over HTTP from the first of these nodes that answers
    verify.add_argument("--copy", action="store_true",
                        help="with --data-dir: audit a temporary copy, leaving DIR byte for byte untouched "
                             "(opening a LevelDB rewrites its bookkeeping files, never its records)")
    verify.add_argument("--genesis", type=Path, metavar="FILE",
                        help="pin the genesis (TOML); without it the source's genesis is used and its hash shown")
    verify.add_argument("--from-checkpoint", type=Path, metavar="FILE",
                        help="continue from a checkpoint an earlier audit wrote: check only what is new")
    verify.add_argument("--write-checkpoint", type=Path, metavar="FILE",
                        help="on success, write a checkpoint (FILE and FILE.replay/) for the next audit")
    verify.add_argument("--jobs", default="auto", metavar="N",
                        help="processes to use: 1 is serial; N > 1 verifies signatures in N - 1 worker "
                             "processes while this one re-executes (default: auto, every core for large chains)")
    verify.add_argument("--json", action="store_true", help="print one JSON document instead of the summary")
    verify.add_argument("--no-progress", action="store_true", help="no progress bar (it only shows on a terminal)")
    verify.add_argument("--timeout", type=seconds, default=15.0, metavar="DURATION",
                        help="per-request timeout over the API (default 15s)")
    _key_args(verify)
    verify.set_defaults(func=cmd_verify)

    prove = asub.add_parser("prove", help="fetch and verify one transaction's inclusion proof; write a receipt")
    prove.add_argument("txhash", help="the transaction id (64 hex digits)")
    add_node_args(prove)
    prove.add_argument("--out", type=Path, metavar="FILE", help="write the receipt here (default: stdout)")
    _anchor_args(prove)
    prove.add_argument("--json", action="store_true", help="print the verdict as JSON")
    prove.add_argument("--timeout", type=seconds, default=15.0, metavar="DURATION",
                       help="per-request timeout (default 15s)")
    _key_args(prove)
    prove.set_defaults(func=cmd_prove)

    check = asub.add_parser("verify-receipt", help="check a receipt offline")
    check.add_argument("receipt", type=Path, metavar="FILE")
    _anchor_args(check)
    check.add_argument("--json", action="store_true", help="print the verdict as JSON")
    check.set_defaults(func=cmd_verify_receipt)


def _key_args(parser) -> None:
    parser.add_argument("--key", type=Path, metavar="FILE",
                        help="sign the reads with this key file (a registered auditor's): nodes serve "
                             "transactions' bytes only to integrity readers")
    add_passphrase_arg(parser)


def _key(args: argparse.Namespace) -> SigningKey | None:
    return load_key(args.key, args) if getattr(args, "key", None) is not None else None


def _anchor_args(parser) -> None:
    anchor = parser.add_mutually_exclusive_group()
    anchor.add_argument("--genesis", type=Path, metavar="FILE", help="anchor in this genesis (TOML)")
    anchor.add_argument("--validators-hash", metavar="HEX", help="anchor in a validator-set hash you trust")


# --------------------------------------------------------------------------- verify


def _url_arg(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise InputError(f"{url!r} is not a node URL (http://HOST:PORT)")
    return url.rstrip("/")


def _writable(path: Path, what: str) -> None:
    """Checked before the work: a file can be written at ``path`` (a directory there, or a missing
    parent, would fail only at the end, leaving staged files behind)."""
    if path.name in ("", ".", "..") or path.is_dir():
        raise InputError(f"cannot write the {what} {path}: it is a directory; name a file")
    if not path.parent.is_dir():
        raise InputError(f"cannot write the {what} {path}: {path.parent} is not a directory")


def cmd_verify(args: argparse.Namespace) -> int:
    jobs = _jobs_arg(args.jobs)
    urls = None
    if args.data_dir is None:
        urls = [_url_arg(u) for u in node_urls(args)]
    elif args.node or args.devnet is not None:
        raise InputError("audit either a data directory (--data-dir) or nodes (--node, --devnet), not both")
    elif args.key is not None:
        raise InputError("--key signs reads over the API: use it with --node (a data directory is read directly)")
    if args.write_checkpoint is not None:
        _writable(args.write_checkpoint, "checkpoint")
        beside = args.write_checkpoint.with_name(args.write_checkpoint.name + ".replay")
        if beside.exists() and not beside.is_dir():
            raise InputError(f"cannot write the checkpoint {args.write_checkpoint}: {beside}, where its replay "
                             "state goes, is not a directory")
    pinned = load_genesis(args.genesis) if args.genesis is not None else None
    key = _key(args)
    if args.from_checkpoint is not None:
        checkpoint = read_checkpoint(args.from_checkpoint)
        replay = open_checkpoint_replay(args.from_checkpoint, checkpoint)
        anchor = checkpoint.anchor()
    else:
        checkpoint, replay, anchor = None, None, None
    source: Any = None
    auditor = None
    bar = None
    pool = None
    try:
        try:
            source = (DataDirSource(args.data_dir, copy=args.copy) if urls is None else
                      _first_answering(urls, lambda url: HttpSource(url, timeout_s=args.timeout, key=key)))
        except DamagedStore as exc:
            report = AuditReport(mode="full" if anchor is None else "incremental", source=f"data directory "
                                 f"{args.data_dir}", jobs=jobs or 1)
            report.failure = AuditFailure(None, "store", "store-readable", f"the store cannot be opened: {exc}")
            _print_report(report, args.json)
            return EXIT_INVALID
        if jobs is None:
            jobs = _auto_jobs(source, checkpoint.log_size if checkpoint else 0,
                              checkpoint.height if checkpoint else 0)
        if not args.no_progress and not args.json and sys.stderr.isatty():
            bar = ProgressBar(sys.stderr)
        # the workers start before the source starts a thread of its own (see start_pool)
        pool = start_pool(jobs - 1) if jobs > 1 else None
        auditor = Auditor(source, genesis=pinned, jobs=jobs, pool=pool, progress=bar, replay=replay, anchor=anchor,
                          clock=time.perf_counter)
        report = auditor.run()
        if bar is not None:
            bar.close()
        if report.ok and args.write_checkpoint is not None and auditor.replay is not None:
            replay_, auditor.replay = auditor.replay, None
            try:
                write_checkpoint(args.write_checkpoint, replay_, source=report.source)
            except OSError as exc:
                raise InputError(f"cannot write the checkpoint {args.write_checkpoint}: {exc}") from None
            report.checkpoint_out = str(args.write_checkpoint)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if auditor is not None and auditor.replay is not None:
            auditor.replay.close()
        elif auditor is None and replay is not None:
            replay.close()
        if source is not None:
            source.close()
    _print_report(report, args.json)
    return EXIT_OK if report.ok else EXIT_INVALID


def _print_report(report: AuditReport, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(report.to_json(), indent=2) + "\n")
    else:
        sys.stdout.write(summary(report) + "\n")
    sys.stdout.flush()


def _first_answering(urls: list[str], attempt):
    """``attempt(url)`` for the first of ``urls`` whose node answers (others: exit 3 if none does)."""
    errors = []
    for url in urls:
        try:
            return attempt(url)
        except Unreachable as exc:
            errors.append(str(exc))
    raise Unreachable("; ".join(errors))


def _jobs_arg(text: str) -> int | None:
    if text == "auto":
        return None
    try:
        jobs = int(text)
    except ValueError:
        raise InputError("--jobs is a number of processes (1 = serial) or 'auto'") from None
    if not 1 <= jobs <= 1024:
        raise InputError("--jobs must lie in 1..1024")
    return jobs


def _auto_jobs(source: Any, done_log: int, done_height: int) -> int:
    """Every core, unless the chain is too small for worker processes to pay off."""
    cores = available_cores()
    claimed = source.claimed_tip()
    txs = claimed.get("log_size") if isinstance(claimed.get("log_size"), int) else None
    blocks = max(0, source.tip_height() - done_height)
    signatures = 2 * max(0, (txs if txs is not None else 0) - done_log) + 2 * blocks
    return cores if cores > 1 and signatures >= PARALLEL_MIN_SIGNATURES else 1


# --------------------------------------------------------------------------- the node as a block source


def _run(coro):
    try:
        return asyncio.run(coro)
    except NodeUnreachable as exc:
        raise Unreachable(str(exc)) from None
    except ProblemError as exc:
        raise Unreachable(f"the node refused: {exc.diagnostics()}") from None


def _bytes_or_none(value: Any) -> bytes | None:
    return value if isinstance(value, bytes) else None


def _refusal(exc: ProblemError, key: SigningKey | None, what: str) -> CustosError:
    """What a refused read means for the auditor: a key is needed (exit 2), or the node failed."""
    if exc.status in (401, 403):
        if key is None:
            said = "" if exc.type == PROBLEM_BASE + "unsigned-request" else f" (the node said {exc.diagnostics()})"
            return KeyNeeded(f"the node serves {what} only to signed requests of an integrity reader: an auditor "
                             f"key is needed (--key FILE, the key of an auditor the council registered){said}")
        return KeyNeeded(f"the node refused {what} to key {key.public.hex()[:16]} (is it a registered auditor's "
                         f"key, for this chain?): {exc.diagnostics()}")
    return Unreachable(f"the node refused to serve {what}: {exc.diagnostics()}")


class SignedReads:
    """GETs on one node through ``client``, signed with ``key`` when one is given (a node clock
    far from ours is learnt from its ``stale-request`` answer, and the read signed again)."""

    def __init__(self, client: NodeClient, key: SigningKey | None, chain_id: str | None = None) -> None:
        self.client = client
        self.key = key
        self.chain_id = chain_id
        self.node_id: bytes | None = None  # the node's public key: each signature binds it
        self.clock_offset_ms = 0

    async def get(self, path: str, params: dict | None = None, *, accept_msgpack: bool = False) -> tuple[int, Any]:
        path_qs = path_with_query(path, params)
        if self.key is None:
            return await self.client.request("GET", path_qs, accept_msgpack=accept_msgpack)
        if self.chain_id is None or self.node_id is None:
            status = await self.client.status()
            self.chain_id = self.chain_id or str(status["chain_id"])
            try:
                self.node_id = bytes.fromhex(str(status["node_id"]))
            except (KeyError, ValueError):
                raise Unreachable(f"{self.client.current_url} names no node id in /v1/status") from None
        for attempt in range(2):
            headers = sign_request(self.key, self.chain_id, "GET", path_qs, node=self.node_id, purpose=AUDIT.header(),
                                   time_ms=time.time_ns() // 1_000_000 + self.clock_offset_ms)
            try:
                return await self.client.request("GET", path_qs, headers=headers, accept_msgpack=accept_msgpack)
            except ProblemError as exc:
                if attempt or exc.type != PROBLEM_BASE + "stale-request" or "server_time_ms" not in exc.doc:
                    raise
                self.clock_offset_ms = int(exc.doc["server_time_ms"]) - time.time_ns() // 1_000_000
        raise AssertionError("unreachable")


class HttpSource:
    """A node's chain over its API. Pages of blocks are fetched ahead by a background thread
    (its own event loop), so the network overlaps the audit's work."""

    tip_check = "status"

    def __init__(self, url: str, *, timeout_s: float = 15.0, page: int = PAGE, prefetch: int = 4,
                 key: SigningKey | None = None) -> None:
        self.url = url.rstrip("/")
        self.description = f"node {self.url}"
        self.timeout_s = timeout_s
        self.page = page
        self.prefetch = prefetch
        self.key = key
        self._genesis, self._status = _run(self._meta())
        height = self._status.get("height")
        if type(height) is not int or height < 0:
            raise Unreachable(f"{self.url} answered /v1/status without a height")
        self._height = height
        self._slots: dict[int, bytes | None] = {}  # filled by the page fetcher, taken by the audit
        chain_id = self._status.get("chain_id")
        self._chain_id = chain_id if isinstance(chain_id, str) else None

    def _client(self) -> NodeClient:
        return NodeClient(self.url, timeout_s=self.timeout_s)

    async def _meta(self) -> tuple[bytes, dict]:
        async with self._client() as c:
            _, genesis = await c.request("GET", "/v1/genesis", accept_msgpack=True)
            status = await c.status()
            chain_id = status.get("chain_id") if isinstance(status, dict) else None
            try:  # before any work: does the node serve us its blocks?
                await SignedReads(c, self.key, chain_id if isinstance(chain_id, str) else None).get(
                    "/v1/blocks", {"from": 1, "limit": 1})
            except ProblemError as exc:
                raise _refusal(exc, self.key, "its blocks") from None
        raw = genesis.get("genesis") if isinstance(genesis, dict) else None
        return (raw if isinstance(raw, bytes) else b""), (status if isinstance(status, dict) else {})

    def genesis_bytes(self) -> bytes:
        return self._genesis

    def tip_height(self) -> int:
        return self._height

    def claimed_tip(self) -> dict[str, object]:
        s, claims = self._status, {}
        for name, key in (("height", "height"), ("time", "last_block_time"), ("log_size", "log_size")):
            if type(s.get(key)) is int:
                claims[name] = s[key]
        for name, key in (("hash", "last_block_hash"), ("log_root", "log_root")):
            try:
                claims[name] = bytes.fromhex(s[key])
            except (KeyError, TypeError, ValueError):
                pass
        return claims

    def slots(self, height: int) -> dict[bytes, bytes | None]:
        return read_slots(self._slots.pop(height, None), height)

    def blocks(self, start: int, stop: int) -> Iterator[tuple[int, bytes | None, bytes | None]]:
        if start > stop:
            return
        pages: queue.Queue = queue.Queue(maxsize=self.prefetch)
        halt = threading.Event()

        def put(item) -> None:
            while not halt.is_set():
                try:
                    pages.put(item, timeout=0.2)
                    return
                except queue.Full:
                    continue

        async def fetch() -> None:
            async with self._client() as c:
                reads = SignedReads(c, self.key, self._chain_id)
                first = start
                while first <= stop and not halt.is_set():
                    limit = min(self.page, stop - first + 1)
                    _, body = await reads.get("/v1/blocks", {"from": first, "limit": limit})
                    items = body.get("blocks") if isinstance(body, dict) else None
                    if not isinstance(items, list):
                        items = []
                    got = [(_bytes_or_none(i.get("block")), _bytes_or_none(i.get("commit"))) if isinstance(i, dict)
                           else (None, None) for i in items[:limit]]
                    for n, i in enumerate(items[:limit]):
                        self._slots[first + n] = _bytes_or_none(i.get("slots")) if isinstance(i, dict) else None
                    put(("page", got))
                    if not got:
                        return  # the node has nothing more: the auditor reports what is missing
                    first += len(got)

        def worker() -> None:
            try:
                asyncio.run(fetch())
                put(("end", None))
            except BaseException as exc:  # handed to the consuming thread
                put(("error", exc))

        thread = threading.Thread(target=worker, name="audit-fetch", daemon=True)
        thread.start()
        try:
            height = start
            while height <= stop:
                try:
                    kind, value = pages.get(timeout=4 * self.timeout_s)
                except queue.Empty:
                    raise Unreachable(f"{self.url} sent no blocks for {4 * self.timeout_s:.0f} s") from None
                if kind == "error":
                    if isinstance(value, NodeUnreachable):
                        raise Unreachable(str(value))
                    if isinstance(value, ProblemError):
                        raise _refusal(value, self.key, "its blocks")
                    raise value
                if kind == "end" or not value:
                    while height <= stop:  # the node stopped short of its claimed tip
                        yield height, None, None
                        height += 1
                    return
                for block, commit in value:
                    yield height, block, commit
                    height += 1
        finally:
            halt.set()
            thread.join(timeout=2 * self.timeout_s)

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        async def go() -> dict:
            async with self._client() as c:
                return (await c.request("GET", "/v1/log/consistency", params={"first": first, "second": second},
                                        accept_msgpack=True))[1]

        doc = _run(go())
        proof = doc.get("proof") if isinstance(doc, dict) else None
        if not isinstance(proof, list) or not all(isinstance(p, bytes) for p in proof):
            raise SourceError("the node's consistency proof is malformed")
        return proof

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------- prove


def _anchor(args) -> tuple[Genesis | None, bytes | None]:
    genesis = load_genesis(args.genesis) if getattr(args, "genesis", None) is not None else None
    vh = None
    if getattr(args, "validators_hash", None) is not None:
        try:
            vh = bytes.fromhex(args.validators_hash)
        except ValueError:
            vh = b""
        if len(vh) != 32:
            raise InputError("--validators-hash is 64 hex digits")
    return genesis, vh


def cmd_prove(args: argparse.Namespace) -> int:
    try:
        tx_id = bytes.fromhex(args.txhash)
    except ValueError:
        tx_id = b""
    if len(tx_id) != 32:
        raise InputError("TXHASH is a transaction id: 64 hex digits")
    genesis, vh = _anchor(args)
    urls = [_url_arg(u) for u in node_urls(args)]
    if args.out is not None:
        _writable(args.out, "receipt")
    key = _key(args)
    receipt = _first_answering(urls, lambda url: _run(fetch_receipt(url, tx_id, timeout_s=args.timeout, key=key)))
    doc = receipt.to_json()
    verdict = verify_receipt(doc, genesis=genesis, validators_hash=vh)
    text = json.dumps(doc, indent=2) + "\n"
    if args.out is not None:
        try:
            write_atomically(args.out, text.encode(), mode=0o644)  # never through a link at OUT.tmp
        except OSError as exc:
            raise InputError(f"cannot write the receipt {args.out}: {exc}") from None
        _print_verdict(verdict, args.json)
    elif args.json:
        sys.stdout.write(json.dumps({"receipt": doc, "verdict": verdict.to_json()}, indent=2) + "\n")
    else:
        sys.stdout.write(text)
        sys.stderr.write(receipt_summary(verdict) + "\n")
    return _receipt_exit(verdict)


def _receipt_exit(verdict) -> int:
    """0 for a receipt proven from a trust anchor, 1 for one that fails, 2 for one consistent in
    itself but anchored in nothing (the node that served it could have made up its validators)."""
    if verdict.ok and not verdict.anchored:
        sys.stderr.write("custos: the receipt is consistent but anchored in nothing: its validator set came with it. "
                         "Pin a trust anchor: --genesis FILE (the network's genesis) or --validators-hash HEX "
                         "(a set hash from your own audit)\n")
        return EXIT_USAGE
    return EXIT_OK if verdict.ok else EXIT_INVALID


async def fetch_receipt(url: str, tx_id: bytes, *, timeout_s: float = 15.0,
                        key: SigningKey | None = None) -> Receipt:
    """Everything a receipt needs, from one node (verified by the caller, never trusted).

    The transaction's bytes are served to integrity readers only: ``key`` signs the reads."""
    async with NodeClient(url, timeout_s=timeout_s) as c:
        reads = SignedReads(c, key)
        try:
            status, doc = await reads.get(f"/v1/txs/{tx_id.hex()}", accept_msgpack=True)
        except ProblemError as exc:
            if exc.status == 404:
                raise InputError(f"the node knows no transaction {tx_id.hex()}") from None
            raise _refusal(exc, key, "the transaction") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("status"), str):
            raise Unreachable(f"{url} is not a Custos node (its answer for a transaction is not a node's)")
        if status != 200 or doc.get("status") != "committed":
            raise InputError(f"transaction {tx_id.hex()} is not committed yet (status "
                             f"{doc.get('status') if isinstance(doc, dict) else status}); try again later")
        raw = doc.get("tx")
        if not isinstance(raw, bytes):
            if key is None:
                raise KeyNeeded("the node serves a transaction's bytes (which a receipt holds) only to signed "
                                "requests of an integrity reader: an auditor key is needed (--key FILE)")
            raise KeyNeeded(f"the node did not serve the transaction's bytes to key {key.public.hex()[:16]} "
                            "(is it a registered auditor's key, for this chain?)")
        _, g = await c.request("GET", "/v1/genesis", accept_msgpack=True)
        try:
            proof = doc["proof"]
            header_wire = dict(proof["header"])
            header_wire.pop("hash", None)
            header = HEADER.check(header_wire, "header")
            commit = COMMIT.check(proof["commit"], "commit")
        except (KeyError, TypeError, CustosError) as exc:
            raise InputError(f"the node's proof document is malformed: {exc}") from None
        validators = await _validators(c, header.height)
        height, index = int(doc.get("height", 0)), int(doc.get("index", 0))
        block, tx_path = await _block_of(c, reads, height, index)
        outcome = await _outcome(c, reads, raw, tx_id)
        top = max(header.height, outcome.at.header.height if outcome is not None else 0)
        changes = await _set_changes(c, reads, top)
        reported = doc.get("result")
        result = reported if isinstance(reported, dict) else {}
        ref = result.get("ref")
        g_hash = g.get("hash") if isinstance(g, dict) else None
        return Receipt(
            chain_id=header.chain_id,
            genesis_hash=g_hash if isinstance(g_hash, bytes) else bytes(32),
            tx=raw,
            tx_id=tx_id,
            height=height,
            index=index,
            log_index=int(proof.get("log_index", 0)),
            log_size=int(proof.get("log_size", 0)),
            path=tuple(p for p in proof.get("path", []) if isinstance(p, bytes)),
            header=header,
            commit=commit,
            validators=validators,
            block=block,
            tx_path=tx_path,
            set_changes=tuple(changes),
            reported_result={"status": result.get("status"), "ref": ref.hex() if isinstance(ref, bytes) else None},
            outcome=outcome,
        )


async def _block_of(c: NodeClient, reads: SignedReads, height: int, index: int) -> tuple[Certified, tuple[bytes, ...]]:
    """The certified header of the transaction's block and its path under the transaction root."""
    _, doc = await reads.get(f"/v1/blocks/{height}", accept_msgpack=True)
    try:
        if "block" in doc:
            block = BLOCK.decode(doc["block"])
            header, leaves = block.header, [leaf_hash(t) for t in block.txs]
        else:
            header, leaves = HEADER.decode(doc["header"]), list(doc["leaf_hashes"])
        commit = COMMIT.decode(doc["commit"])
        path = tuple(inclusion_proof_of(leaves, index))
    except (KeyError, TypeError, ValueError, CustosError) as exc:
        raise InputError(f"the node's block {height} is malformed: {exc}") from None
    return Certified(header, commit, await _validators(c, height)), path


async def _outcome(c: NodeClient, reads: SignedReads, raw: bytes, tx_id: bytes) -> Outcome | None:
    """A crossing's request record proven at the node's newest height (None for other kinds)."""
    if request_key(raw, tx_id) is None:
        return None
    try:
        _, doc = await reads.get(f"/v1/requests/{tx_id.hex()}/proof", accept_msgpack=True)
        header, commit = HEADER.decode(doc["header"]), COMMIT.decode(doc["commit"])
        proof = RecordProof.decode(doc["proof"])
    except ProblemError as exc:
        raise InputError(f"the node did not prove the crossing's outcome: {exc.diagnostics()}") from None
    except (KeyError, TypeError, CustosError) as exc:
        raise InputError(f"the node's outcome proof is malformed: {exc}") from None
    return Outcome(Certified(header, commit, await _validators(c, header.height)), proof)


async def _validators(c: NodeClient, height: int) -> ValidatorSet:
    _, doc = await c.request("GET", "/v1/validators", params={"height": height}, accept_msgpack=True)
    try:
        return ValidatorSet.from_wire([{"key": v["key"], "power": v["power"]} for v in doc["validators"]])
    except (KeyError, TypeError, CustosError) as exc:
        raise InputError(f"the node's validator set at height {height} is malformed: {exc}") from None


async def _set_changes(c: NodeClient, reads: SignedReads, up_to: int) -> list[SetChange]:
    """The headers that hand the chain from the genesis set to the set at ``up_to``.

    Change heights are found by bisection over the set's hash (O(changes x log height)
    requests). A change and its reversal between two probes are not seen; the receipt then
    anchors through fewer changes, which the verifier checks all the same.
    """
    hashes: dict[int, bytes] = {}

    async def hash_at(h: int) -> bytes:
        if h not in hashes:
            hashes[h] = (await _validators(c, h)).hash
        return hashes[h]

    found: list[int] = []

    async def bisect(lo: int, hi: int) -> None:
        if await hash_at(lo) == await hash_at(hi):
            return
        if hi == lo + 1:
            found.append(hi)
            return
        mid = (lo + hi) // 2
        await bisect(lo, mid)
        await bisect(mid, hi)

    if up_to >= 2:
        await bisect(1, up_to)
    changes = []
    for height in sorted(found):
        # the header and its certificate: the whole block for an integrity reader, else the public view
        _, doc = await reads.get(f"/v1/blocks/{height - 1}", accept_msgpack=True)
        try:
            header = BLOCK.decode(doc["block"]).header if "block" in doc else HEADER.decode(doc["header"])
            commit = COMMIT.decode(doc["commit"])
        except (KeyError, TypeError, CustosError) as exc:
            raise InputError(f"the node's block {height - 1} is malformed: {exc}") from None
        changes.append(SetChange(header, commit, await _validators(c, height)))
    return changes


# --------------------------------------------------------------------------- verify-receipt


def cmd_verify_receipt(args: argparse.Namespace) -> int:
    genesis, vh = _anchor(args)
    doc = read_receipt(args.receipt)
    verdict = verify_receipt(doc, genesis=genesis, validators_hash=vh)
    _print_verdict(verdict, args.json)
    return _receipt_exit(verdict)


def _print_verdict(verdict, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(verdict.to_json(), indent=2) + "\n")
    else:
        sys.stdout.write(receipt_summary(verdict) + "\n")
    sys.stdout.flush()
