"""Benchmark the access log: recording reads, and checking the log at start.

    python scripts/bench_access_log.py [--entries 100000] [--dir DIR] [--out FILE]

Measures, in one run on one LevelDB directory each:

* baseline: plain LevelDB puts of the same entry bytes, one write per read (what storing reads
  costs with no tree at all);
* the access log: one append per read (entry, tree nodes, child index, size in one batch);
* the start-up check (``AccessLog.verify``): rebuilding the tree from every entry;
* disk bytes per entry after compaction.

Prints JSON; quote the append rate as a ratio to the baseline.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchkit import write_result

from ledger.privacy.tags import child_tag
from ledger.storage.kv import LevelKV
from node.access.entry import Entry
from node.access.log import AccessLog


def entries(n: int) -> list[Entry]:
    children = [child_tag(i.to_bytes(16, "big")) for i in range(1000)]
    readers = [bytes([i]) * 32 for i in range(50)]
    return [Entry(1_767_225_600_000 + i, readers[i % 50], "enrolment-authority", children[(i * 7) % 1000], "identity",
                  None, "case-work", None) for i in range(n)]


def disk_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--entries", type=int, default=100_000)
    p.add_argument("--dir", type=Path, help="work directory (default: a temporary one, removed after)")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    work = args.dir or Path(tempfile.mkdtemp(prefix="custos-bench-access-"))
    rows = entries(args.entries)
    raws = [e.raw for e in rows]
    try:
        base = LevelKV(work / "baseline")
        started = time.perf_counter()
        for i, raw in enumerate(raws):
            base.write({b"e" + i.to_bytes(8, "big"): raw}, sync=False)
        baseline_s = time.perf_counter() - started
        base.close()

        log = AccessLog.open(work / "log")
        started = time.perf_counter()
        for e in rows:
            log.append([e])
        append_s = time.perf_counter() - started
        log.sync()
        root = log.root()
        log.close()

        log = AccessLog.open(work / "log")
        started = time.perf_counter()
        problem = log.verify((args.entries, root))
        verify_s = time.perf_counter() - started
        log.kv._db.compact_range()  # type: ignore[attr-defined]
        log.close()
        size = disk_bytes(work / "log")
        result = {
            "benchmark": "access_log",
            "entries": args.entries,
            "python": platform.python_version(),
            "entry_bytes_mean": round(sum(map(len, raws)) / len(raws), 1),
            "baseline_puts_per_s": round(args.entries / baseline_s),
            "appends_per_s": round(args.entries / append_s),
            "append_vs_baseline": round(baseline_s / append_s, 2),
            "append_us": round(append_s / args.entries * 1e6, 1),
            "verify_s": round(verify_s, 2),
            "verify_entries_per_s": round(args.entries / verify_s),
            "verify_ok": problem is None,
            "disk_bytes_per_entry": round(size / args.entries, 1),
        }
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)
    write_result(result, args.out)


if __name__ == "__main__":
    main()
