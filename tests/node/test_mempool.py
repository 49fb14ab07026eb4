"""The mempool carries pending client transactions over a block without running their rules
again unless the block (or a change before them) touched what they read."""

from __future__ import annotations

from ledger.chain import execute_block
from node.mempool import Mempool
from tests.ledger.chainkit import Chain


def mempool_on(chain: Chain) -> Mempool:
    return Mempool(chain.store, lambda: chain.now + 1)


def written(executed) -> list[bytes]:
    return [key for key, _ in executed.changes.writes]


def test_a_block_that_touches_nothing_a_pending_crossing_read_leaves_it_unchecked():
    chain = Chain()
    authority, terminal = chain.open_border()
    ana, bob = chain.enrol_child(authority, minor=False), chain.enrol_child(authority, minor=False)
    pool = mempool_on(chain)
    first, second = chain.crossing(terminal, ana), chain.crossing(terminal, bob)
    assert pool.add(first) and pool.add(second)
    executed = chain.commit(first)
    assert pool.update([first.id], written(executed)) == []
    assert pool.last_update == (0, 1)  # bob's crossing was carried over, not executed again
    assert second.id in pool and len(pool) == 1


def test_a_pending_crossing_whose_terminal_the_block_revoked_is_dropped():
    chain = Chain()
    authority, terminal = chain.open_border()
    ana = chain.enrol_child(authority, minor=False)
    pool = mempool_on(chain)
    crossing = chain.crossing(terminal, ana)
    pool.add(crossing)
    executed = chain.commit(chain.revoke(terminal.public))
    dropped = pool.update([], written(executed))
    assert [tx.id for tx, _ in dropped] == [crossing.id]
    assert pool.last_update == (1, 0) and len(pool) == 0


def test_a_pending_transaction_that_read_what_a_removed_one_wrote_is_checked_again():
    chain = Chain()
    authority, terminal = chain.open_border()
    pool = mempool_on(chain)
    child = chain.new_child()
    enrolment = chain.enrol(authority, child)
    crossing = chain.crossing(terminal, child)  # valid only on top of the pending enrolment
    assert pool.add(enrolment) and pool.add(crossing)
    pool.remove(enrolment.id)  # e.g. a proposal left it out
    dropped = pool.update([], [])
    assert [tx.id for tx, _ in dropped] == [crossing.id]


def test_a_proposal_reuses_the_transactions_the_mempool_decoded_and_verified():
    chain = Chain()
    authority, terminal = chain.open_border()
    ana = chain.enrol_child(authority, minor=False)
    pool = mempool_on(chain)
    tx = chain.crossing(terminal, ana)
    pool.add(tx)
    block, _ = chain.propose([tx])
    executed = execute_block(chain.store, block.block, known=pool.admitted)
    assert executed.txs[0] is tx  # not decoded (nor its signatures checked) a second time
