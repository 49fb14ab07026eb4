#!/usr/bin/env python3
"""What a proven answer costs: proof sizes, proving and verifying times, following headers.

Builds a chain in a real LevelDB store (a council, a post and terminal, ``--children`` enrolled
children, blocks of crossing requests), then measures at the tip:

* the size of a record proof (canonical bytes) for a global record, a child's request (present),
  a record absent from an enrolled child, and a child never enrolled; and of the header and
  commit certificate every answer carries;
* the time to make each proof (the node) and to check it (the client), averaged over many keys;
* the light client's cost per header followed (hash links; one certificate checked per page).

Writes JSON to stdout or ``--out``. Example::

    python scripts/bench_proofs.py --children 5000 --blocks 20 --block-txs 1000 --out bench-results/proofs.json
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from benchkit import DAY_MS, T0, BenchWorld, Proposer, write_result

from ledger.block import COMMIT, HEADER
from ledger.light import Step, Trusted, advance
from ledger.state.proof import RecordProof, check_record, prove_record
from ledger.state.records import K_COUNCIL, k_identity, k_request
from ledger.storage.chainstore import ChainStore


def timed(fn, items) -> float:
    t = time.perf_counter()
    for item in items:
        fn(item)
    return (time.perf_counter() - t) / max(1, len(items))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--children", type=int, default=2000)
    ap.add_argument("--blocks", type=int, default=10)
    ap.add_argument("--block-txs", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    world = BenchWorld()
    children = world.children(args.children, adults="none")
    work = Path(tempfile.mkdtemp(prefix="custos-bench-proofs-"))
    requests: list[tuple[bytes, bytes]] = []
    try:
        store = ChainStore.open(work / "node", world.genesis)
        proposer = Proposer(world, store)
        proposer.commit(world.registrations(), T0 + 1000)
        for i in range(0, len(children), 1000):
            proposer.commit([world.enrol(c, deadline_ms=30 * DAY_MS) for c in children[i:i + 1000]], T0 + 2000 + i)
        k = 0
        for b in range(args.blocks):
            txs = []
            for _ in range(args.block_txs):
                child = children[k % len(children)]
                tx = world.crossing(child, k, event_time=T0 + 10**6 + b)
                txs.append(tx)
                requests.append((child.identity, tx.id))
                k += 1
            proposer.commit(txs, T0 + 10**6 + 1000 * (b + 1))

        state = store.state
        header = store.header(store.height)
        commit_cert = store.commit(store.height)
        assert header is not None and commit_cert is not None
        root = header.state_root
        step = max(1, len(requests) // args.samples)
        kinds = {
            "global_record": [K_COUNCIL] * min(args.samples, 200),
            "child_record_present": [k_request(i, r) for i, r in requests[::step]],
            "child_record_absent": [k_request(i, os.urandom(32)) for i, _ in requests[::step]],
            "child_never_enrolled": [k_identity(os.urandom(16)) for _ in range(min(args.samples, 1000))],
        }
        results: dict[str, dict] = {}
        for name, keys in kinds.items():
            proofs = [prove_record(state.get, state.tree_node, key) for key in keys]
            wires = [p.encode() for p in proofs]
            prove_s = timed(lambda key: prove_record(state.get, state.tree_node, key), keys)
            decode_and_check_s = timed(lambda raw: check_record(root, RecordProof.decode(raw)), wires)
            sizes = [len(w) for w in wires]
            depths = [len(p.global_proof.siblings) + (len(p.child_proof.siblings) if p.child_proof else 0)
                      for p in proofs]
            results[name] = {
                "samples": len(keys),
                "proof_bytes_mean": round(statistics.mean(sizes), 1),
                "proof_bytes_max": max(sizes),
                "siblings_mean": round(statistics.mean(depths), 2),
                "prove_us": round(prove_s * 1e6, 1),
                "decode_and_verify_us": round(decode_and_check_s * 1e6, 1),
            }
        # the light client: follow every header from genesis (pages of 500, as the client does)
        steps = [Step(store.header(h), store.commit(h)) for h in range(1, store.height + 1)]  # type: ignore[arg-type]
        t = time.perf_counter()
        trusted = Trusted.from_genesis(world.genesis)
        for i in range(0, len(steps), 500):
            trusted, _ = advance(trusted, steps[i:i + 500], target=store.height)
        follow_s = time.perf_counter() - t
        answer_overhead = len(HEADER.encode(header)) + len(COMMIT.encode(commit_cert))
        store.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    result = {
        "benchmark": "state-proofs",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "children": args.children,
        "crossings": len(requests),
        "height": len(steps),
        "proofs": results,
        "header_and_commit_bytes": answer_overhead,
        "validators": 1,
        "light_client_us_per_header": round(follow_s / len(steps) * 1e6, 1),
    }
    write_result(result, args.out)


if __name__ == "__main__":
    main()
