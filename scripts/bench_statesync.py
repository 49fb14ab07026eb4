#!/usr/bin/env python3
"""How soon a new node serves proofs when it joins by state sync, against replaying from genesis.

One run, real processes on 127.0.0.1:

1. a devnet of one validator and two observers is created; the validator's chain is built in
   process with the ledger code into its LevelDB store (council setup, one post and terminal,
   ``--children`` enrolled children, then ``--crossings`` crossings in blocks of
   ``--block-txs``; half the children minors, whose crossings stay pending), each block signed
   by the validator's key, as ``scripts/bench_ledger.py`` builds its chains;
2. the validator is started on that store and goes on making blocks; it plans the snapshot of
   the state it starts with (as a node that has run past an interval height holds one), and
   the measures begin once it offers it (the planning time is reported on its own);
3. ``obs-0`` starts with ``[statesync] join = true``: the time from its start until a light
   client pinned to the genesis verifies a state proof it serves at a height at or above the
   chain's height when it started (snapshot planned by the validator, headers certified from
   genesis, manifest and chunks checked, store installed, blocks since followed);
4. then ``obs-1`` starts without it and replays every block by block sync: the same measure.

Each observer runs alone (the other is stopped), so the two share the machine alike. Writes JSON
to stdout or ``--out``::

    python scripts/bench_statesync.py --crossings 100000 --out bench-results/state-sync.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchkit import write_result  # noqa: E402

from ledger.block import PRECOMMIT, Commit, sign_vote  # noqa: E402
from ledger.chain import build_block  # noqa: E402
from ledger.crypto.keys import SigningKey  # noqa: E402
from ledger.storage.chainstore import ChainStore  # noqa: E402
from node import devnet  # noqa: E402
from node.client.light import LightClient  # noqa: E402
from node.client.signed import SignedClient  # noqa: E402
from node.client.txs import TxFactory  # noqa: E402
from node.consensus.privval import PRIVVAL_FILE, initialise_signer_state  # noqa: E402
from node.genesis_file import load_genesis  # noqa: E402
from node.keyfile import load_key_file  # noqa: E402
from node.ops.scrape import read_metrics  # noqa: E402

DAY_MS = 86_400_000


def build_history(net: Path, crossings: int, block_txs: int, children: int) -> dict:
    """The validator's chain, built into its store before it starts."""
    doc = json.loads((net / devnet.DESCRIPTION).read_text())
    passphrase = (net / "passphrase").read_bytes().strip()
    council = [load_key_file(net / p, passphrase) for p in doc["council"]]
    validator = load_key_file(net / "val-0" / "node.key", passphrase)
    genesis = load_genesis(net / "genesis.toml")
    f = TxFactory(genesis.chain_id)
    authority, terminal = SigningKey.generate(), SigningKey.generate()
    minor_day = (genesis.genesis_time + 3650 * DAY_MS) // DAY_MS
    people = [(os.urandom(16), SigningKey.generate(), i % 2 == 1) for i in range(children)]
    guardian = SigningKey.generate()
    setup = [f.register_authority(council[:2], authority.public), f.register_post(council[:2], "P1"),
             f.register_terminal(council[:2], terminal.public, "P1")]
    enrolments = [f.enrol(authority, bio, ident, majority_day=minor_day if minor else 0, guardians=[guardian.public],
                          approvals=1, deadline_ms=DAY_MS, veto=False) for ident, bio, minor in people]
    store = ChainStore.open(net / "val-0" / "chain", genesis)
    started = time.perf_counter()
    last: Commit | None = None
    now = genesis.genesis_time

    def commit(txs: list) -> None:
        nonlocal last, now
        now += 1
        executed, rejected = build_block(store, txs, time=now, proposer=validator.public, last_commit=last)
        if rejected:
            raise SystemExit(f"unexpected rejection: {rejected[0][1].diagnostics()}")
        c = Commit.from_votes([sign_vote(validator, genesis.chain_id, PRECOMMIT, executed.height, 0, executed.hash)])
        store.commit_block(executed, c)
        last = c

    commit(setup)
    for i in range(0, len(enrolments), block_txs):
        commit(enrolments[i:i + block_txs])
    k = 0
    while k < crossings:
        txs = []
        for _ in range(min(block_txs, crossings - k)):
            ident, bio, _minor = people[k % len(people)]
            txs.append(f.crossing(terminal, bio, ident, post="P1", direction="exit" if k % 2 else "entry",
                                  event_time=now + 1, destination="RO", nonce=k))
            k += 1
        commit(txs)
    height, log_size = store.height, store.tip.log_size
    store.kv._db.compact_range()
    store.close()
    # the validator signed those blocks here, in process: its signer state starts above them
    initialise_signer_state(net / "val-0" / "consensus" / PRIVVAL_FILE, validator.public, genesis.chain_id)
    return {"height": height, "transactions": log_size, "build_s": round(time.perf_counter() - started, 1),
            "store_bytes": sum(p.stat().st_size for p in (net / "val-0" / "chain").rglob("*") if p.is_file())}


def status(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url + "/v1/status", timeout=5) as r:
            return json.loads(r.read())
    except OSError:
        return None


async def proven_height(url: str, genesis) -> int | None:
    """The height of a state proof ``url`` serves that a light client pinned to genesis verifies."""
    client = SignedClient([url], SigningKey.generate(), chain_id=genesis.chain_id, timeout_s=30)
    try:
        light = LightClient(client, genesis=genesis, warn=lambda line: None)
        proven = await light.prove("/v1/state/proof", {"key": b"council".hex()}, signed=False)
        return None if proven is None else proven.height
    except Exception:
        return None
    finally:
        await client.close()


def counter(metrics: str, name: str) -> float | None:
    """A counter's value from a node's metrics listener (classic text format), if it has one."""
    samples = read_metrics(f"http://{metrics}/metrics")
    return None if samples is None else samples.get(name)


def wait_for_snapshot(url: str, timeout_s: float) -> dict:
    """The serving node's state-sync status once it offers a snapshot."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        s = status(url)
        if s is not None and (s.get("state_sync") or {}).get("serving"):
            return s["state_sync"]
        time.sleep(0.2)
    raise SystemExit(f"{url} offered no snapshot within {timeout_s:.0f} s")


def time_to_proof(url: str, genesis, target: int, started: float, timeout_s: float) -> dict:
    """Seconds from ``started`` until ``url`` reaches ``target`` and proves a record there."""
    reached = None
    while time.monotonic() - started < timeout_s:
        s = status(url)
        if s is not None and s["height"] >= target:
            reached = reached or time.monotonic() - started
            height = asyncio.run(proven_height(url, genesis))
            if height is not None and height >= target:
                return {"tip_s": round(reached, 2), "proof_s": round(time.monotonic() - started, 2),
                        "proven_height": height, "status": s}
        time.sleep(0.2)
    raise SystemExit(f"{url} did not serve a proof at height {target} within {timeout_s:.0f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--crossings", type=int, default=100_000)
    ap.add_argument("--block-txs", type=int, default=1000)
    ap.add_argument("--children", type=int, default=10_000)
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds each observer may take")
    ap.add_argument("--keep", type=Path, help="keep the devnet in this directory (must not exist)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    load_at_start = os.getloadavg()[0]  # other work on the machine slows both ways alike, not always evenly
    work = args.keep or Path(tempfile.mkdtemp(prefix="custos-bench-sync-")) / "net"
    procs: dict[str, subprocess.Popen] = {}
    try:
        nodes = {n.name: n for n in devnet.create(work, 1, observers=2, heartbeat_ms=1000)}
        history = build_history(work, args.crossings, args.block_txs, args.children)
        genesis = load_genesis(work / "genesis.toml")
        procs.update(devnet.launch(work, [nodes["val-0"]]))
        devnet.wait_ready([nodes["val-0"]], timeout_s=120)
        planned = wait_for_snapshot(nodes["val-0"].url, args.timeout)
        results = {}
        for name, join in (("obs-0", True), ("obs-1", False)):
            if join:
                config = work / name / "node.toml"
                config.write_text(config.read_text() + "\n[statesync]\njoin = true\nwait_s = 600\n")
            target = status(nodes["val-0"].url)["height"]
            started = time.monotonic()
            procs.update(devnet.launch(work, [nodes[name]]))
            measured = time_to_proof(nodes[name].url, genesis, target, started, args.timeout)
            # blocks a node executes without having seen their transactions go to its signature
            # workers when large enough; the workers start in the background on the first such
            # block, so a short replay may end before they are up (then the counter is absent)
            jobs = counter(nodes[name].metrics, "custos_signature_jobs_total")
            results[name] = {"target_height": target, "signature_jobs": jobs, **measured}
            procs.pop(name).send_signal(signal.SIGTERM)
        joined = results["obs-0"]["status"]["state_sync"]["joined"]
        sync_s, replay_s = results["obs-0"]["proof_s"], results["obs-1"]["proof_s"]
        result = {
            "benchmark": "state-sync",
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                        "load_average_1m_at_start_and_end": [round(load_at_start, 2), round(os.getloadavg()[0], 2)]},
            "chain": {**history, "crossings": args.crossings, "block_txs": args.block_txs,
                      "children": args.children},
            "state_sync": {
                "seconds_to_verified_proof": sync_s,
                "seconds_to_tip": results["obs-0"]["tip_s"],
                "snapshot_height": joined["height"],
                "chunks": joined["chunks"],
                "bytes": joined["bytes"],
                "join_phases_s": joined["seconds"],
                "planning_ms_on_the_serving_node": planned["last_plan_ms"],
                "snapshot_on_offer_at_start": planned["serving"],
            },
            "replay": {
                "seconds_to_verified_proof": replay_s,
                "seconds_to_tip": results["obs-1"]["tip_s"],
                "crossings_per_s": round(args.crossings / replay_s),
                "blocks_to_signature_workers": results["obs-1"]["signature_jobs"],
            },
            "state_sync_time_vs_replay": round(sync_s / replay_s, 3),
        }
    finally:
        devnet.stop(procs)
        if args.keep is None:
            shutil.rmtree(work.parent, ignore_errors=True)
    write_result(result, args.out)


if __name__ == "__main__":
    main()
