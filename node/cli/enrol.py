"""``custos enrol …``: the enrolment authority's tools.

* ``child``: enrol a child from eye scans; writes the child's card (sealed to a card-opening
  key), the guardians' ward file (identity id, pseudonym key), and adds the child to the
  authority's gallery (encrypted at rest)
* ``update-guardians``: record a court order changing guardians or the approval policy
* ``reenrol``: a fresh biometric commitment for an enrolled child (a lost card, a grown eye);
  writes a new card, keeps the child's pseudonym key
* ``identify``: 1:N: which enrolled child does this scan belong to (the gallery, no node needed)
* ``show``: a child's record; ``alerts``: denied and expired attempts, by post and time

The biometric code (numpy) is imported only by the commands that scan. The gallery and its
key are described in :mod:`node.client.gallery_file`.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from node.cli.common import EXIT_OK, EXIT_USAGE
from node.cli.options import (
    InputError,
    add_node_args,
    add_purpose_args,
    duration,
    emit_json,
    identity_arg,
    identity_hex,
    iso,
    iso_day,
    load_key,
    max_shift_arg,
    new_file,
    node_urls,
    order_arg,
    parse_day,
    parse_time,
    public_key_arg,
    purpose_arg,
    refuse,
    run,
    say,
)
from node.client.http import ProblemError
from node.client.signed import SignedClient
from node.client.txs import TxFactory
from node.client.wards import write_ward


def register(sub) -> None:
    enrol = sub.add_parser("enrol", help="enrolment authority: enrol children, court orders, alerts")
    esub = enrol.add_subparsers(dest="enrol_command", metavar="ACTION")
    esub.required = True

    child = esub.add_parser("child", help="enrol a child with guardians and an approval policy")
    _common(child)
    _biometric(child)
    child.add_argument("--card-out", type=Path, required=True, help="where to write the child's card")
    child.add_argument("--ward-out", type=Path,
                       help="where to write the guardians' ward file (default: the card's name + .ward)")
    child.add_argument("--majority-date", required=True,
                       help="the day the child comes of age (ISO date; only the day goes on the chain)")
    child.add_argument("--identity", type=identity_hex, help="a chosen identity id (32 hex digits; default random)")
    _policy(child)
    child.set_defaults(func=cmd_child)

    upd = esub.add_parser("update-guardians", help="record a court order: new guardians or policy")
    _common(upd)
    upd.add_argument("--child", required=True, help="identity id or card file")
    upd.add_argument("--order-ref", required=True,
                     help="the court order's reference: only a salted hash goes on the chain")
    _policy(upd)
    upd.set_defaults(func=cmd_update)

    ren = esub.add_parser("reenrol", help="replace a child's biometric commitment with a fresh one")
    _common(ren)
    ren.add_argument("--child", required=True, help="identity id or card file")
    _biometric(ren)
    ren.add_argument("--card-out", type=Path, required=True, help="where to write the new card")
    ren.set_defaults(func=cmd_reenrol)

    ident = esub.add_parser("identify", help="find the enrolled child a scan belongs to (1:N, rotation search)")
    ident.add_argument("--key", type=Path, required=True, help="the enrolment authority's key file")
    ident.add_argument("--passphrase-file", type=Path, help="file with the key file's passphrase")
    ident.add_argument("--json", action="store_true", help="machine-readable output")
    ident.add_argument("--scan", type=Path, required=True, help="a scan of the child's eye")
    _gallery(ident)
    ident.set_defaults(func=cmd_identify)

    show = esub.add_parser("show", help="a child's record, consents and recent crossings")
    _common(show)
    add_purpose_args(show, "case-work")
    show.add_argument("child", help="identity id or card file")
    show.set_defaults(func=cmd_show)

    alerts = esub.add_parser("alerts", help="denied and expired crossing attempts")
    _common(alerts)
    add_purpose_args(alerts, "alert-follow-up")
    alerts.add_argument("--post", help="only this border post")
    alerts.add_argument("--since", metavar="TIME",
                        help="from this time (ISO 8601, now, or relative; a past time as --since=-24h)")
    alerts.add_argument("--until", metavar="TIME", help="up to this time (as --since; --until=-1h)")
    alerts.add_argument("--limit", type=int, default=100)
    alerts.set_defaults(func=cmd_alerts)


def _common(p) -> None:
    p.add_argument("--key", type=Path, required=True, help="the enrolment authority's key file")
    p.add_argument("--passphrase-file", type=Path, help="file with the key file's passphrase")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_node_args(p)


def _gallery(p) -> None:
    p.add_argument("--gallery", type=Path, default=os.environ.get("CUSTOS_GALLERY"),
                   help="the authority's gallery file (default $CUSTOS_GALLERY)")
    p.add_argument("--max-shift", type=max_shift_arg, default=8,
                   help="angular positions searched each way, 0..63 (default 8)")


def _biometric(p) -> None:
    p.add_argument("--template", type=Path, action="append", required=True,
                   help="an enrolment scan file (custos-scan/1 or open-iris); repeat for each capture "
                        "(three recommended)")
    p.add_argument("--card-key", type=Path, required=True,
                   help="the card-opening key file (or its public key in hex) the card is sealed to")
    _gallery(p)


def _policy(p) -> None:
    p.add_argument("--guardian", action="append", required=True, metavar="KEY",
                   help="a guardian's public key (hex or key file); repeat for each")
    p.add_argument("--approvals", type=int, required=True, help="guardian approvals a crossing needs")
    p.add_argument("--deadline", type=duration, default="24h", metavar="DURATION",
                   help="time the guardians have to decide, with its unit (e.g. 90m, 24h; default 24h)")
    veto = p.add_mutually_exclusive_group()
    veto.add_argument("--veto", dest="veto", action="store_true", default=True,
                      help="any guardian's denial denies the crossing (default)")
    veto.add_argument("--no-veto", dest="veto", action="store_false",
                      help="a denial denies only when the approvals can no longer be reached")


async def _submit(client: SignedClient, raw: bytes) -> dict:
    return await client.node.submit(raw, wait=True)


def _enrolment(args: argparse.Namespace):
    """(authority key, gallery, the enrolled eye, card-opening public key) for child/reenrol."""
    from ledger.biometrics import BiometricError
    from node.client.cards import card_public_key, enrol_scans, read_scan
    from node.client.gallery_file import GalleryFile

    card_key = public_key_arg(str(args.card_key))
    card_public_key(card_key)  # 32 bytes that are no public key are refused now, not when the card is sealed
    authority = load_key(args.key, args)
    gallery = GalleryFile.open(_gallery_path(args), authority)
    scans = [read_scan(path) for path in args.template]
    try:
        enrolled = enrol_scans(scans, max_shift=args.max_shift)
    except BiometricError as exc:
        raise InputError(f"the scans cannot be enrolled: {exc}") from None
    return authority, gallery, enrolled, card_key


def _pending(card_out: Path) -> Path:
    """Where the card waits while its transaction is sent; one left there by an earlier run may be
    the only card of an enrolled child, so it is never overwritten."""
    pending = card_out.with_name(card_out.name + ".pending")
    if pending.exists() or pending.is_symlink():
        raise InputError(f"{pending} exists (the card of an earlier enrolment that may have reached the chain): "
                         "check it with `custos enrol show`, then move it away")
    return pending


def _gallery_path(args: argparse.Namespace) -> Path:
    if args.gallery is None:
        raise InputError("name the authority's gallery file with --gallery FILE (or $CUSTOS_GALLERY)")
    return Path(args.gallery)


def cmd_child(args: argparse.Namespace) -> int:
    from node.client.cards import new_pseudonym_key, write_card

    # every file this enrolment writes, checked before anything is sent: a child enrolled on the
    # chain without its card, or another child's card overwritten, cannot be undone
    new_file(args.card_out, "--card-out")
    ward_out = new_file(args.ward_out or args.card_out.with_name(args.card_out.name + ".ward"),
                        "--ward-out" if args.ward_out else "--card-out (its .ward file)")
    pending = _pending(args.card_out)
    if ward_out.resolve() in (args.card_out.resolve(), pending.resolve()):
        raise InputError(f"--ward-out {ward_out} is where the card goes: name another file")
    authority, gallery, enrolled, card_key = _enrolment(args)
    helper, biometric = enrolled.helper_bytes, enrolled.key
    pseudonym_key = new_pseudonym_key()
    identity = args.identity or os.urandom(16)
    guardians = [public_key_arg(g) for g in args.guardian]
    majority = parse_day(args.majority_date)

    async def go() -> dict:
        async with SignedClient(node_urls(args), authority) as client:
            tx = TxFactory(await client.chain_id()).enrol(
                authority, biometric, identity, majority_day=majority, guardians=guardians,
                approvals=args.approvals, deadline_ms=args.deadline, veto=args.veto)
            # the card first (atomically, beside its final name): a crash after the commit
            # must not leave an enrolled child without the card that unlocks its key
            write_card(pending, identity, helper, pseudonym_key, card_key)
            try:
                write_ward(ward_out, identity, pseudonym_key)
            except BaseException:
                pending.unlink(missing_ok=True)  # nothing was sent: the card made above is unneeded
                raise
            try:
                result = await _submit(client, tx.raw)
            except ProblemError:
                pending.unlink(missing_ok=True)  # refused: nothing was enrolled; both files are
                ward_out.unlink(missing_ok=True)  # this run's (checked absent before it began)
                raise
            except BaseException:
                say(f"the enrolment may or may not have reached the chain: the card is kept as {pending}; "
                    f"check with `custos enrol show {identity.hex()}` and rename it if the child is enrolled")
                raise
            gallery.add(identity, enrolled, pseudonym_key)
            pending.replace(args.card_out)
            return {"identity": identity.hex(), "commitment": biometric.public.hex(), "tx": tx.id.hex(),
                    "status": result.get("status"), "height": result.get("height"), "card": str(args.card_out),
                    "ward": str(ward_out)}

    try:
        doc = run(go())
    except ProblemError as exc:
        refuse(f"enrolment refused: {exc.diagnostics()}")
        return EXIT_USAGE
    if args.json:
        emit_json(doc)
    else:
        where = f"at height {doc['height']}" if doc["status"] == "committed" else "(accepted, not yet committed)"
        say(f"enrolled child {doc['identity']} {where}; card written to {doc['card']}, "
            f"the guardians' ward file to {doc['ward']}")
    return EXIT_OK


def cmd_update(args: argparse.Namespace) -> int:
    authority = load_key(args.key, args)
    identity = identity_arg(args.child)
    guardians = [public_key_arg(g) for g in args.guardian]
    order, salt = order_arg(args.order_ref)

    async def go() -> dict:
        async with SignedClient(node_urls(args), authority) as client:
            tx = TxFactory(await client.chain_id()).update_guardians(
                authority, identity, guardians=guardians, approvals=args.approvals,
                deadline_ms=args.deadline, veto=args.veto, order=order)
            return {**await _submit(client, tx.raw), "order_hash": order.hex(), "order_salt": salt.hex()}

    try:
        result = run(go())
    except ProblemError as exc:
        refuse(f"refused: {exc.diagnostics()}")
        return EXIT_USAGE
    if args.json:
        emit_json(result)
    else:
        say(f"guardianship of {identity.hex()} updated at height {result.get('height')}; the chain holds only "
            f"the order's hash {order.hex()[:16]}...: keep its salt {salt.hex()} with the order's file")
    return EXIT_OK


def cmd_reenrol(args: argparse.Namespace) -> int:
    from node.client.cards import new_pseudonym_key, write_card

    identity = identity_arg(args.child)
    if args.card_out.name in ("", ".", "..") or args.card_out.is_dir():
        raise InputError(f"--card-out {args.card_out}: name a file, not a directory")
    if not args.card_out.parent.is_dir():
        raise InputError(f"--card-out {args.card_out}: {args.card_out.parent} is not a directory")
    pending = _pending(args.card_out)
    authority, gallery, enrolled, card_key = _enrolment(args)
    helper, biometric = enrolled.helper_bytes, enrolled.key
    pseudonym_key = gallery.gallery.pseudonym_key(identity)
    if pseudonym_key is None:
        say(f"note: {identity.hex()} is not in the gallery {gallery.path}; the child gets a new pseudonym key")
        pseudonym_key = new_pseudonym_key()

    async def go() -> dict:
        async with SignedClient(node_urls(args), authority) as client:
            tx = TxFactory(await client.chain_id()).reenrol(authority, biometric, identity)
            write_card(pending, identity, helper, pseudonym_key, card_key)
            try:
                result = await _submit(client, tx.raw)
            except ProblemError:
                pending.unlink(missing_ok=True)
                raise
            gallery.add(identity, enrolled, pseudonym_key)
            pending.replace(args.card_out)
            return result

    try:
        result = run(go())
    except ProblemError as exc:
        refuse(f"refused: {exc.diagnostics()}")
        return EXIT_USAGE
    say(f"re-enrolled {identity.hex()} at height {result.get('height')}; new card {args.card_out} "
        "(the old card no longer works)")
    return EXIT_OK


def cmd_identify(args: argparse.Namespace) -> int:
    from ledger.biometrics import BiometricError
    from node.client.cards import read_scan
    from node.client.gallery_file import GalleryFile

    authority = load_key(args.key, args)
    gallery = GalleryFile.open(_gallery_path(args), authority, create=False)
    code, mask = read_scan(args.scan)
    try:
        found = gallery.gallery.match(code, mask, max_shift=args.max_shift)
    except BiometricError as exc:
        raise InputError(f"the scan cannot be searched: {exc}") from None
    doc = {"identity": found.identity_id.hex() if found else None, "searched": len(gallery.gallery),
           "shift": found.shift if found else None, "distance": round(found.distance, 4) if found else None}
    if args.json:
        emit_json(doc)
    elif found is None:
        say(f"no enrolled child matches this scan ({doc['searched']} enrolments searched, shifts up to "
            f"+-{args.max_shift})")
    else:
        say(f"enrolled child {doc['identity']} (scan turned {found.shift:+d} positions, normalised distance "
            f"{found.distance:.3f}; {doc['searched']} enrolments searched)")
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    authority = load_key(args.key, args)
    identity = identity_arg(args.child)

    async def go() -> tuple[dict, dict]:
        async with SignedClient(node_urls(args), authority, purpose=purpose_arg(args, authority)) as client:
            record = await client.get(f"/v1/identities/{identity.hex()}")
            history = await client.get(f"/v1/identities/{identity.hex()}/requests", {"limit": 20})
            return record, history

    record, history = run(go())
    if args.json:
        emit_json({**record, "requests": history["requests"]})
        return EXIT_OK
    policy = record["policy"]
    say(f"child {record['id']}  (version {record['version']}, enrolled at height {record['enrolled_height']})")
    say(f"  majority day   {iso_day(record['majority_day'])}")
    say(f"  guardians      {', '.join(g[:16] for g in record['guardians'])}")
    say(f"  policy         {policy['approvals']} approval(s) within {policy['deadline'] // 1000} s"
        f"{', any denial vetoes' if policy['veto'] else ''}")
    for c in record["consents"]:
        say(f"  consent        {c['id'][:16]} {c['direction']} {iso(c['not_before'])} .. {iso(c['not_after'])}, "
            f"{c['uses_left']} use(s) left")
    for r in history["requests"]:
        say(f"  {iso(r['event_time'])}  {r['post']:<10} {r['direction']:<5} {r['status']:<9} {r['id'][:16]}")
    return EXIT_OK


def cmd_alerts(args: argparse.Namespace) -> int:
    authority = load_key(args.key, args)
    params = {"post": args.post, "limit": args.limit,
              "since": parse_time(args.since) if args.since else None,
              "until": parse_time(args.until) if args.until else None}

    async def go() -> dict:
        async with SignedClient(node_urls(args), authority, purpose=purpose_arg(args, authority)) as client:
            return await client.get("/v1/alerts", params)

    doc = run(go())
    if args.json:
        emit_json(doc)
        return EXIT_OK
    if not doc["alerts"]:
        say("no alerts")
    for a in doc["alerts"]:
        say(f"{iso(a['time'])}  {a['kind'].upper():<8} post {a['post']:<10} {a['direction']:<5} "
            f"child {a['identity']}  request {a['request'][:16]}  (event {iso(a['event_time'])})")
    if doc.get("next"):
        say(f"... more: the list was cut at {args.limit}")
    return EXIT_OK
