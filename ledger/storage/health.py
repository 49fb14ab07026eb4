"""Is the stored chain whole? Checks a node runs at start and, slowly, all the time.

A LevelDB table truncated or zeroed on disk is found only when something reads it: a node
could start, serve errors for most of its blocks and still look healthy. So:

* :func:`check_recent`, at start: the tip record names a block the store holds, with that
  hash and its commit, and the blocks below it (``depth`` of them) read back, decode, and
  chain to each other by hash. A store that fails is refused: the node does not start on it.
* :class:`Patrol`, while running: reads every stored block and commit, a few at a time, from
  the tip down, round and round, with LevelDB's checksums verified (no decoding: it is meant
  to cost next to nothing). What fails marks the store damaged
  (:meth:`ChainStore.mark_damaged <ledger.storage.chainstore.ChainStore.mark_damaged>`), which
  the node's health check reports.

Both raise or record :class:`~ledger.errors.StorageError` naming the height and what is wrong.
"""

from __future__ import annotations

from ledger.errors import CustosError, StorageError
from ledger.storage.chainstore import ChainStore


def check_block(store: ChainStore, height: int, expected_hash: bytes | None = None) -> bytes:
    """Block ``height`` and its commit read back and agree; returns the block's ``prev_hash``."""
    try:
        block = store.block(height)
        commit = store.commit(height)
    except StorageError:
        raise
    except CustosError as exc:  # a record that reads but does not decode
        raise StorageError(f"block {height} or its commit does not decode: {exc}") from None
    if block is None:
        raise StorageError(f"block {height} is missing from the store")
    if expected_hash is not None and block.hash != expected_hash:
        raise StorageError(f"block {height} has hash {block.hash.hex()[:16]}, but the chain above it expects "
                           f"{expected_hash.hex()[:16]}")
    if commit is None or commit.block != block.hash or commit.height != height:
        raise StorageError(f"the commit certificate of block {height} is missing or names another block")
    return block.header.prev_hash


def check_recent(store: ChainStore, depth: int = 16) -> None:
    """The tip and the ``depth`` blocks below it are stored whole (see the module notes). A store
    that began from a state-sync snapshot holds no block at or below its base: there, the
    certified header it began from and its commit must read back and continue the chain above."""
    tip = store.tip
    base = store.base
    expected: bytes | None = tip.hash
    for height in range(tip.height, max(base, tip.height - depth), -1):
        expected = check_block(store, height, expected)
    if base and tip.height - depth < base:
        check_base(store, base, expected)
    if store.damage:
        raise StorageError(store.damage)


def check_base(store: ChainStore, base: int, expected_hash: bytes | None) -> None:
    """The header a store that began from a snapshot holds at its base, and its commit."""
    try:
        header, commit = store.header(base), store.commit(base)
    except StorageError:
        raise
    except CustosError as exc:
        raise StorageError(f"the header the store began from ({base}) or its commit does not decode: {exc}") from None
    if header is None or (expected_hash is not None and header.hash != expected_hash):
        raise StorageError(f"the header the store began from ({base}) is missing or is not the chain's below")
    if commit is None or commit.block != header.hash or commit.height != base:
        raise StorageError(f"the commit certificate of the header the store began from ({base}) is missing or "
                           "names another block")


class Patrol:
    """Reads the stored blocks from the tip down, ``step`` at a time; wraps around at 1 (or above
    the base of a store that began from a snapshot)."""

    def __init__(self, store: ChainStore) -> None:
        self.store = store
        self._base = store.base  # written once, when the store began: read here, not on the thread
        self._next = 0
        #: blocks read back since start
        self.checked = 0

    def step(self, count: int) -> str | None:
        """Check up to ``count`` blocks; the damage found (also marked on the store), or None."""
        for _ in range(count):
            base = self._base  # a store begun from a snapshot holds no block at or below it
            if self._next <= base:
                self._next = self.store.height
                if self._next <= base:
                    return None
            height = self._next
            self._next -= 1
            try:
                block, commit = self.store.read_verified(height)
                if block is None or commit is None:
                    raise StorageError(f"block {height} or its commit is missing from the store")
            except StorageError as exc:
                self.store.mark_damaged(str(exc))
                return str(exc)
            self.checked += 1
        return None
