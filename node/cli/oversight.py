"""``custos oversight access-log --identity ID``: who read a child's records, proven.

For an oversight body (a data-protection authority the council registered) or one of the
child's guardians, with their key. Each node keeps its own access log, so every node named
(``--node`` repeated, ``--devnet DIR``) is asked, and every answer is checked
(node.access.verify): each entry's inclusion proof against the checkpoint of that node's log the
chain holds, that checkpoint proven in the chain by a receipt (anchored in ``--genesis``, or the
devnet's genesis), and no node holding a later checkpoint than the one used. ``--complete``
(oversight bodies only) downloads each node's whole log and rebuilds its tree, which also shows
that no entry about the child was left out.

Exit codes: 0 every answer checks out, 1 an answer does not (the finding is printed), 2 usage,
3 no node answers.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from ledger.genesis import Genesis
from ledger.privacy.tags import child_tag
from node.access.purpose import Purpose
from node.access.verify import (
    NodeReport,
    audit_whole_log,
    check_anchor_transaction,
    check_child_answer,
    compare_checkpoints,
)
from node.cli.common import EXIT_INVALID, EXIT_OK, Unreachable, add_passphrase_arg
from node.cli.options import InputError, add_node_args, emit_json, identity_arg, iso, load_key, node_urls, say
from node.client.http import NodeClient, NodeUnreachable, ProblemError
from node.client.signed import SignedClient
from node.genesis_file import load_genesis

MAX_PAGES = 1000  # entries per child per node at most 1000 x 1000


def register(sub) -> None:
    ov = sub.add_parser("oversight", help="oversight bodies and guardians: who read a child's records")
    osub = ov.add_subparsers(dest="oversight_command", metavar="ACTION")
    osub.required = True
    log = osub.add_parser("access-log", help="every read of a child's records on every node, with proofs")
    log.add_argument("--identity", required=True, help="the child's identity id (32 hex digits) or card file")
    log.add_argument("--key", type=Path, required=True, help="your oversight key file, or a guardian's")
    add_passphrase_arg(log)
    log.add_argument("--complete", action="store_true",
                     help="read each node's whole log and rebuild it: also proves nothing was left out "
                          "(oversight keys only)")
    log.add_argument("--genesis", type=Path, metavar="FILE",
                     help="anchor the checkpoints' proofs in this genesis (default: the devnet's, with --devnet)")
    log.add_argument("--json", action="store_true", help="one JSON document")
    add_node_args(log)
    log.set_defaults(func=cmd_access_log)


def _genesis(args) -> Genesis | None:
    if args.genesis is not None:
        return load_genesis(args.genesis)
    if args.devnet is not None and (Path(args.devnet) / "genesis.toml").exists():
        return load_genesis(Path(args.devnet) / "genesis.toml")
    return None


def cmd_access_log(args: argparse.Namespace) -> int:
    identity = identity_arg(args.identity)
    key = load_key(args.key, args)
    urls = node_urls(args)
    genesis = _genesis(args)
    reports = asyncio.run(_gather(urls, key, identity, genesis, complete=args.complete))
    if not any(r.reached for r in reports):
        raise Unreachable("; ".join(n for r in reports for n in r.failures))
    ok = all(r.ok for r in reports if r.reached)
    if args.json:
        emit_json({"identity": identity.hex(), "child_tag": child_tag(identity).hex(), "ok": ok,
                   "nodes": [_report_json(r) for r in reports]})
    else:
        _print(identity, reports)
    return EXIT_OK if ok else EXIT_INVALID


async def _gather(urls: list[str], key, identity: bytes, genesis: Genesis | None, *,
                  complete: bool) -> list[NodeReport]:
    async with NodeClient(urls) as plain:
        node_ids: dict[str, bytes] = {}
        for url in urls:
            try:
                node_ids[url] = bytes.fromhex(str((await plain.status_at(url))["node_id"]))
            except (NodeUnreachable, KeyError, ValueError):
                pass
        purpose = await _purpose(urls, key, list(node_ids))
        reports = []
        for url in urls:
            report = NodeReport(url, reached=url in node_ids)
            if not report.reached:
                report.failures.append(f"{url} does not answer")
                reports.append(report)
                continue
            seen = await _checkpoints_elsewhere(plain, urls, url, node_ids[url])
            await _read_log(report, url, key, identity, purpose)
            if report.node and report.node != node_ids[url]:
                report.failures.append("the answer names another node than the one asked")
            if report.node:
                compare_checkpoints(report, seen)
                await _prove_anchor(report, urls, genesis)
                if complete and report.ok:
                    await _complete(report, url, key, identity, purpose)
            reports.append(report)
    return reports


async def _purpose(urls: list[str], key, answering: list[str]) -> Purpose:
    """``oversight`` for an oversight key, ``guardian-review`` for a guardian's; a key of another
    role (an auditor's, an authority's) is refused here, in one line, as the nodes would refuse it."""
    async with SignedClient(answering or urls, key) as client:
        try:
            role = (await client.get("/v1/access/whoami")).get("role")
        except (ProblemError, NodeUnreachable):
            role = None
    if role not in (None, "oversight", "guardian"):
        raise InputError(f"key {key.public.hex()[:16]} is registered as {role}: a child's access log is read "
                         "with an oversight body's key or the key of one of the child's guardians")
    return Purpose("oversight" if role == "oversight" else "guardian-review")


async def _checkpoints_elsewhere(plain: NodeClient, urls: list[str], url: str, node: bytes) -> list:
    seen = []
    for other in urls:
        if other == url:
            continue
        try:
            _, doc = await plain.request("GET", f"/v1/access-log/checkpoints/{node.hex()}")
        except (ProblemError, NodeUnreachable):
            continue
        seen.append((other, int(doc["size"]), int(doc["height"])))
    return seen


async def _read_log(report: NodeReport, url: str, key, identity: bytes, purpose: Purpose) -> None:
    async with SignedClient(url, key, purpose=purpose) as client:
        after = -1
        for _ in range(MAX_PAGES):
            try:
                doc = await client.get("/v1/access-log", {"identity": identity.hex(), "after": after})
            except ProblemError as exc:
                report.failures.append(f"{url} refused: {exc.diagnostics()}")
                return
            except NodeUnreachable as exc:
                report.failures.append(f"{url} does not answer: {exc}")
                return
            check_child_answer(report, doc, identity)
            if doc.get("next") is None:
                return
            after = int(doc["next"])


async def _prove_anchor(report: NodeReport, urls: list[str], genesis: Genesis | None) -> None:
    """The checkpoint the answer used is in the chain: a receipt from another node if one answers."""
    from ledger.audit.receipt import verify_receipt
    from node.cli.audit import fetch_receipt

    if report.anchor is None:
        return
    order = [u for u in urls if u != report.url] + [report.url]
    for url in order:
        try:
            receipt = await fetch_receipt(url, report.anchor[3])
        except (NodeUnreachable, ProblemError, Unreachable):
            continue
        except Exception as exc:
            report.failures.append(f"{url} gave no receipt of the checkpoint: {exc}")
            return
        verdict = verify_receipt(receipt.to_json(), genesis=genesis)
        if not verdict.ok:
            report.failures.append(f"the checkpoint's receipt from {url} fails: {verdict.failure}")
            return
        check_anchor_transaction(report, receipt.tx)
        report.notes.append(f"checkpoint of {report.anchor[0]} entries proven in block {receipt.height} "
                            f"(receipt from {url}, anchored in {verdict.anchor})")
        return
    report.failures.append("no node gave a receipt of the checkpoint")


async def _complete(report: NodeReport, url: str, key, identity: bytes, purpose: Purpose) -> None:
    rows: list[tuple[int, bytes]] = []
    async with SignedClient(url, key, purpose=purpose) as client:
        while len(rows) < report.size:
            try:
                doc = await client.get("/v1/access-log/entries", {"from": len(rows)})
            except ProblemError as exc:
                report.failures.append(f"{url} refused the whole log: {exc.diagnostics()}")
                return
            page = [(int(e["index"]), bytes.fromhex(e["entry"])) for e in doc["entries"]]
            if not page:
                break
            rows.extend(page)
    audit_whole_log(report, rows[:report.size], identity)
    if report.ok:
        report.notes.append(f"the whole log ({report.size} entries) rebuilt: nothing about the child left out")


def _report_json(r: NodeReport) -> dict:
    return {
        "url": r.url, "node": r.node.hex(), "ok": r.ok, "size": r.size,
        "anchor": None if r.anchor is None else {"size": r.anchor[0], "root": r.anchor[1].hex(),
                                                 "height": r.anchor[2], "tx": r.anchor[3].hex()},
        "failures": r.failures, "notes": r.notes,
        "entries": [{"index": x.index, "anchored": x.anchored, "time": x.entry.time, "reader": x.entry.reader.hex(),
                     "role": x.entry.role, "kind": x.entry.kind,
                     "record": x.entry.record.hex() if x.entry.record else None,
                     "purpose": x.entry.purpose, "ref": x.entry.ref.hex() if x.entry.ref else None}
                    for x in r.reads],
    }


def _print(identity: bytes, reports: list[NodeReport]) -> None:
    say(f"reads of child {identity.hex()} (tag {child_tag(identity).hex()[:16]}...)")
    rows = sorted(((x.entry.time, r, x) for r in reports for x in r.reads), key=lambda t: (t[0], t[1].url, t[2].index))
    for _, r, x in rows:
        e = x.entry
        ref = f" ref {e.ref.hex()[:16]}..." if e.ref else ""
        record = f" {e.record.hex()[:16]}" if e.record else ""
        say(f"  {iso(e.time)}  node {r.node.hex()[:12]}  {e.role:<19} {e.reader.hex()[:16]}  {e.kind}{record}  "
            f"purpose {e.purpose}{ref}{'' if x.anchored else '  (not yet on chain)'}")
    for r in reports:
        state = "ok" if r.ok else "NOT VERIFIED"
        say(f"node {r.url}: {state}, {len(r.reads)} entries about the child, log of {r.size}, "
            f"{r.anchored_size} on chain")
        for note in r.notes:
            say(f"  {note}")
        for failure in r.failures:
            print(f"  FAILED: {failure}", file=sys.stderr)
