"""The auditor's story: a real node fills a chain; the auditor verifies it from genesis, from the
data directory and over the API, and catches every tampering of a copy with the right height
and check. Exit codes as the CLI fixes them: 0 valid, 1 invalid, 2 usage, 3 unreachable.

Over the API the auditor signs its reads with a registered auditor's key (``--key``): a node
serves transactions' bytes to integrity readers only.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import msgpack
import pytest
from aiohttp import ClientSession, ClientTimeout, web

from ledger.block import BLOCK, COMMIT
from ledger.chain import build_block
from ledger.crypto.keys import SigningKey
from ledger.state.records import REQUEST, k_request, k_subject
from ledger.storage.chainstore import TIP, TX_LOCATION, ChainStore
from ledger.storage.kv import LevelKV
from ledger.tx.bodies import DENY
from ledger.tx.envelope import decode_tx, make_tx
from node.access.purpose import Purpose
from node.cli import main
from node.client.http import NodeClient
from node.client.signed import SignedClient
from node.devnet import free_ports
from node.genesis_file import load_genesis
from node.keyfile import MINIMAL, write_key_file
from tests.ledger.audit.chainforge import (
    block_at,
    block_key,
    commit_key,
    flip,
    flip_inside,
    forge_signature,
    put,
    replace_txs,
    rewrite_history,
    sign_commit,
    store_block,
)
from tests.node.netkit import Net, run

NOW = lambda: time.time_ns() // 1_000_000  # noqa: E731


@dataclass
class Story:
    net: Net
    root: Path
    pristine: Path  # a copy of the node's chain directory, taken while it was stopped
    heights: dict[str, int]  # where each step of the story was committed
    second: SigningKey  # a validator bonded with 100 of the 500 stake (its node does not run)
    ids: dict[str, bytes]  # transaction ids of the story's steps
    tip: int  # the pristine copy's height
    genesis: Path
    auditor: Path  # a registered auditor's key file
    terminal: Path  # a registered terminal's key file: a key with a role, but no integrity reader
    passphrase: Path  # the passphrase of both key files

    def key_args(self, which: str = "auditor") -> list[str]:
        return ["--key", str(getattr(self, which)), "--passphrase-file", str(self.passphrase)]


async def _commit(c: NodeClient, txs) -> list[dict]:
    for tx in txs:
        await c.submit(tx.raw)
    return [await c.submit(tx.raw, wait=True) for tx in txs]


def _fill(net: Net, second: SigningKey, auditor: SigningKey,
          terminal: SigningKey) -> tuple[dict[str, int], dict[str, bytes]]:
    """Council, post, terminal, auditor; a minor with two guardians (2-of-2, veto) and an adult; a
    crossing both guardians approve, one a guardian denies, one a consent covers; a batch of adult
    crossings."""
    t = net.txs
    authority = SigningKey.generate()
    minor_bio, adult_bio = SigningKey.generate(), SigningKey.generate()
    guardians = [SigningKey.generate(), SigningKey.generate()]
    minor, adult = os.urandom(16), os.urandom(16)
    now = NOW()

    def crossing(bio, identity, **kw):
        return t.crossing(terminal, bio, identity, post="MD-LEU", direction="exit", event_time=NOW(),
                          destination="RO", **kw)

    steps: dict[str, object] = {}

    async def go() -> None:
        async with NodeClient(net.url(), timeout_s=20) as c:
            await _commit(c, [t.register_authority(net.council[:2], authority.public),
                              t.register_post(net.council[:2], "MD-LEU"),
                              t.register_terminal(net.council[:2], terminal.public, "MD-LEU"),
                              t.register_auditor(net.council[:2], auditor.public, "auditor")])
            # a second validator with a quarter of the stake: the node keeps its quorum alone
            # (300 of 400), and every certificate from two blocks on is checked against 400
            steps["second_validator"] = bond = t.set_validator(net.council[:2], second.public, 100)
            await _commit(c, [bond])
            await _commit(c, [
                t.enrol(authority, minor_bio, minor, majority_day=(now + 10**11) // 86_400_000,
                        guardians=[g.public for g in guardians], approvals=2, deadline_ms=600_000, veto=True),
                t.enrol(authority, adult_bio, adult, majority_day=0, guardians=[SigningKey.generate().public],
                        approvals=1, deadline_ms=60_000, veto=False),
            ])
            steps["permitted_request"] = req1 = crossing(minor_bio, minor)
            await _commit(c, [req1])
            steps["approval_1"] = a1 = t.decide(guardians[0], req1.id, minor, "approve")
            await _commit(c, [a1])
            steps["approval_2"] = a2 = t.decide(guardians[1], req1.id, minor, "approve")
            await _commit(c, [a2])
            steps["denied_request"] = req2 = crossing(minor_bio, minor)
            await _commit(c, [req2])
            steps["denial"] = d = t.decide(guardians[0], req2.id, minor, DENY, "destination-not-agreed")
            await _commit(c, [d])
            steps["consent"] = consent = t.grant_consent(guardians, minor, not_before=NOW() - 1000,
                                                         not_after=NOW() + 86_400_000, direction="exit",
                                                         destination="RO")
            await _commit(c, [consent])
            steps["consented_request"] = req3 = crossing(minor_bio, minor)
            await _commit(c, [req3])
            batch = [crossing(adult_bio, adult) for _ in range(30)]
            steps["adult_batch"] = batch[-1]
            await _commit(c, batch)
            for name, tx in steps.items():
                r = await c.submit(tx.raw, wait=True)
                assert r["status"] == "committed", (name, r)
        # the crossing record: a signed read
        async with SignedClient(net.url(), authority, purpose=Purpose("case-work")) as reader:
            statuses = {name: (await reader.get(f"/v1/txs/{steps[name].id.hex()}"))["crossing"]["status"]
                        for name in ("permitted_request", "denied_request", "consented_request")}
            assert statuses == {"permitted_request": "permitted", "denied_request": "denied",
                                "consented_request": "permitted"}, statuses

    run(go())
    heights = {name: net.get("val-0", f"/v1/txs/{tx.id.hex()}")["height"] for name, tx in steps.items()}
    return heights, {name: tx.id for name, tx in steps.items()}


@pytest.fixture(scope="module")
def story(tmp_path_factory) -> Story:
    root = tmp_path_factory.mktemp("audit")
    net = Net(root / "net", validators=1, heartbeat_ms=300)
    net.start()
    try:
        second, auditor, terminal = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
        passphrase = root / "passphrase"
        passphrase.write_bytes(b"audit passphrase")
        keys = {}
        for name, key in (("auditor", auditor), ("terminal", terminal)):
            keys[name] = root / f"{name}.key"
            write_key_file(keys[name], key, b"audit passphrase", label=name, cost=MINIMAL)
        heights, ids = _fill(net, second, auditor, terminal)
        net.stop()  # a running node holds the LevelDB lock: copy while it is stopped
        pristine = root / "pristine"
        shutil.copytree(net.dir / "val-0" / "chain", pristine)
        store = ChainStore.open(pristine)
        tip = store.height
        store.close()
        net.start()
        yield Story(net, root, pristine, heights, second, ids, tip, net.dir / "genesis.toml", keys["auditor"],
                    keys["terminal"], passphrase)
    finally:
        net.stop()


def audit(capsys, *args: str) -> tuple[int, dict]:
    """Run ``custos audit ARGS --json`` in this process; (exit code, the JSON document)."""
    code = main(["audit", *args, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else {}


def copy_of(story: Story, name: str) -> Path:
    target = story.root / "copies" / name
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(story.pristine, target)
    return target


class Tampered:
    """A copy of the pristine chain opened for writing; closed on exit."""

    def __init__(self, story: Story, name: str) -> None:
        self.path = copy_of(story, name)
        self.kv = LevelKV(self.path, create=False)

    def __enter__(self) -> Tampered:
        return self

    def __exit__(self, *exc) -> None:
        self.kv.close()


def failure(doc: dict) -> tuple[int, str]:
    f = doc["failure"]
    return f["height"], f["check"]


# --------------------------------------------------------------------------- the untouched chain


def test_untouched_copy_passes_with_the_genesis_pinned(story, capsys):
    path = copy_of(story, "untouched")
    code, doc = audit(capsys, "verify", "--data-dir", str(path), "--genesis", str(story.genesis))
    assert code == 0, doc["failure"]
    assert doc["ok"] and doc["failure"] is None
    assert doc["checked_height"] == story.tip
    assert doc["trust_anchor"]["pinned"] is True
    assert doc["trust_anchor"]["genesis_hash"] == load_genesis(story.genesis).hash.hex()
    counts = doc["counts"]
    assert counts["blocks"] == story.tip and counts["txs"] == 44
    assert counts["tx_signatures"] > counts["txs"]  # crossings carry the terminal's and the child's
    assert counts["commits"] == story.tip and counts["carried_commits"] == story.tip - 1
    for check in ("prev-hash", "tx-signature", "commit-quorum", "state-root", "results-hash", "tx-index",
                  "log-node", "state", "tip-record"):
        assert check in doc["checks"]
    assert doc["not_checked"] == []


def test_untouched_copy_human_summary_names_the_anchor(story, capsys):
    path = copy_of(story, "untouched-text")
    assert main(["audit", "verify", "--data-dir", str(path), "--copy"]) == 0
    out = capsys.readouterr().out
    assert "VALID" in out and "NOT PINNED" in out and load_genesis(story.genesis).hash.hex() in out


# --------------------------------------------------------------------------- tampering, one way at a time


def _flip_header_state_root(t: Tampered, s: Story):
    h = s.heights["adult_batch"]
    raw = t.kv.get(block_key(h))
    put(t.kv, block_key(h), flip_inside(raw, BLOCK.decode(raw).header.state_root))
    return h, "state-root"


def _flip_header_prev_hash(t: Tampered, s: Story):
    h = s.heights["approval_1"]
    raw = t.kv.get(block_key(h))
    put(t.kv, block_key(h), flip_inside(raw, BLOCK.decode(raw).header.prev_hash))
    return h, "prev-hash"


def _flip_transaction_byte(t: Tampered, s: Story):
    h = s.heights["adult_batch"]
    raw = t.kv.get(block_key(h))
    # the batch's last transaction: the one block that surely holds it (a busy node may split a batch)
    put(t.kv, block_key(h), flip_inside(raw, BLOCK.decode(raw).txs[-1]))
    return h, "tx-root"


def _flip_transaction_signature_header_fixed(t: Tampered, s: Story):
    """A forger who also fixes the header's roots and re-signs the certificate."""
    h = s.heights["adult_batch"]
    block, node_key = block_at(t.kv, h), s.net.node_key("val-0")
    txs = list(block.txs)
    txs[-1] = flip(txs[-1], -5)  # inside the last signature (of the batch's last transaction)
    forged = replace_txs(block, txs, block.header.log_size - len(block.txs),
                         lambda level, index: t.kv.get(b"L" + bytes([level]) + index.to_bytes(8, "big")))
    store_block(t.kv, forged, sign_commit([node_key], s.net.chain_id, h, forged.hash))
    return h, "tx-signature"


def _request_key(t: Tampered, rid: bytes) -> bytes:
    """The store key of a crossing request (under its child, whom the subject index names)."""
    identity = t.kv.get(b"S" + k_subject(rid))
    assert identity is not None
    return b"S" + k_request(identity, rid)


def _flip_state_entry(t: Tampered, s: Story):
    key = _request_key(t, s.ids["denied_request"])
    put(t.kv, key, flip(t.kv.get(key), -3))
    return s.tip, "state"


def _flip_commit_signature(t: Tampered, s: Story):
    h = s.heights["denial"]
    raw = t.kv.get(commit_key(h))
    put(t.kv, commit_key(h), flip_inside(raw, COMMIT.decode(raw).signatures[0].signature))
    return h, "commit-signature"


def _flip_carried_commit_signature(t: Tampered, s: Story):
    h = s.heights["denial"] + 1
    raw = t.kv.get(block_key(h))
    put(t.kv, block_key(h), flip_inside(raw, BLOCK.decode(raw).last_commit.signatures[0].signature))
    return h, "commit-signature"


def _drop_block(t: Tampered, s: Story):
    h = s.heights["approval_2"]
    put(t.kv, block_key(h), None)
    return h, "block-missing"


def _swap_blocks(t: Tampered, s: Story):
    h = s.heights["approval_1"]
    a, b = t.kv.get(block_key(h)), t.kv.get(block_key(h + 1))
    t.kv.write({block_key(h): b, block_key(h + 1): a})
    return h, "height"


def _certificate_by_an_outsider(t: Tampered, s: Story):
    """A certificate whose signer holds no stake: nothing of the 2/3 needed."""
    h = s.heights["consent"]
    outsider = SigningKey.generate()
    put(t.kv, commit_key(h), COMMIT.encode(sign_commit([outsider], s.net.chain_id, h, block_at(t.kv, h).hash)))
    return h, "commit-signer"


def _certificate_under_two_thirds(t: Tampered, s: Story):
    """A certificate by the second validator alone: a valid signature, 100 of the 500 stake."""
    h = s.heights["consent"]
    assert h >= s.heights["second_validator"] + 2, "the second validator is in force"
    put(t.kv, commit_key(h), COMMIT.encode(sign_commit([s.second], s.net.chain_id, h, block_at(t.kv, h).hash)))
    return h, "commit-quorum"


def _rewrite_guardian_decision(t: Tampered, s: Story):
    """The denial becomes an approval: the body is rewritten, the guardian's key kept, the
    block's roots fixed and the certificate re-signed by the validator."""
    h = s.heights["denial"]
    block = block_at(t.kv, h)
    position = next(i for i, raw in enumerate(block.txs) if decode_tx(raw).id == s.ids["denial"])
    denial = decode_tx(block.txs[position])
    approval = make_tx(denial.kind, replace(denial.body, decision="approve", reason=0), denial.nonce,
                       [SigningKey.generate()], s.net.chain_id)
    forged_raw = forge_signature(approval, SigningKey.generate(), s.net.chain_id, claim=denial.body.guardian)
    txs = list(block.txs)
    txs[position] = forged_raw
    forged = replace_txs(block, txs, block.header.log_size - len(block.txs),
                         lambda level, index: t.kv.get(b"L" + bytes([level]) + index.to_bytes(8, "big")))
    store_block(t.kv, forged, sign_commit([s.net.node_key("val-0")], s.net.chain_id, h, forged.hash))
    return h, "tx-signature"


def _rewrite_recorded_decision(t: Tampered, s: Story):
    """The transaction index now says the denied crossing was permitted."""
    key = b"X" + s.ids["denied_request"]
    loc = TX_LOCATION.decode(t.kv.get(key))
    put(t.kv, key, TX_LOCATION.encode(replace(loc, status="permitted")))
    return s.heights["denied_request"], "tx-index"


def _rewrite_request_state(t: Tampered, s: Story):
    """The request record in the state now says permitted, with a forged approval list."""
    key = _request_key(t, s.ids["denied_request"])
    record = REQUEST.decode(t.kv.get(key))
    put(t.kv, key, REQUEST.encode(replace(record, status="permitted", denials=())))
    return s.tip, "state"


def _rewrite_tip_record(t: Tampered, s: Story):
    tip = TIP.decode(t.kv.get(b"T"))
    put(t.kv, b"T", TIP.encode(replace(tip, log_size=tip.log_size + 1)))
    return s.tip, "tip-record"


def _forge_results_hash(t: Tampered, s: Story):
    """The header claims other results (say, a crossing recorded permitted), re-signed."""
    h = s.heights["denied_request"]
    block = block_at(t.kv, h)
    forged = replace(block, header=replace(block.header, results_hash=bytes(32)))
    store_block(t.kv, forged, sign_commit([s.net.node_key("val-0")], s.net.chain_id, h, forged.hash))
    return h, "results-hash"


def _drop_log_node(t: Tampered, s: Story):
    h = s.heights["consent"]
    index = block_at(t.kv, h).header.log_size - 1  # the consent's leaf
    put(t.kv, b"L" + bytes([0]) + index.to_bytes(8, "big"), bytes(32))
    return h, "log-node"


def _forge_index_entry(t: Tampered, s: Story):
    """The index says a transaction that never was committed is: a node would serve it."""
    loc = TX_LOCATION.decode(t.kv.get(b"X" + s.ids["consent"]))
    put(t.kv, b"X" + os.urandom(32), TX_LOCATION.encode(loc))
    return s.heights["consent"], "tx-index"


def _block_beyond_the_tip(t: Tampered, s: Story):
    put(t.kv, block_key(s.tip + 1), t.kv.get(block_key(s.tip)))
    return s.tip + 1, "extra-block"


TAMPERINGS = [
    _flip_header_state_root, _flip_header_prev_hash, _flip_transaction_byte,
    _flip_transaction_signature_header_fixed, _flip_state_entry, _flip_commit_signature,
    _flip_carried_commit_signature, _drop_block, _swap_blocks, _certificate_by_an_outsider,
    _certificate_under_two_thirds,
    _rewrite_guardian_decision, _rewrite_recorded_decision, _rewrite_request_state, _rewrite_tip_record,
    _forge_results_hash, _drop_log_node, _forge_index_entry, _block_beyond_the_tip,
]


@pytest.mark.parametrize("tamper", TAMPERINGS, ids=lambda f: f.__name__.strip("_"))
def test_rejects_tampered_copy_naming_height_and_check(story, capsys, tamper):
    with Tampered(story, tamper.__name__) as t:
        height, check = tamper(t, story)
    code, doc = audit(capsys, "verify", "--data-dir", str(t.path), "--jobs", "1")
    assert code == 1
    assert failure(doc) == (height, check), doc["failure"]
    # a block-level failure stops before its height; a store-level one is found after the last block
    assert doc["checked_height"] in (height - 1, story.tip)


def test_parallel_report_equals_serial_report(story, capsys):
    """Same input, same report: the first failure too, whether signatures are checked ahead in
    worker processes or inline."""
    with Tampered(story, "parallel") as t:
        _flip_transaction_signature_header_fixed(t, story)
    reports = {}
    for jobs in ("1", "2"):
        code, doc = audit(capsys, "verify", "--data-dir", str(t.path), "--jobs", jobs)
        assert code == 1
        reports[jobs] = doc
    untouched = copy_of(story, "parallel-ok")
    for jobs in ("1", "3"):
        code, doc = audit(capsys, "verify", "--data-dir", str(untouched), "--jobs", jobs)
        assert code == 0
        reports["ok" + jobs] = doc
    strip = ("jobs", "seconds", "txs_per_second")
    same = lambda a, b: {k: v for k, v in a.items() if k not in strip} == {k: v for k, v in b.items() if k not in strip}  # noqa: E731
    assert reports["2"]["jobs"] == 2 and reports["ok3"]["jobs"] == 3
    assert same(reports["1"], reports["2"])
    assert same(reports["ok1"], reports["ok3"])


# --------------------------------------------------------------------------- incremental audits


def test_incremental_audit_catches_history_rewritten_behind_the_checkpoint(story, capsys):
    """A rogue validator drops the guardian's denial and re-signs every block after it: a valid
    chain on its own, which a full audit accepts. The checkpoint knows better."""
    checkpoint = story.root / "rewrite" / "audit.json"
    checkpoint.parent.mkdir()
    code, doc = audit(capsys, "verify", "--data-dir", str(copy_of(story, "before-rewrite")),
                      "--write-checkpoint", str(checkpoint))
    assert code == 0 and doc["checkpoint_out"] == str(checkpoint)
    assert json.loads(checkpoint.read_text())["height"] == story.tip

    forged_dir = story.root / "copies" / "rewritten"
    genesis = load_genesis(story.genesis)
    original, forged = ChainStore.open(story.pristine), ChainStore.open(forged_dir, genesis)
    try:
        key = story.net.node_key("val-0")
        rewrite_history(original, forged, from_height=story.heights["denial"],
                        edit=lambda h, txs: [tx for tx in txs if tx.id != story.ids["denial"]],
                        validator_keys={key.public: key})
        for _ in range(3):  # and the forged chain grows past the checkpoint
            executed, _ = build_block(forged, [], time=forged.tip.time + 1000, proposer=key.public,
                                      last_commit=forged.commit(forged.height))
            forged.commit_block(executed, sign_commit([key], story.net.chain_id, executed.height, executed.hash))
        assert forged.height == story.tip + 3
    finally:
        original.close()
        forged.close()

    code, doc = audit(capsys, "verify", "--data-dir", str(forged_dir))
    assert code == 0, "a consistently re-signed history is a valid chain on its own"
    code, doc = audit(capsys, "verify", "--data-dir", str(forged_dir), "--from-checkpoint", str(checkpoint))
    assert code == 1
    assert failure(doc) == (story.tip, "checkpoint-header")
    assert doc["counts"]["blocks"] == 0


def test_incremental_audit_over_the_api_does_far_less_work(story, capsys):
    net = story.net
    checkpoint = story.root / "api" / "audit.json"
    checkpoint.parent.mkdir()
    code, full = audit(capsys, "verify", "--node", net.url(), "--write-checkpoint", str(checkpoint),
                       *story.key_args())
    assert code == 0, full["failure"]
    audited = full["checked_height"]

    post = net.txs.register_post(net.council[:2], "MD-NEW")

    async def more() -> None:
        async with NodeClient(net.url()) as c:
            await c.submit(post.raw, wait=True)

    run(more())
    net.wait_height(audited + 2)
    code, doc = audit(capsys, "verify", "--node", net.url(), "--from-checkpoint", str(checkpoint),
                      "--write-checkpoint", str(checkpoint), *story.key_args())
    assert code == 0, doc["failure"]
    assert doc["mode"] == "incremental"
    assert doc["range"]["from"] == audited + 1
    # only the blocks since the checkpoint are executed (how many depends on how long the full
    # audit took: blocks keep coming meanwhile, more on a busy machine)
    assert doc["counts"]["blocks"] == doc["checked_height"] - audited
    assert doc["counts"]["txs"] < full["counts"]["txs"]
    # the new post, and whatever else the new blocks hold (the nodes' access-log checkpoints)
    new = [net.get("val-0", f"/v1/blocks/{h}")["tx_ids"] for h in range(audited + 1, doc["checked_height"] + 1)]
    assert any(post.id.hex() in ids for ids in new)
    assert doc["counts"]["txs"] == sum(len(ids) for ids in new)
    assert "log-consistency" in doc["checks"] and "checkpoint-header" in doc["checks"]
    assert json.loads(checkpoint.read_text())["height"] == doc["checked_height"]


# --------------------------------------------------------------------------- over the API


def test_node_mode_verifies_the_live_chain(story, capsys):
    code, doc = audit(capsys, "verify", "--node", story.net.url(), "--genesis", str(story.genesis),
                      *story.key_args())
    assert code == 0, doc["failure"]
    assert doc["checked_height"] >= story.tip
    assert "status" in doc["checks"]
    assert {n["check"] for n in doc["not_checked"]} == {"hash-index", "tx-index", "log-node", "state", "tip-record",
                                                        "tx-order", "slot-record", "subject-index", "tree-node"}


class TamperingProxy:
    """A node that serves a real chain with one byte flipped in one transaction of one block."""

    def __init__(self, upstream: str, height: int) -> None:
        self.upstream, self.height = upstream, height
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    async def _handle(self, request: web.Request) -> web.Response:
        async with ClientSession(timeout=ClientTimeout(total=10)) as s:
            headers = {k: v for k, v in request.headers.items() if k == "Accept" or k.startswith("Custos-")}
            async with s.get(self.upstream + request.path_qs, headers=headers) as r:
                body, ctype, status = await r.read(), r.content_type, r.status
        if request.path == "/v1/blocks":
            doc = msgpack.unpackb(body, raw=False)
            first = int(request.query.get("from", 1))
            for i, item in enumerate(doc["blocks"]):
                if first + i == self.height:
                    item["block"] = flip_inside(item["block"], BLOCK.decode(item["block"]).txs[0])
            body = msgpack.packb(doc, use_bin_type=True)
        return web.Response(body=body, status=status, content_type=ctype)

    def __enter__(self) -> TamperingProxy:
        self._thread.start()

        async def start() -> web.AppRunner:
            app = web.Application()
            app.router.add_get("/{tail:.*}", self._handle)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            return runner

        self._runner = asyncio.run_coroutine_threadsafe(start(), self._loop).result(10)
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def test_node_serving_a_tampered_block_is_caught(story, capsys):
    h = story.heights["adult_batch"]
    with TamperingProxy(story.net.url(), h) as proxy:
        code, doc = audit(capsys, "verify", "--node", proxy.url, "--jobs", "2", *story.key_args())
    assert code == 1
    assert failure(doc) == (h, "tx-root")
    assert doc["checked_height"] == h - 1


def test_unreachable_node_exits_3(capsys):
    url = f"http://127.0.0.1:{free_ports(1)[0]}"
    assert main(["audit", "verify", "--node", url, "--timeout", "2s"]) == 3
    assert main(["audit", "prove", "00" * 32, "--node", url, "--timeout", "2s"]) == 3


def test_a_store_too_damaged_for_leveldb_to_open_is_a_finding_not_a_usage_error(story, tmp_path, capsys):
    copy = shutil.copytree(story.pristine, tmp_path / "copy")
    manifest = next(copy.glob("MANIFEST-*"))
    data = bytearray(manifest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    manifest.write_bytes(bytes(data))
    code, doc = audit(capsys, "verify", "--data-dir", str(copy))
    assert code == 1 and doc["failure"]["check"] == "store-readable" and "damaged" in doc["failure"]["message"]


def test_usage_and_input_errors_exit_2(story, tmp_path, capsys):
    # both a data directory and nodes (without either, the default node or $CUSTOS_NODES is audited)
    assert main(["audit", "verify", "--data-dir", str(tmp_path), "--node", "http://127.0.0.1:1"]) == 2
    assert main(["audit", "verify", "--data-dir", str(tmp_path), "--devnet", str(tmp_path)]) == 2
    assert main(["audit", "verify", "--data-dir", str(tmp_path / "nowhere")]) == 2
    assert main(["audit", "verify", "--data-dir", str(tmp_path)]) == 2  # not a data directory
    assert main(["audit", "verify", "--data-dir", str(story.pristine), "--jobs", "0"]) == 2
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert main(["audit", "verify", "--data-dir", str(story.pristine), "--from-checkpoint", str(bad)]) == 2
    assert main(["audit", "verify-receipt", str(bad)]) == 2
    deep = tmp_path / "deep.json"  # arrays in arrays, deeper than a JSON parser follows
    deep.write_text("[" * 100_000 + "]" * 100_000)
    assert main(["audit", "verify", "--data-dir", str(story.pristine), "--from-checkpoint", str(deep)]) == 2
    assert main(["audit", "verify", "--node", "127.0.0.1:8700"]) == 2  # no scheme
    assert main(["audit", "verify", "--data-dir", str(story.pristine), "--write-checkpoint",
                 str(tmp_path / "missing" / "cp.json")]) == 2
    assert main(["audit", "prove", "xyz", "--node", story.net.url()]) == 2
    assert main(["audit", "prove", "ab" * 32, "--node", story.net.url()]) == 2  # no such transaction
    capsys.readouterr()


def test_over_the_api_an_audit_without_an_auditor_key_exits_2_asking_for_one(story, tmp_path, capsys):
    url = story.net.url()
    assert main(["audit", "verify", "--node", url, "--json"]) == 2
    err = capsys.readouterr().err
    assert "auditor key is needed" in err and "--key" in err
    assert main(["audit", "prove", story.ids["approval_2"].hex(), "--node", url,
                 "--out", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert "auditor key is needed" in err and "--key" in err
    assert not (tmp_path / "r.json").exists()
    # a key with a role, but not one that reads every transaction: refused, and said so
    assert main(["audit", "verify", "--node", url, "--json", *story.key_args("terminal")]) == 2
    assert "refused" in capsys.readouterr().err
    # --key is for reads over the API
    assert main(["audit", "verify", "--data-dir", str(story.pristine), *story.key_args()]) == 2
    capsys.readouterr()


def test_the_installed_command_audits_a_live_node_with_an_auditor_key(story):
    proc = subprocess.run([sys.executable, "-m", "node.cli", "audit", "verify", "--node", story.net.url(),
                           "--genesis", str(story.genesis), "--no-progress", *story.key_args()],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "VALID" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "node.cli", "audit", "verify", "--node", story.net.url()],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2 and "--key" in proc.stderr, proc.stderr


def test_a_running_node_holds_the_lock(story, capsys):
    code = main(["audit", "verify", "--data-dir", str(story.net.dir / "val-0")])
    assert code == 2
    assert "locked" in capsys.readouterr().err


# --------------------------------------------------------------------------- receipts


def test_prove_and_verify_receipt_round_trip(story, tmp_path, capsys):
    receipt = tmp_path / "receipt.json"
    tx = story.ids["approval_2"].hex()
    code = main(["audit", "prove", tx, "--node", story.net.url(), "--out", str(receipt),
                 "--genesis", str(story.genesis), "--json", *story.key_args()])
    verdict = json.loads(capsys.readouterr().out)
    assert code == 0 and verdict["ok"] and verdict["anchored"], verdict
    assert verdict["height"] == story.heights["approval_2"]
    assert verdict["committed_power"] == 300 and verdict["total_power"] == 400
    assert verdict["set_changes"] == 1  # anchored in genesis through the second validator's bonding

    code, doc = audit(capsys, "verify-receipt", str(receipt), "--genesis", str(story.genesis))
    assert code == 0 and doc["trust_anchor"]["kind"] == "genesis"
    # proven from nothing the auditor holds: written, and said to be unanchored (exit 2)
    unanchored = tmp_path / "unanchored.json"
    code = main(["audit", "prove", tx, "--node", story.net.url(), "--out", str(unanchored), *story.key_args()])
    assert code == 2 and "--genesis FILE" in capsys.readouterr().err and unanchored.exists()
    code = main(["audit", "verify-receipt", str(receipt), "--json"])
    captured = capsys.readouterr()
    assert code == 2 and json.loads(captured.out)["anchored"] is False  # consistent, anchored in nothing
    assert "--genesis FILE" in captured.err
    code, doc = audit(capsys, "verify-receipt", str(receipt), "--validators-hash", "00" * 32)
    assert code == 1 and doc["failure"]["check"] == "anchor-validators"

    original = json.loads(receipt.read_text())
    cases = {
        "inclusion": lambda d: d["log"].__setitem__("path", [bytes(32).hex(), *d["log"]["path"][1:]]),
        "tx-id": lambda d: d.__setitem__("tx_id", "11" * 32),
        "commit-signature": lambda d: d.__setitem__("commit", flip_inside(
            bytes.fromhex(d["commit"]), COMMIT.decode(bytes.fromhex(d["commit"])).signatures[0].signature).hex()),
        "block-height": lambda d: d.__setitem__("height", d["height"] - 1),
        "block-position": lambda d: d.__setitem__("index", d["index"] + 1),
        "header-hash": lambda d: d.__setitem__("header_hash", "22" * 32),
    }
    for check, tamper in cases.items():
        doc = json.loads(json.dumps(original))
        tamper(doc)
        receipt.write_text(json.dumps(doc))
        code, verdict = audit(capsys, "verify-receipt", str(receipt), "--genesis", str(story.genesis))
        assert code == 1, check
        assert verdict["failure"]["check"] == check
    # arrays in arrays, deeper than a JSON parser follows: an unreadable file, not a crash
    receipt.write_text('{"format": "custos-receipt/2", "a": ' + "[" * 100_000 + "]" * 100_000 + "}")
    code = main(["audit", "verify-receipt", str(receipt), "--genesis", str(story.genesis)])
    err = capsys.readouterr().err
    assert code == 2 and "nested too deeply" in err and "Traceback" not in err


def test_a_crossing_receipt_proves_its_final_outcome(story, tmp_path, capsys):
    receipt = tmp_path / "crossing-receipt.json"
    tx = story.ids["denied_request"].hex()
    code = main(["audit", "prove", tx, "--node", story.net.url(), "--out", str(receipt),
                 "--genesis", str(story.genesis), "--json", *story.key_args()])
    verdict = json.loads(capsys.readouterr().out)
    assert code == 0 and verdict["ok"], verdict
    assert verdict["proven_outcome"]["status"] == "denied"
    assert verdict["proven_outcome"]["height"] >= verdict["height"]


def test_the_installed_command_reports_through_its_exit_code(story):
    """One run through a real process: the summary on stdout, exit code 1 on a tampered copy."""
    with Tampered(story, "subprocess") as t:
        height, check = _drop_block(t, story)
    proc = subprocess.run([sys.executable, "-m", "node.cli", "audit", "verify", "--data-dir", str(t.path)],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1, proc.stderr
    assert f"INVALID at height {height}" in proc.stdout and check in proc.stdout


def test_another_pinned_genesis_is_the_anchor_the_report_names(story, capsys, tmp_path):
    text = story.genesis.read_text()
    other = tmp_path / "other.toml"
    other.write_text(re.sub(r"genesis_time = (\d+)", lambda m: f"genesis_time = {int(m.group(1)) + 1}", text))
    pinned = load_genesis(other).hash
    code, doc = audit(capsys, "verify", "--data-dir", str(copy_of(story, "other-genesis")), "--genesis", str(other))
    assert code == 1 and doc["failure"]["check"] == "genesis-hash"
    assert doc["trust_anchor"]["genesis_hash"] == pinned.hex() != load_genesis(story.genesis).hash.hex()
