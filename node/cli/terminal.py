"""``custos terminal …``: the border officer's terminal.

* ``init``: set up a terminal directory (its key, its post, the chain id, the nodes)
* ``cross``: scan the child, read the card, record the crossing and show the decision as it
  becomes final; with no node reachable the request waits in the outbox (exit code 3)
* ``queue``: show the outbox; ``--flush`` delivers it (``--retry-for S`` keeps trying)
* ``status REQUEST_ID``: a request's current state
* ``run``: the terminal's long-running process: delivers the outbox whenever a node is
  reachable and prints every decision on this terminal's requests as it commits
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from pathlib import Path

from node.cli.common import EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, Unreachable
from node.cli.options import (
    InputError,
    add_node_args,
    chosen_node_urls,
    companion_arg,
    country,
    emit_json,
    hash_arg,
    hostport,
    iso,
    load_key,
    max_shift_arg,
    node_urls,
    refuse,
    run,
    say,
    seconds,
    warn,
)
from node.client.http import NodeUnreachable, ProblemError
from node.client.signed import SignedClient
from node.client.terminal import (
    FINAL,
    Delivery,
    TerminalClient,
    TerminalConfig,
    describe,
)
from node.client.tls import trusted

DEFAULT_DIR = os.environ.get("CUSTOS_TERMINAL_DIR", "terminal")


def register(sub) -> None:
    term = sub.add_parser("terminal", help="border-post terminal: record crossings, see decisions")
    tsub = term.add_subparsers(dest="terminal_command", metavar="ACTION")
    tsub.required = True

    init = tsub.add_parser("init", help="set up a terminal directory")
    _dir(init)
    init.add_argument("--key", type=Path, required=True, help="the terminal's key file")
    init.add_argument("--post", required=True, help="the border post this terminal belongs to")
    init.add_argument("--chain-id", help="the chain id (default: asked from the first node that answers)")
    init.add_argument("--genesis-hash", metavar="HEX",
                      help="the network's genesis hash: every answer is proven from it (default: the first "
                           "node's, printed to compare)")
    init.add_argument("--passphrase-file", type=Path, help="file with the key file's passphrase")
    init.add_argument("--card-key", type=Path, action="append", default=[],
                      help="a card-opening key file (repeat during a key rotation)")
    add_node_args(init)
    init.set_defaults(func=cmd_init)

    cross = tsub.add_parser("cross", help="record a crossing and show the decision")
    _common(cross)
    cross.add_argument("--card", type=Path, required=True, help="the child's card file")
    cross.add_argument("--scan", type=Path, required=True, help="a fresh scan of the child's eye")
    cross.add_argument("--direction", choices=("exit", "entry"), required=True)
    cross.add_argument("--destination", type=country, required=True, help="country code of the destination (e.g. RO)")
    cross.add_argument("--companion", metavar="DOCUMENT",
                       help="the accompanying adult's document number, issuing country first (e.g. 'MDA AB123456'); "
                            "the chain holds only a tag keyed with the child's card")
    cross.add_argument("--max-shift", type=max_shift_arg, default=8,
                       help="angular positions the scan is turned each way to match, 0..63 (default 8)")
    cross.add_argument("--wait", type=seconds, default=300.0, metavar="DURATION",
                       help="how long to wait for the decision (e.g. 5m; default 5m; 0: do not wait)")
    cross.set_defaults(func=cmd_cross)

    queue = tsub.add_parser("queue", help="show the outbox; --flush delivers it")
    _common(queue)
    queue.add_argument("--flush", action="store_true", help="deliver waiting requests and check sent ones")
    queue.add_argument("--retry-for", type=seconds, default=0.0, metavar="DURATION",
                       help="with --flush: keep retrying unreachable nodes this long (e.g. 60s)")
    queue.set_defaults(func=cmd_queue)

    status = tsub.add_parser("status", help="a request's current state")
    _common(status)
    status.add_argument("request", help="the request id (64 hex digits)")
    status.set_defaults(func=cmd_status)

    run_ = tsub.add_parser("run", help="deliver the outbox whenever possible and print decisions as they come")
    _common(run_)
    run_.add_argument("--for", dest="duration", type=seconds, metavar="DURATION",
                      help="stop after this long (e.g. 8h; default: until Ctrl-C)")
    run_.add_argument("--retry", type=seconds, default=2.0, metavar="DURATION",
                      help="time between delivery attempts while offline (default 2s)")
    run_.add_argument("--console", type=hostport, metavar="HOST:PORT",
                      help="also serve the border officer's web console on this loopback address "
                           "(it prints the address to open, with its access token)")
    run_.set_defaults(func=cmd_run)


def _dir(p) -> None:
    p.add_argument("--dir", type=Path, default=Path(DEFAULT_DIR),
                   help=f"the terminal's directory (default $CUSTOS_TERMINAL_DIR or ./{DEFAULT_DIR})")


def _common(p) -> None:
    _dir(p)
    p.add_argument("--passphrase-file", type=Path, help="file with the terminal key's passphrase")
    p.add_argument("--json", action="store_true", help="JSON lines instead of text")
    add_node_args(p)  # given (or $CUSTOS_NODES), they override the nodes the terminal was set up with


def _client(args) -> TerminalClient:
    config = TerminalConfig.load(args.dir)
    key = load_key(config.key_file, args)
    return TerminalClient.from_config(config, key, urls=chosen_node_urls(args), warn=warn)


# --------------------------------------------------------------------------- init


def cmd_init(args: argparse.Namespace) -> int:
    key = load_key(args.key, args)
    urls = node_urls(args)
    chain_id = args.chain_id
    whoami = None
    genesis_hash = hash_arg(args.genesis_hash, "genesis hash") if args.genesis_hash else None

    async def ask() -> tuple[str, bytes, str, dict | None]:
        async with SignedClient(urls, key, chain_id=chain_id) as client:
            status = await client.node.status()  # the node's own chain id, even when --chain-id names one
            _, g = await client.node.request("GET", "/v1/genesis")
            try:
                node_hash = bytes.fromhex(g["hash"])
            except (KeyError, TypeError, ValueError):
                raise Unreachable(f"{client.node.current_url} does not serve its genesis hash") from None
            try:
                whoami = await client.get("/v1/access/whoami")
            except ProblemError:
                whoami = None
            return str(status["chain_id"]), node_hash, client.node.current_url, whoami

    try:
        node_chain, node_hash, url, whoami = run(ask())
    except Exception as exc:
        if chain_id is None:
            raise
        say(f"note: no node answered ({exc}); set up offline")
    else:
        # what was given is checked against the node asked: a terminal set up for another network
        # would have every request refused (or, with another genesis, trust nothing it is told)
        if chain_id is not None and node_chain != chain_id:
            raise InputError(f"--chain-id {chain_id}: the node at {url} serves chain {node_chain}")
        if genesis_hash is not None and node_hash != genesis_hash:
            raise InputError(f"--genesis-hash {genesis_hash.hex()}: the node at {url} runs genesis {node_hash.hex()}")
        if genesis_hash is None:
            say(f"pinned genesis {node_hash.hex()} of chain {node_chain}: compare it with your network's "
                "published genesis hash (or pass --genesis-hash)")
        chain_id, genesis_hash = node_chain, node_hash
    if whoami is not None and (whoami.get("role") != "terminal" or whoami.get("post") != args.post):
        say(f"warning: the chain knows this key as {whoami.get('role') or 'nothing'}"
            f"{' of post ' + str(whoami.get('post')) if whoami.get('post') else ''}, not as a terminal of "
            f"{args.post}; requests will be refused until the council registers it")
    config = TerminalConfig(args.dir, chain_id, args.post, args.key.resolve(), tuple(urls),
                            tuple(p.resolve() for p in args.card_key), genesis_hash, tuple(trusted()))
    config.save()
    say(f"terminal {key.public.hex()[:16]} of post {args.post} on chain {chain_id}; directory {args.dir}")
    return EXIT_OK


# --------------------------------------------------------------------------- cross


def cmd_cross(args: argparse.Namespace) -> int:
    from ledger.biometrics import BiometricError
    from node.client.cards import CardKeys, unlock_files

    config = TerminalConfig.load(args.dir)
    if not config.card_keys:
        raise InputError(f"the terminal in {args.dir} holds no card-opening key: "
                         "custos terminal init ... --card-key FILE")
    card_keys = CardKeys.from_signing_keys(load_key(path, args) for path in config.card_keys)
    try:
        unlocked = unlock_files(args.scan, args.card, card_keys, max_shift=args.max_shift)
    except BiometricError as exc:
        refuse(f"NO MATCH: the scan does not unlock this card ({exc}); rescan, or check the card")
        return EXIT_USAGE
    identity, biometric = unlocked.identity, unlocked.key
    companion = companion_arg(args.companion, unlocked.pseudonym_key)
    out = _printer(args.json)

    async def go() -> int:
        async with _client(args) as client:
            tx = client.make_request(biometric, identity, direction=args.direction,
                                     destination=args.destination.upper(), companion=companion)
            client.enqueue(tx)
            rid = tx.id.hex()
            out("queued", {"id": rid, "identity": identity.hex(), "direction": args.direction,
                           "destination": args.destination.upper()},
                f"request {rid} for child {identity.hex()} ({args.direction}) saved in the outbox")
            report = await client.deliver()
            for entry, rule, detail in report.refused:
                if entry.request_id == tx.id:
                    if args.json:
                        out("refused", {"id": rid, "rule": rule, "detail": detail}, "")
                    refuse(f"REFUSED by rule {rule}: {detail}")
                    return EXIT_USAGE
            if not any(sent.request_id == tx.id for sent, _ in report.acknowledged):
                out("offline", {"id": rid, "error": report.error, "waiting": report.left},
                    f"no node reachable: the request waits in the outbox ({report.left} waiting); it is sent "
                    "when a node answers (custos terminal run, or custos terminal queue --flush)")
                return EXIT_UNREACHABLE
            out("delivered", {"id": rid, "node": client.node.current_url}, f"delivered to {client.node.current_url}")
            client.release_outbox()  # the next child can be recorded while this one waits
            if args.wait <= 0:
                return EXIT_OK

            def update(kind: str, doc: dict) -> None:
                extra = ""
                if kind == "decision":
                    extra = f" (guardian {doc.get('guardian', '')[:16]} {doc.get('decision')}d)"
                out(kind, doc, describe(doc) + extra)

            last = await client.wait_decision(tx.id, timeout_s=args.wait, on_update=update)
            if last is None or last.get("status") not in FINAL:
                out("waiting", {"id": rid, "status": last.get("status") if last else "accepted"},
                    f"no final decision within {args.wait:.0f} s; follow it with: custos terminal status {rid}")
            return EXIT_OK

    return run(go())


def _printer(as_json: bool):
    def out(kind: str, doc: dict, text: str) -> None:
        if as_json:
            emit_json({"event": kind, **doc, "printed_ms": time.time_ns() // 1_000_000})
        else:
            say(f"[{time.strftime('%H:%M:%S')}] {text}")

    return out


# --------------------------------------------------------------------------- queue, status


def cmd_queue(args: argparse.Namespace) -> int:
    async def go() -> int:
        async with _client(args) as client:
            code = EXIT_OK
            if args.flush:
                def progress(report: Delivery) -> None:
                    if report.error and not args.json:
                        say(f"[{time.strftime('%H:%M:%S')}] {report.error}; {report.left} waiting")

                report = await client.deliver_until_empty(timeout_s=args.retry_for, on_round=progress)
                if not args.json:
                    say(f"delivered {len(report.acknowledged)}, refused {len(report.refused)}, "
                        f"waiting {report.left}")
                if report.left:
                    code = EXIT_UNREACHABLE
                else:
                    with contextlib.suppress(NodeUnreachable):
                        for sent, status in await client.reconcile():
                            if not args.json:
                                say(f"  {sent.request_id.hex()}  {status}")
            _show_queue(client, args.json)
            return code

    return run(go())


def _show_queue(client: TerminalClient, as_json: bool) -> None:
    q = client.queue
    waiting, sent, refused = q.waiting(), q.sent(), q.refused()
    if as_json:
        emit_json({"waiting": [{"id": e.request_id.hex(), "queued_ms": e.queued_ms, "attempts": e.attempts,
                                "last_error": e.last_error} for e in waiting],
                   "sent": [{"id": s.request_id.hex(), "queued_ms": s.queued_ms, "acked_ms": s.acked_ms,
                             "answer": s.answer, "node": s.node} for s in sent],
                   "refused": [{"id": r.request_id.hex(), "queued_ms": r.queued_ms, "rule": r.rule,
                                "detail": r.detail} for r in refused]})
        return
    say(f"outbox: {len(waiting)} waiting, {len(sent)} sent awaiting a decision, {len(refused)} refused")
    for e in waiting:
        say(f"  waiting  {e.request_id.hex()}  since {iso(e.queued_ms)}  attempts {e.attempts}"
            + (f"  ({e.last_error})" if e.last_error else ""))
    for s in sent:
        say(f"  sent     {s.request_id.hex()}  {s.answer} by {s.node} at {iso(s.acked_ms)}")
    for r in refused:
        say(f"  refused  {r.request_id.hex()}  rule {r.rule}: {r.detail}")


def cmd_status(args: argparse.Namespace) -> int:
    rid = hash_arg(args.request, "request id")

    async def go() -> int:
        async with _client(args) as client:
            doc = await client.status_or_none(rid)
            if doc is None:
                try:
                    tx = await client.node.tx(rid)
                    state = tx.get("status", "accepted")
                except ProblemError:
                    state = "unknown"
                if args.json:
                    emit_json({"id": rid.hex(), "status": state})
                else:
                    say(f"{rid.hex()}: not committed ({state})")
                return EXIT_OK
            if doc["status"] in FINAL:
                client.settle(rid)
            if args.json:
                emit_json(doc)
            else:
                say(f"{doc['id']}: {describe(doc)}")
                say(f"  child {doc['identity']}  post {doc['post']}  {doc['direction']} -> {doc['destination']}  "
                    f"event {iso(doc['event_time'])}  recorded at height {doc['height']}")
            return EXIT_OK

    return run(go())


# --------------------------------------------------------------------------- run


def cmd_run(args: argparse.Namespace) -> int:
    printer = _printer(args.json)
    consoles: list = []  # the web console, when --console serves one (node/web/console.py)

    def out(kind: str, doc: dict, text: str) -> None:
        printer(kind, doc, text)
        for console in consoles:
            console.publish(kind, doc)

    async def deliver_loop(client: TerminalClient, wake: asyncio.Event) -> None:
        while True:
            if client.queue.waiting(1):
                report = await client.deliver()
                for sent, _ in report.acknowledged:
                    out("delivered", {"id": sent.request_id.hex(), "node": sent.node},
                        f"delivered {sent.request_id.hex()} to {sent.node}")
                for entry, rule, detail in report.refused:
                    out("refused", {"id": entry.request_id.hex(), "rule": rule, "detail": detail},
                        f"REFUSED {entry.request_id.hex()}: rule {rule}: {detail}")
                if report.error:
                    out("offline", {"error": report.error, "waiting": report.left},
                        f"{report.error}; {report.left} waiting")
            wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(wake.wait(), args.retry)

    connected = False

    async def follow(client: TerminalClient, wake: asyncio.Event) -> None:
        def state(line: str) -> None:
            nonlocal connected
            connected = line.startswith("connected")
            if not args.json:
                say(f"[{time.strftime('%H:%M:%S')}] stream: {line}")
            for console in consoles:
                console.publish("stream", {"detail": line})
            wake.set()  # a node answers again: try the outbox now

        async for ev in client.events(on_state=state):
            if ev.type == "sync":
                with contextlib.suppress(NodeUnreachable, ProblemError):
                    for sent, status in await client.reconcile():
                        if status in FINAL:
                            out("closed", {"id": sent.request_id.hex(), "status": status},
                                f"{sent.request_id.hex()}: {status.upper()}")
                        elif status == "pending":  # it may have become pending while the stream was down
                            doc = await client.status_or_none(sent.request_id)
                            if doc is not None:
                                out("pending", {**doc, "replayed": True}, f"{doc['id'][:16]}: {describe(doc)}")
            elif ev.type in ("pending", "decision", "closed"):
                out(ev.type, ev.data, f"{ev.data.get('id', '')[:16]}: {describe(ev.data)}")

    async def go() -> int:
        async with _client(args) as client:
            counts = client.queue.counts()
            out("started", counts, f"terminal of post {client.post}: {counts['waiting']} waiting, "
                                   f"{counts['sent']} sent, {counts['refused']} refused")
            wake = asyncio.Event()
            if args.console:
                consoles.append(await _start_console(args, client, wake, out))
            tasks = [asyncio.create_task(deliver_loop(client, wake)), asyncio.create_task(follow(client, wake))]
            try:
                await asyncio.wait(tasks, timeout=args.duration, return_when=asyncio.FIRST_EXCEPTION)
            finally:
                for console in consoles:
                    await console.stop()
                for t in tasks:
                    t.cancel()
                for t in tasks:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await t
            for t in tasks:
                exc = t.exception() if t.done() and not t.cancelled() else None
                if exc is not None:
                    raise exc
            return EXIT_OK

    try:
        code = run(go())
    except KeyboardInterrupt:
        print("terminal stopped", file=sys.stderr)
        code = EXIT_OK
    if not connected:
        raise Unreachable("no node answered while the terminal ran; requests wait in the outbox")
    return code


async def _start_console(args: argparse.Namespace, client: TerminalClient, wake: asyncio.Event, out):
    """The officer's web console beside the terminal loop: the key stays in this process."""
    from node.client.cards import CardKeys
    from node.config import split_hostport
    from node.web.console import Console

    config = TerminalConfig.load(args.dir)
    card_keys = CardKeys.from_signing_keys(load_key(path, args) for path in config.card_keys)
    host, port = split_hostport(args.console)
    console = Console(client, card_keys, wake)
    try:
        url = await console.start(host, port)
    except (ValueError, OSError) as exc:
        raise InputError(f"cannot serve the console on {args.console}: {exc}") from None
    out("console", {"url": url}, f"officer console: open {url}")
    return console

