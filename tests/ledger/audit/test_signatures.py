"""The signature pass: its fast reading of a transaction never disagrees with ``decode_tx`` on
anything ``decode_tx`` accepts, and its verdicts come back in height order."""

from __future__ import annotations

from concurrent.futures import Future

import msgpack
import pytest
from chainkit import Chain

from ledger.audit.signatures import prepare, tx_signing_parts, verified_blocks, verify_task
from ledger.audit.source import StoreSource
from ledger.crypto.keys import DOMAIN_TX, sign_bytes, verify_raw
from ledger.encoding import decode, encode
from ledger.errors import CustosError
from ledger.tx.envelope import decode_tx

from .chainforge import flip


@pytest.fixture(scope="module")
def txs() -> tuple[Chain, list[bytes]]:
    c = Chain()
    authority, terminal = c.open_border()
    child = c.enrol_child(authority)
    request = c.pending_crossing(terminal, child)
    c.commit(c.approve(child.guardians[0], request, child), c.grant_consent(child))
    raws = [raw for h in range(1, c.height + 1) for raw in c.store.block(h).txs]
    return c, raws


def test_fast_reading_agrees_with_decode_tx(txs):
    c, raws = txs
    for raw in raws:
        tx = decode_tx(raw)
        tx_id, pairs = tx_signing_parts(raw)
        assert tx_id == tx.id
        assert pairs == [(s.key, s.sig) for s in tx.sigs]
    assert verify_task(c.chain_id, raws, []) == ([], [])
    assert verify_task("another-chain", raws[:2], []) == ([0, 1], [])


def test_every_single_bit_flip_gets_the_verdict_decode_tx_implies(txs):
    """Whatever a flip does, if ``decode_tx`` still accepts the bytes, the workers' verdict is
    exactly "some signature fails"; otherwise the replay rejects the encoding anyway."""
    c, raws = txs
    raw = raws[-1]  # a consent: two guardians' signatures
    for offset in range(len(raw)):
        for bit in (0x01, 0x80):
            b = bytearray(raw)
            b[offset] ^= bit
            mutated = bytes(b)
            bad, _ = verify_task(c.chain_id, [mutated], [])
            try:
                tx = decode_tx(mutated)
            except CustosError:
                continue
            assert (bad == [0]) == bool(tx.bad_signatures(c.chain_id)), offset


def test_non_canonical_envelopes_are_left_to_the_replay(txs):
    c, raws = txs
    value = decode(raws[0])
    padded = msgpack.packb({"kind": value["kind"], "body": value["body"], "nonce": value["nonce"],
                            "sigs": value["sigs"]}, use_bin_type=True)  # keys out of order
    extra = encode(dict(value, zzz=1))
    for raw in (padded, extra, b"", b"\x84", raws[0] + b"\x00"):
        assert tx_signing_parts(raw) is None or not _decodes(raw)


def _decodes(raw: bytes) -> bool:
    try:
        decode_tx(raw)
        return True
    except CustosError:
        return False


def test_vote_signatures_are_checked_one_by_one(txs):
    c, _ = txs
    commit = c.store.commit(1)
    from ledger.block import PRECOMMIT, vote_digest
    from ledger.crypto.keys import DOMAIN_VOTE

    message = sign_bytes(DOMAIN_VOTE, c.chain_id, vote_digest(PRECOMMIT, 1, commit.round, commit.block))
    votes = [(s.validator, message, s.signature) for s in commit.signatures]
    assert verify_raw(*votes[0])
    votes.append((votes[0][0], message, flip(votes[0][2], 5)))
    assert verify_task(c.chain_id, [], votes) == ([], [len(votes) - 1])
    assert sign_bytes(DOMAIN_TX, c.chain_id, bytes(32)) != message


def _flipped_items(c: Chain) -> list:
    """The chain's heights, with a transaction signature in the last block and a precommit of
    the first made bad."""
    items = list(StoreSource(c.store.kv).blocks(1, c.height))
    h, block_raw, commit_raw = items[-1]
    tx = prepare(h, block_raw, commit_raw).block.txs[1]
    items[-1] = (h, block_raw.replace(tx, flip(tx, -5)), commit_raw)
    first = prepare(*items[0])
    items[0] = (1, items[0][1], items[0][2].replace(first.commit.signatures[0].signature,
                                                    flip(first.commit.signatures[0].signature, 3)))
    return items


def _check_verdicts(c: Chain, seen: list) -> None:
    assert [p.height for p, _ in seen] == list(range(1, c.height + 1))
    verdicts = {p.height: v for p, v in seen}
    assert verdicts[1].commit_ok is False and verdicts[1].last_commit_ok
    assert verdicts[c.height].bad_txs == {1}
    assert all(v.all_ok for height, v in verdicts.items() if height not in (1, c.height))


class StalledPool:
    """A pool whose worker never starts a task: what it is given stays pending."""

    def __init__(self) -> None:
        self.given: list[Future] = []

    def submit(self, fn, *args) -> Future:
        future: Future = Future()
        self.given.append(future)
        return future


def test_tasks_no_worker_started_are_taken_back_and_verified_by_the_replaying_process(txs):
    c, _ = txs
    pool = StalledPool()
    blocks = verified_blocks(_flipped_items(c), c.chain_id, pool, 1, task_signatures=3)  # type: ignore[arg-type]
    seen = [next(blocks)]
    # tasks of later heights went to the pool before the first verdict came back (so a free
    # worker would not have waited for the replay to ask): still pending there
    assert any(not f.cancelled() for f in pool.given)
    seen += list(blocks)
    _check_verdicts(c, seen)
    assert pool.given and all(f.cancelled() for f in pool.given)


def test_verdicts_come_in_height_order_across_small_tasks(txs, pool):
    c, _ = txs
    _check_verdicts(c, list(verified_blocks(_flipped_items(c), c.chain_id, pool, 1, task_signatures=3)))
