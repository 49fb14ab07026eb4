"""``custos guardian …``: a parent's or legal guardian's commands.

* ``watch``: alerts for your wards' crossings the moment they wait for you (a signed
  subscription: nobody else can watch your child)
* ``pending``, ``show REQUEST_ID``, ``wards``, ``history CHILD``: signed reads
* ``approve REQUEST_ID`` / ``deny REQUEST_ID --reason``: shows the child, post, direction,
  companion and time first, and asks for confirmation unless ``--yes``
* ``consent``: a time-boxed travel consent given in advance (``--out`` + ``cosign`` when the
  policy needs more guardians than are at this keyboard); ``revoke CONSENT_ID`` withdraws it
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from ledger.tx.bodies import APPROVE, DENY, DENY_REASONS
from node.cli.common import EXIT_OK, EXIT_USAGE, Unreachable
from node.cli.options import (
    InputError,
    add_node_args,
    companion_arg,
    confirm,
    cosign,
    country,
    duration,
    emit_json,
    hash_arg,
    identity_arg,
    iso,
    load_key,
    load_keys,
    node_urls,
    parse_time,
    read_partial,
    refuse,
    run,
    say,
    seconds,
    warn,
    write_partial,
)
from node.client.guardian import GuardianClient, describe_request
from node.client.http import NodeClient, ProblemError
from node.client.wards import read_ward


def register(sub) -> None:
    g = sub.add_parser("guardian", help="guardian: watch your wards' crossings, approve or deny, consents")
    gsub = g.add_subparsers(dest="guardian_command", metavar="ACTION")
    gsub.required = True

    watch = gsub.add_parser("watch", help="print alerts for your wards as they happen")
    _common(watch)
    watch.add_argument("--heartbeat", type=duration, default=15_000, metavar="DURATION",
                       help="keep-alive interval of the stream (default 15s)")
    watch.add_argument("--for", dest="duration", type=seconds, metavar="DURATION",
                       help="stop after this long (e.g. 10m; default: until Ctrl-C)")
    watch.add_argument("--count", type=int, help="stop after this many pending alerts")
    watch.set_defaults(func=cmd_watch)

    pending = gsub.add_parser("pending", help="crossings waiting for your decision")
    _common(pending)
    pending.set_defaults(func=cmd_pending)

    show = gsub.add_parser("show", help="one crossing request")
    _common(show)
    show.add_argument("request")
    show.set_defaults(func=cmd_show)

    wards = gsub.add_parser("wards", help="the children you are a guardian of")
    _common(wards)
    wards.set_defaults(func=cmd_wards)

    history = gsub.add_parser("history", help="a ward's recent crossings")
    _common(history)
    history.add_argument("child", help="identity id or card file")
    history.set_defaults(func=cmd_history)

    for name, decision in (("approve", APPROVE), ("deny", DENY)):
        p = gsub.add_parser(name, help=f"{name} a pending crossing")
        _common(p)
        p.add_argument("request", help="the request id (64 hex digits)")
        p.add_argument("--reason", default="unspecified", choices=DENY_REASONS,
                       help="why, as one of the chain's codes (no free text goes on the chain)")
        p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
        p.set_defaults(func=cmd_decide, decision=decision)

    consent = gsub.add_parser("consent", help="give a travel consent in advance")
    consent.add_argument("--key", type=Path, action="append", required=True,
                         help="a guardian's key file (repeat when several guardians sign here)")
    consent.add_argument("--passphrase-file", type=Path)
    consent.add_argument("--json", action="store_true")
    add_node_args(consent)
    consent.add_argument("--child", required=True, help="identity id or card file")
    consent.add_argument("--from", dest="not_before", default="now",
                         help="start (ISO 8601, now, +1d; a past time as --from=-1h)")
    consent.add_argument("--until", dest="not_after", required=True, help="end (ISO 8601 or +14d)")
    consent.add_argument("--direction", choices=("exit", "entry", "any"), default="any")
    consent.add_argument("--destination", type=country, help="only to this country (default: any)")
    consent.add_argument("--companion", metavar="DOCUMENT",
                         help="only with the adult holding this document (issuing country first, e.g. "
                              "'MDA AB123456'; needs --ward; the chain holds only a keyed tag)")
    consent.add_argument("--ward", type=Path, help="the child's ward file (from the enrolment authority)")
    consent.add_argument("--uses", type=int, default=1, help="how many crossings it covers (default 1)")
    consent.add_argument("--out", type=Path, help="write it for the other guardians to co-sign instead of submitting")
    consent.set_defaults(func=cmd_consent)

    co = gsub.add_parser("cosign", help="co-sign a consent another guardian prepared")
    _common(co)
    co.add_argument("file", type=Path)
    co.add_argument("--submit", action="store_true", help="submit it after signing")
    co.set_defaults(func=cmd_cosign)

    revoke = gsub.add_parser("revoke", help="withdraw a travel consent")
    _common(revoke)
    revoke.add_argument("consent", help="the consent id (64 hex digits)")
    revoke.set_defaults(func=cmd_revoke)


def _common(p) -> None:
    p.add_argument("--key", type=Path, required=True, help="your (encrypted) guardian key file")
    p.add_argument("--passphrase-file", type=Path)
    p.add_argument("--json", action="store_true", help="JSON lines instead of text")
    add_node_args(p)


def _client(args) -> GuardianClient:
    return GuardianClient(node_urls(args), load_key(args.key, args), warn=warn)


def _now() -> int:
    return time.time_ns() // 1_000_000


# --------------------------------------------------------------------------- watch


def cmd_watch(args: argparse.Namespace) -> int:
    """Exit 0 when the watch ends (--for, --count, Ctrl-C) connected to a node, 3 when it ends
    with no node answering: a guardian must not take silence for "nothing happened"."""
    client = _client(args)
    connected = False

    def state(line: str) -> None:
        nonlocal connected
        connected = line.startswith("connected")
        if args.json:
            emit_json({"event": "stream", "detail": line, "printed_ms": _now()})
        else:
            print(f"[{time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)

    async def watch() -> None:
        alerts = 0
        async for ev in client.watch(heartbeat_ms=args.heartbeat, on_state=state):
            if args.json:
                emit_json({"event": ev.type, "cursor": ev.id, **ev.data, "received_ms": ev.received_ms,
                           "printed_ms": _now()})
            else:
                _print_event(ev.type, ev.data)
            if ev.type == "pending":
                alerts += 1
                if args.count is not None and alerts >= args.count:
                    return

    async def go() -> int:
        async with client:
            try:
                await asyncio.wait_for(watch(), args.duration)
            except TimeoutError:
                pass
        return EXIT_OK

    try:
        code = run(go())
    except KeyboardInterrupt:
        code = EXIT_OK
    if not connected:
        raise Unreachable(f"no node answered the watch ({', '.join(node_urls(args))}): alerts may have been missed")
    return code


def _print_event(kind: str, doc: dict) -> None:
    stamp = time.strftime("%H:%M:%S")
    if kind == "sync":
        if not doc.get("complete", True):
            say(f"[{stamp}] reconnected after a gap: the pending requests above are current")
        return
    rid = doc.get("id", "")
    if kind == "pending":
        say(f"[{stamp}] ALERT: a crossing of your ward waits for your decision"
            + (" (already pending when you connected)" if doc.get("replayed") else ""))
        for line in describe_request(doc):
            say("    " + line)
        say(f"    approve: custos guardian approve {rid}")
        say(f"    deny:    custos guardian deny {rid} --reason {{{','.join(DENY_REASONS)}}}")
    elif kind == "decision":
        say(f"[{stamp}] {rid[:16]}: guardian {doc.get('guardian', '')[:16]} {doc.get('decision')}d; "
            f"{len(doc.get('approvals', []))} of {doc.get('approvals_needed')} approvals, still pending")
    elif kind == "closed":
        say(f"[{stamp}] {rid[:16]}: {doc.get('status', '').upper()}  (child {doc.get('identity', '')}, "
            f"post {doc.get('post', '')}, {doc.get('direction', '')})")


# --------------------------------------------------------------------------- reads


def cmd_pending(args: argparse.Namespace) -> int:
    async def go() -> list[dict]:
        async with _client(args) as client:
            return await client.pending()

    docs = run(go())
    if args.json:
        emit_json({"pending": docs})
    elif not docs:
        say("nothing waits for your decision")
    for doc in [] if args.json else docs:
        for line in describe_request(doc):
            say(line)
        say("")
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    rid = hash_arg(args.request, "request id")

    async def go() -> dict:
        async with _client(args) as client:
            return await client.request(rid)

    doc = run(go())
    if args.json:
        emit_json(doc)
    else:
        for line in describe_request(doc):
            say(line)
    return EXIT_OK


def cmd_wards(args: argparse.Namespace) -> int:
    async def go() -> dict:
        async with _client(args) as client:
            return await client.whoami()

    doc = run(go())
    if args.json:
        emit_json(doc)
    else:
        say(f"key {doc['key']}: guardian of {len(doc['wards'])} child(ren)")
        for w in doc["wards"]:
            say(f"  {w}")
    return EXIT_OK


def cmd_history(args: argparse.Namespace) -> int:
    identity = identity_arg(args.child)

    async def go() -> list[dict]:
        async with _client(args) as client:
            return await client.history(identity)

    docs = run(go())
    if args.json:
        emit_json({"requests": docs})
    for r in [] if args.json else docs:
        say(f"{iso(r['event_time'])}  {r['post']:<10} {r['direction']:<5} {r['status']:<9} {r['id']}")
    return EXIT_OK


# --------------------------------------------------------------------------- decisions


def cmd_decide(args: argparse.Namespace) -> int:
    rid = hash_arg(args.request, "request id")
    verb = "approve" if args.decision == APPROVE else "deny"

    async def go() -> int:
        async with _client(args) as client:
            doc = await client.request(rid)
            if not args.json:
                for line in describe_request(doc):
                    say(line)
            if doc["status"] != "pending":
                say(f"nothing to decide: the request is {doc['status']}")
                return EXIT_USAGE
            if not confirm(f"{verb.capitalize()} this crossing?", args.yes):
                say("nothing done")
                return EXIT_OK
            try:
                result = await client.decide(doc, args.decision, args.reason)
            except ProblemError as exc:
                refuse(f"refused: {exc.diagnostics()}")
                return EXIT_USAGE
            if args.json:
                emit_json(result)
            else:
                after = await client.request(rid)
                say(f"{verb}d at height {result.get('height')}; the crossing is now {after['status'].upper()}"
                    + (f" ({len(after['approvals'])} of {after['approvals_needed']} approvals)"
                       if after["status"] == "pending" else ""))
            return EXIT_OK

    return run(go())


# --------------------------------------------------------------------------- consents


def cmd_consent(args: argparse.Namespace) -> int:
    keys = load_keys(args.key, args)
    identity = identity_arg(args.child)
    now = _now()
    not_before, not_after = parse_time(args.not_before, now), parse_time(args.not_after, now)
    companion = None
    if args.companion:
        if args.ward is None:
            raise InputError("--companion needs the child's ward file (--ward): its key makes the companion's tag")
        ward_identity, pseudonym_key = read_ward(args.ward)
        if ward_identity != identity:
            raise InputError(f"{args.ward} is the ward file of another child")
        companion = companion_arg(args.companion, pseudonym_key)

    async def go() -> int:
        async with GuardianClient(node_urls(args), keys[0]) as client:
            tx = await client.consent_tx(identity, not_before=not_before, not_after=not_after,
                                         direction=args.direction,
                                         destination=args.destination.upper() if args.destination else None,
                                         companion=companion, uses=args.uses,
                                         co_signers=keys[1:])
            summary = (f"consent {tx.id.hex()}: child {identity.hex()}, {args.direction}"
                       f"{' to ' + args.destination.upper() if args.destination else ''}, "
                       f"{iso(not_before)} .. {iso(not_after)}, {args.uses} use(s)"
                       f"{', with companion ' + args.companion if args.companion else ''}")
            if args.out is not None:
                write_partial(args.out, tx, await client.signed.chain_id())
                say(f"{summary}\nsigned by {len(tx.signers)}; written to {args.out} for the other guardian(s): "
                    f"custos guardian cosign {args.out} --submit --key ...")
                return EXIT_OK
            try:
                result = await client.submit(tx)
            except ProblemError as exc:
                hint = "; the policy needs more guardians: use --out FILE and `custos guardian cosign FILE`" \
                    if exc.rule == "missing-signature" else ""
                refuse(f"refused: {exc.diagnostics()}{hint}")
                return EXIT_USAGE
            if args.json:
                emit_json({**result, "consent": tx.id.hex()})
            else:
                say(f"{summary}\ngiven at height {result.get('height')}")
            return EXIT_OK

    return run(go())


def cmd_cosign(args: argparse.Namespace) -> int:
    key = load_key(args.key, args)
    tx, chain_id = read_partial(args.file)
    tx = cosign(tx, [key], chain_id)
    write_partial(args.file, tx, chain_id)
    say(f"{tx.kind} {tx.id.hex()} now signed by {len(tx.signers)}")
    if not args.submit:
        return EXIT_OK

    async def go() -> int:
        async with NodeClient(node_urls(args)) as c:
            try:
                result = await c.submit(tx.raw, wait=True)
            except ProblemError as exc:
                refuse(f"refused: {exc.diagnostics()}")
                return EXIT_USAGE
        say(f"{tx.kind} {tx.id.hex()} {result['status']} at height {result.get('height')}")
        return EXIT_OK

    return run(go())


def cmd_revoke(args: argparse.Namespace) -> int:
    cid = hash_arg(args.consent, "consent id")

    async def go() -> int:
        async with _client(args) as client:
            try:
                result = await client.revoke(cid)
            except ProblemError as exc:
                refuse(f"refused: {exc.diagnostics()}")
                return EXIT_USAGE
        if args.json:
            emit_json(result)
        else:
            say(f"consent {cid.hex()} revoked at height {result.get('height')}")
        return EXIT_OK

    return run(go())
