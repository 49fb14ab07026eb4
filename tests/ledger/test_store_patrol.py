"""The health patrol reads blocks on a thread of its own while a purge reopens the store's files:
it must never read a closed database (a node whose patrol failed stopped)."""

from __future__ import annotations

import threading

from chainkit import Chain

from ledger.storage.health import Patrol


def test_the_patrol_reads_on_while_the_store_reopens_its_files(tmp_path):
    chain = Chain(path=tmp_path / "store")  # a real LevelDB store
    for _ in range(6):
        chain.advance(1)
    patrol = Patrol(chain.store)
    errors: list[str] = []
    stop = threading.Event()

    def patrol_on() -> None:
        while not stop.is_set():
            try:
                found = patrol.step(4)
            except Exception as exc:  # what the node's patrol task died of
                found = repr(exc)
            if found is not None:
                errors.append(found)
                return

    thread = threading.Thread(target=patrol_on)
    thread.start()
    try:
        for _ in range(40):
            chain.store.reopen_files()
    finally:
        stop.set()
        thread.join(10)
    assert errors == [] and patrol.checked > 0
    assert chain.store.damage is None
