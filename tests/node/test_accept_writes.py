"""A node answers "accepted" only once the transaction is on disk, and a busy node does not pay
one synchronous write per submission: those accepted while a write is on its way share the next."""

from __future__ import annotations

import asyncio
import threading

from node.app import NodeApp, Submitted
from tests.ledger.chainkit import Chain


def test_submissions_accepted_while_a_write_is_on_its_way_share_the_next_one():
    chain = Chain()
    authority, terminal = chain.open_border()
    adult = chain.enrol_child(authority, minor=False)
    raws = [chain.crossing(terminal, adult).raw for _ in range(4)]
    app = NodeApp(chain.store, clock_ms=lambda: chain.store.tip.time + 500)
    writes: list[list[int]] = []
    disk_free = threading.Event()
    real_accept = chain.store.accept

    def slow_accept(records: dict[int, bytes]) -> None:  # a disk that syncs slowly
        writes.append(sorted(records))
        assert disk_free.wait(10)
        real_accept(records)

    chain.store.accept = slow_accept  # type: ignore[method-assign]

    async def submit(raw: bytes) -> Submitted:
        (outcome,) = await app.submit_many([raw])
        assert isinstance(outcome, Submitted)
        await app.durable()
        return outcome

    async def story() -> list[Submitted]:
        first = asyncio.create_task(submit(raws[0]))
        for _ in range(500):  # until the first write is on its way
            await asyncio.sleep(0.01)
            if writes:
                break
        later = []
        for raw in raws[1:]:  # one at a time, each in a loop iteration of its own
            later.append(asyncio.create_task(submit(raw)))
            await asyncio.sleep(0.02)
        assert not any(t.done() for t in [first, *later])  # nobody is told "accepted" before the disk
        disk_free.set()
        return await asyncio.gather(first, *later)

    try:
        outcomes = asyncio.run(story())
    finally:
        disk_free.set()
        app.close()
    assert [o.status for o in outcomes] == ["accepted"] * 4
    assert [len(w) for w in writes] == [1, 3]
    assert len(list(chain.store.accepted())) == 4
