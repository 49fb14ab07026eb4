"""Benchmark the full audit against raw Ed25519 verification, measured in the same run.

    python scripts/bench_audit.py [--txs 20000] [--block-txs 500] [--jobs N] [--chain-dir DIR]
                                  [--out FILE] [--profile FILE]

Builds (or reuses, with ``--chain-dir``) a LevelDB chain of border crossings signed by a
terminal and the traveller's biometric key (two signatures each), then measures:

* raw Ed25519 verifications per second in one process, and in N processes at once;
* the full audit of the data directory (every check, store records included) with ``--jobs 1``
  and ``--jobs N``: transactions per second and signatures verified per second.

The target: with N processes the audit verifies signatures at no less than 70% of the raw
single-process rate times N. Raw rates are measured right before each audit so that a busy
machine skews both alike. ``--profile FILE`` writes a cProfile of the serial audit.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import secrets
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchkit import write_result

from ledger.audit.auditor import Auditor
from ledger.audit.replay import ReplayKV, ReplayStore
from ledger.audit.signatures import serial_blocks, verified_blocks
from ledger.block import PRECOMMIT, Commit, sign_vote
from ledger.chain import build_block, execute_block
from ledger.crypto.keys import SigningKey, verify_raw
from ledger.genesis import GENESIS, Genesis, GenesisValidator
from ledger.state.records import DEFAULT_PARAMS, Council
from ledger.storage.chainstore import ChainStore
from ledger.tx import bodies as b
from ledger.tx.envelope import make_tx
from node.audit.datadir import DataDirSource
from node.audit.pool import available_cores, start_pool

CHAIN_ID = "custos-bench"
T0 = 1_700_000_000_000


# --------------------------------------------------------------------------- the chain


def build_chain(directory: Path, txs: int, block_txs: int) -> dict:
    """A chain of ``txs`` adult crossings (plus set-up), committed by one validator."""
    council = [SigningKey(bytes([i + 1]) * 32) for i in range(3)]
    validator = SigningKey(b"\x07" * 32)
    genesis = Genesis(
        chain_id=CHAIN_ID, genesis_time=T0,
        council=Council(threshold=2, members=tuple(sorted(k.public for k in council))),
        validators=(GenesisValidator(validator.public, 100, "bench"),),
        params=DEFAULT_PARAMS,
    )
    store = ChainStore.open(directory / "chain", genesis)
    nonce = iter(range(1, 10**9))

    def commit(batch) -> None:
        last = store.commit(store.height) if store.height else None
        executed, rejected = build_block(store, batch, time=store.tip.time + 1_000, proposer=validator.public,
                                         last_commit=last)
        assert not rejected, [(tx.kind, str(e)) for tx, e in rejected]
        vote = sign_vote(validator, CHAIN_ID, PRECOMMIT, executed.height, 0, executed.hash)
        store.commit_block(executed, Commit.from_votes([vote]))

    authority, terminals = SigningKey.generate(), [SigningKey.generate() for _ in range(4)]
    gov = lambda kind, body: make_tx(kind, body, next(nonce), council[:2], CHAIN_ID)  # noqa: E731
    commit([gov(b.GOV_REGISTER_AUTHORITY, b.RegisterAuthority(authority.public, "registry")),
            gov(b.GOV_REGISTER_POST, b.RegisterPost("MD-LEU", "Leuseni"))]
           + [gov(b.GOV_REGISTER_TERMINAL, b.RegisterTerminal(t.public, "MD-LEU", f"lane {i}"))
              for i, t in enumerate(terminals)])
    travellers = []
    for _ in range(50):
        bio = SigningKey.generate()
        identity = secrets.token_bytes(16)
        travellers.append((bio, identity))
    commit([make_tx(b.ENROL, b.Enrol(authority.public, identity, bio.public, 0, (SigningKey.generate().public,),
                                     b.Policy(1, 3_600_000, False)), next(nonce), [authority, bio], CHAIN_ID)
            for bio, identity in travellers])
    made = 0
    started = time.perf_counter()
    while made < txs:
        n = min(block_txs, txs - made)
        when = store.tip.time + 1_000
        batch = []
        for i in range(n):
            bio, identity = travellers[(made + i) % len(travellers)]
            terminal = terminals[(made + i) % len(terminals)]
            body = b.CrossingRequest(terminal.public, identity, "MD-LEU", b.EXIT if i % 2 else b.ENTRY, when,
                                     "RO", None)
            batch.append(make_tx(b.CROSSING, body, next(nonce), [terminal, bio], CHAIN_ID))
        commit(batch)
        made += n
        print(f"\rbuilding: {made:,}/{txs:,} crossings ({time.perf_counter() - started:.0f} s)", end="",
              file=sys.stderr)
    print(file=sys.stderr)
    info = {"height": store.height, "txs": store.tip.log_size}
    store.close()
    return info


# --------------------------------------------------------------------------- raw Ed25519


def _sample(n: int) -> list[tuple[bytes, bytes, bytes]]:
    key = SigningKey.generate()
    out = []
    for _ in range(n):
        message = secrets.token_bytes(72)  # the size of a signed transaction id message
        out.append((key.public, message, key.sign_raw(message)))
    return out


def raw_rate(n: int = 4_000) -> float:
    """Ed25519 verifications per second in this process (the function the audit uses)."""
    sample = _sample(200)
    started = time.perf_counter()
    for i in range(n):
        verify_raw(*sample[i % 200])
    return n / (time.perf_counter() - started)


def _raw_worker(n: int) -> tuple[float, float, int]:
    sample = _sample(200)
    started = time.perf_counter()
    for i in range(n):
        verify_raw(*sample[i % 200])
    return started, time.perf_counter(), n


def raw_rate_parallel(pool: ProcessPoolExecutor, processes: int, n: int = 4_000) -> float:
    """Verifications per second of ``processes`` processes verifying at once."""
    results = list(pool.map(_raw_worker, [n] * processes))
    start, end = min(r[0] for r in results), max(r[1] for r in results)
    return sum(r[2] for r in results) / (end - start)


# --------------------------------------------------------------------------- the audit


def audit(chain_dir: Path, jobs: int, profile: Path | None = None) -> dict:
    source = DataDirSource(chain_dir)
    pool = start_pool(jobs - 1) if jobs > 1 else None
    try:
        profiler = cProfile.Profile() if profile else None
        if profiler:
            profiler.enable()
        report = Auditor(source, jobs=jobs, pool=pool, clock=time.perf_counter).run()
        if profiler:
            profiler.disable()
            profiler.dump_stats(str(profile))
    finally:
        if pool is not None:
            pool.shutdown()
        source.close()
    assert report.ok, report.failure
    c = report.counts
    signatures = c.tx_signatures + c.commit_signatures
    return {
        "jobs": jobs,
        "seconds": round(report.seconds, 3),
        "blocks": c.blocks,
        "txs": c.txs,
        "signatures": signatures,
        "txs_per_second": round(c.txs / report.seconds, 1),
        "signatures_per_second": round(signatures / report.seconds, 1),
    }


def replay_floor(chain_dir: Path) -> dict:
    """The serial part alone: every block re-executed with its signatures taken as verified.
    No number of signature workers can make the audit faster than this."""
    source = DataDirSource(chain_dir)
    try:
        replay = ReplayStore.from_genesis(ReplayKV(), GENESIS.decode(source.genesis_bytes()))
        started = time.perf_counter()
        txs = 0
        for prepared, _ in serial_blocks(source.blocks(1, source.tip_height())):
            executed = execute_block(replay, prepared.block, verify_signatures=False)
            prepared.commit.check(replay.chain.chain_id, executed.changes.validators, height=prepared.height,
                                  block=prepared.block.hash, verify_signatures=False)
            replay.record(executed)
            txs += len(executed.txs)
        seconds = time.perf_counter() - started
    finally:
        source.close()
    return {"seconds": round(seconds, 3), "txs_per_second": round(txs / seconds, 1)}


def signature_pass(chain_dir: Path, jobs: int) -> dict:
    """The parallel signature pass alone, in ``jobs`` worker processes, no replay."""
    source = DataDirSource(chain_dir)
    pool = start_pool(jobs)
    try:
        started = time.perf_counter()
        blocks = sum(1 for _ in verified_blocks(source.blocks(1, source.tip_height()), CHAIN_ID, pool, jobs))
        seconds = time.perf_counter() - started
    finally:
        pool.shutdown()
        source.close()
    return {"workers": jobs, "blocks": blocks, "seconds": round(seconds, 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--txs", type=int, default=20_000, help="crossings in the chain (default 20000)")
    parser.add_argument("--block-txs", type=int, default=500, help="crossings per block (default 500)")
    parser.add_argument("--jobs", type=int, default=available_cores(), help="processes for the parallel audit")
    parser.add_argument("--chain-dir", type=Path, help="build the chain here once and reuse it on later runs")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--profile", type=Path, help="write a cProfile of the serial audit here")
    args = parser.parse_args()

    chain_dir = args.chain_dir or Path(f"/tmp/custos-bench-{args.txs}-{args.block_txs}")
    marker = chain_dir / "bench.json"
    if marker.exists():
        info = json.loads(marker.read_text())
    else:
        chain_dir.mkdir(parents=True, exist_ok=True)
        info = build_chain(chain_dir, args.txs, args.block_txs)
        marker.write_text(json.dumps(info))

    jobs = max(2, args.jobs)
    with ProcessPoolExecutor(jobs) as raw_pool:
        raw_rate_parallel(raw_pool, jobs, 200)  # start the processes
        runs = []
        for n in (1, jobs):
            single = raw_rate()
            parallel = raw_rate_parallel(raw_pool, n)
            run = audit(chain_dir / "chain", n, args.profile if n == 1 else None)
            run["raw_single_process_per_second"] = round(single, 1)
            run["raw_n_processes_per_second"] = round(parallel, 1)
            run["efficiency_vs_raw_single_times_n"] = round(run["signatures_per_second"] / (single * n), 3)
            run["efficiency_vs_raw_n_processes"] = round(run["signatures_per_second"] / parallel, 3)
            runs.append(run)
            print(json.dumps(run), file=sys.stderr)
        floor = replay_floor(chain_dir / "chain")
        sig_pass = signature_pass(chain_dir / "chain", jobs)
    result = {
        "chain": {"dir": str(chain_dir), **info, "signatures_per_tx": round(runs[0]["signatures"] / runs[0]["txs"], 3)},
        "machine": {"cores": available_cores(), "python": platform.python_version(),
                    "load_average": os.getloadavg()},
        "runs": runs,
        "serial_replay_floor": floor,
        "signature_pass_alone": sig_pass,
        "target": "audit signatures/s >= 0.7 x raw single-process verifications/s x processes",
        "target_met": runs[-1]["efficiency_vs_raw_single_times_n"] >= 0.7,
    }
    write_result(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
