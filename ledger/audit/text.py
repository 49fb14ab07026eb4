"""What an audit says to a person when it ends (its progress bar: :mod:`node.audit.progress`)."""

from __future__ import annotations

from ledger.audit.findings import AuditReport, show
from ledger.audit.receipt import ReceiptVerdict


def _short(value: object, width: int = 80) -> str:
    text = str(show(value))
    return text if len(text) <= width else text[: width - 1] + "…"


def summary(report: AuditReport) -> str:
    """The report for a person: what was audited, against which anchor, and the verdict."""
    c = report.counts
    lines = [f"Custos audit ({report.mode}) of {report.source}"]
    if report.genesis_hash is not None:
        pin = ("pinned with --genesis" if report.genesis_pinned else
               "NOT PINNED: compare this hash with the published genesis (or pass --genesis FILE)")
        lines += [f"  trust anchor : genesis {report.genesis_hash.hex()}",
                  f"                 chain {report.chain_id}, {pin}"]
    if report.checkpoint_in is not None:
        cp = report.checkpoint_in
        lines.append(f"  checkpoint   : height {cp['height']}, header {cp['header_hash']}, log size {cp['log_size']}")
    if report.target_height is not None:
        lines.append(f"  blocks       : {report.start_height:,}..{report.target_height:,} "
                     f"({c.blocks:,} re-executed, {c.txs:,} transactions)")
    lines.append(f"  signatures   : {c.tx_signatures:,} transaction, {c.commit_signatures:,} precommit "
                 f"({c.commits:,} certificates + {c.carried_commits:,} carried in blocks)")
    if c.store_entries:
        lines.append(f"  store        : {c.store_entries:,} index, log and state records compared with re-execution")
    for e in report.erasures:
        order = "end of the retention period" if e.order == bytes(32) else f"order {e.order.hex()[:16]}..."
        lines.append(f"  erasure      : height {e.height:,}, child {e.child.hex()[:16]}..., {order}, basis {e.basis}")
    if c.erased_txs:
        lines.append(f"  erased       : {c.erased_txs:,} transaction(s) kept as stubs (see 'not checked')")
    rate = c.txs / report.seconds if report.seconds > 0 else 0.0
    lines.append(f"  time         : {report.seconds:.2f} s ({rate:,.0f} tx/s) with {report.jobs} process(es)")
    reasons: dict[str, list[str]] = {}
    for skipped in report.not_checked:
        reasons.setdefault(skipped.reason, []).append(skipped.check)
    for reason, checks in reasons.items():
        lines.append(f"  not checked  : {', '.join(checks)}: {reason}")
    if report.checkpoint_out:
        lines.append(f"  checkpoint   : written to {report.checkpoint_out}")
    if report.ok:
        lines.append(f"VALID: every check passed up to height {report.checked_height:,}, "
                     f"header {show(report.tip_hash)}")
    else:
        f = report.failure
        assert f is not None
        where = "the genesis" if f.height == 0 else f"height {f.height}"
        lines += [f"INVALID at {where}",
                  f"  object       : {f.obj}",
                  f"  check        : {f.check}",
                  f"  detail       : {f.message}"]
        if f.expected is not None or f.found is not None:
            lines += [f"  expected     : {_short(f.expected)}", f"  found        : {_short(f.found)}"]
        if report.checked_height:
            lines.append(f"  (every block up to height {report.checked_height:,} checked out)")
    return "\n".join(lines)


def receipt_summary(verdict: ReceiptVerdict) -> str:
    r = verdict.receipt
    lines = []
    if r is not None:
        lines += [f"Receipt for transaction {r.tx_id.hex()} on chain {r.chain_id}",
                  f"  block        : {r.height} (position {r.index}), log entry {r.log_index} of {r.log_size}",
                  f"  header       : height {r.header.height}, hash {r.header.hash.hex()}"]
        if verdict.total_power:
            lines.append(f"  committed by : {verdict.power} of {verdict.total_power} stake "
                         f"(more than 2/3 needed), validator set {r.validators.hash.hex()}")
        if verdict.outcome is not None:
            o = verdict.outcome
            lines.append(f"  outcome      : {o['status']} (proven at height {o['height']}"
                         + (f"; final since height {o['closed_height']})" if o.get("closed_height") else
                            "; not final at that height)"))
        elif r.reported_result is not None:
            lines.append(f"  result       : {r.reported_result.get('status')} (as reported by the node; "
                         "not covered by the proof)")
    lines.append(f"  trust anchor : {verdict.anchor_detail or verdict.anchor}")
    if verdict.ok:
        lines.append("VALID: the transaction is in the chain" if verdict.anchored else
                     "CONSISTENT but UNANCHORED: valid only if you trust the validator set above")
    else:
        f = verdict.failure
        assert f is not None
        lines += ["INVALID", f"  object       : {f.obj}", f"  check        : {f.check}",
                  f"  detail       : {f.message}"]
        if f.expected is not None or f.found is not None:
            lines += [f"  expected     : {_short(f.expected)}", f"  found        : {_short(f.found)}"]
    return "\n".join(lines)
