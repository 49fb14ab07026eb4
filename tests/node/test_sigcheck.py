"""Signature checks on worker threads hand over only transactions whose signatures verify."""

from __future__ import annotations

import pytest

from ledger.chain import execute_block
from ledger.encoding import decode, encode
from node.sigcheck import SigChecker
from tests.ledger.chainkit import Chain


@pytest.fixture
def checker():
    c = SigChecker()
    yield c
    c.close()


def test_a_block_checked_ahead_executes_as_without_the_workers(checker):
    chain = Chain()
    authority, terminal = chain.open_border()
    adult = chain.enrol_child(authority, minor=False)
    executed, _ = chain.propose([chain.crossing(terminal, adult) for _ in range(150)])
    ahead = execute_block(chain.store, executed.block, known=checker.ahead(chain.chain_id, executed.block.txs))
    assert ahead.changes.state_root == executed.changes.state_root
    assert [tx.id for tx in ahead.txs] == [tx.id for tx in executed.txs]


def test_a_forged_signature_is_not_handed_over(checker):
    chain = Chain()
    authority, terminal = chain.open_border()
    adult = chain.enrol_child(authority, minor=False)
    txs = [chain.crossing(terminal, adult) for _ in range(100)]
    envelope = decode(txs[70].raw)
    envelope["sigs"][1]["sig"] = bytes(64)  # the terminal's signature replaced by zeros
    forged = encode(envelope)
    raws = [tx.raw for tx in txs[:70]] + [forged] + [tx.raw for tx in txs[71:]]
    known = checker.ahead(chain.chain_id, raws)
    assert known(forged) is None  # execution checks it itself, and refuses the block naming it
    handed = [known(raw) for raw in raws if raw != forged]
    assert all(tx is not None for tx in handed) and len(handed) == 99
