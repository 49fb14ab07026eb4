"""What a person reads: the progress bar and the summaries."""

from __future__ import annotations

import io

from ledger.audit.findings import AuditFailure, AuditReport
from ledger.audit.text import summary
from node.audit.progress import ProgressBar


def test_progress_bar_shows_rate_and_time_left():
    out = io.StringIO()
    bar = ProgressBar(out)
    bar(1, 10, 100, 1_000)
    bar._last_draw = 0  # the bar redraws at most ten times a second
    bar(5, 10, 500, 1_000)
    bar.close()
    text = out.getvalue()
    assert "block 5/10" in text and "tx/s" in text and "ETA" in text and "%" in text
    assert text.endswith("\n")


def test_summary_of_a_failure_names_height_object_check_and_values():
    report = AuditReport(mode="full", source="data directory /x", jobs=2, chain_id="c", genesis_hash=bytes(32),
                         target_height=9, checked_height=4)
    report.failure = AuditFailure(5, "transaction 2 (crossing.request ab12)", "tx-signature", "does not verify",
                                  b"\x01" * 32, b"\x02" * 32)
    report.skipped("genesis-hash", "no genesis pinned")
    text = summary(report)
    for needle in ("INVALID at height 5", "transaction 2 (crossing.request ab12)", "tx-signature",
                   "01" * 32, "02" * 32, "NOT PINNED", "up to height 4", "not checked  : genesis-hash"):
        assert needle in text, needle
    doc = report.to_json()
    assert doc["ok"] is False and doc["failure"]["expected"] == "01" * 32


def test_summary_groups_checks_skipped_for_one_reason():
    report = AuditReport(mode="full", source="node http://127.0.0.1:1", jobs=1, chain_id="c",
                         genesis_hash=bytes(32), genesis_pinned=True, target_height=3, checked_height=3,
                         tip_hash=b"\x03" * 32)
    for check in ("state", "tx-index"):
        report.skipped(check, "only a data directory holds these")
    text = summary(report)
    assert "not checked  : state, tx-index: only a data directory holds these" in text
    assert "VALID" in text and "pinned with --genesis" in text
