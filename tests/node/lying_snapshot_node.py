"""A node that serves state-sync chunks it has tampered with, for tests only.

Run it as the node is run (``python -m tests.node.lying_snapshot_node node start --config FILE``):
the real node, same command line and code, with one change made from outside. Every chunk it
serves says something plausible and false: a state chunk's first record carries another value,
a transaction chunk's first transaction another result. The bytes decode; only checking them
against the manifest (and so against the certified header) shows the lie. Everything else it
does, consensus included, is honest.

With ``CUSTOS_TEST_LIE=offer`` it lies earlier instead: it offers its snapshot as one of a
height a thousand blocks beyond its chain, so that a joining node, which takes the highest
offer, finds no header to certify it by.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace

from ledger.snapshot import make
from ledger.snapshot.format import CHUNK
from node.cli import main
from node.statesync.messages import Offer

_honest = make.chunk_bytes


def _lying_chunk_bytes(source, plan, index: int) -> bytes:
    chunk = CHUNK.decode(_honest(source, plan, index))
    if chunk.parts:
        for i, part in enumerate(chunk.parts):
            if part.records:
                first = part.records[0]
                lie = replace(part, records=(replace(first, value=first.value + b"\x00"), *part.records[1:]))
                chunk = replace(chunk, parts=(*chunk.parts[:i], lie, *chunk.parts[i + 1:]))
                break
    elif chunk.txs:
        first = chunk.txs[0]
        status = "permitted" if first.status != "permitted" else "denied"
        chunk = replace(chunk, txs=(replace(first, status=status), *chunk.txs[1:]))
    return CHUNK.encode(chunk)


def _inflated_offer(self, peer: bytes) -> None:
    newest = self._held[-1].plan if self._held else None
    if newest is None:
        self.send(peer, Offer(0, b"", 0, 0))
    else:
        self.send(peer, Offer(newest.manifest.height + 1000, newest.hash, len(newest.encoded), newest.chunk_count))


if __name__ == "__main__":
    from node.statesync import server

    if os.environ.get("CUSTOS_TEST_LIE") == "offer":
        server.SnapshotServer._offer = _inflated_offer  # type: ignore[method-assign]
    else:
        server.chunk_bytes = _lying_chunk_bytes  # type: ignore[assignment]
    sys.exit(main(sys.argv[1:]))
