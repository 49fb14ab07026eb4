"""One access-log entry: who read what, when, and why, as canonical bytes.

An entry names a child only by its tag (ledger.privacy.tags.child_tag), never by identity id,
so the log holds nothing that names a child once the child's records are erased. Its leaf in
the log's RFC 6962 tree is ``SHA-256(0x00 || canonical msgpack of the entry)``.

Fields (all present; absent values are nil):

=========  ===================================================================================
``time``   the node's clock when it served the read (ms since the Unix epoch, UTC)
``reader`` the signing key (32 bytes)
``role``   what the state made of that key then: ``guardian``, ``terminal``,
           ``enrolment-authority``, ``oversight``, ``auditor``, ``council``, ``node``
``child``  the child's tag (32 bytes), or nil for a read that names no one child (a block,
           the block feed, an authority's alert stream)
``kind``   what was read (:data:`KINDS`; ``proof``: a record proven at a recent height)
``record`` the request, consent or transaction id, or the block height (8 bytes), or nil
``purpose`` the stated purpose code (node.access.purpose)
``ref``    the hash of the stated reference, or nil
=========  ===================================================================================
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger.encoding import Bytes, Int, Optional, Schema, Str
from ledger.merkle import leaf_hash
from node.access.purpose import PURPOSES

KINDS = ("identity", "requests", "request", "consent", "alerts", "pending", "terminal-requests", "events",
         "identify", "tx", "block", "blocks", "access-log", "proof")


@dataclass(frozen=True, slots=True)
class Entry:
    time: int
    reader: bytes
    role: str
    child: bytes | None
    kind: str
    record: bytes | None
    purpose: str
    ref: bytes | None

    @property
    def raw(self) -> bytes:
        return ENTRY.encode(self)

    @property
    def leaf(self) -> bytes:
        return leaf_hash(self.raw)


ENTRY = Schema(
    Entry,
    {
        "time": Int(),
        "reader": Bytes(32),
        "role": Str(max=32),
        "child": Optional(Bytes(32)),
        "kind": Str(max=24, choices=KINDS),
        "record": Optional(Bytes(min=8, max=32)),
        "purpose": Str(max=32, choices=tuple(PURPOSES)),
        "ref": Optional(Bytes(32)),
    },
)


def decode_entry(raw: bytes) -> Entry:
    """An entry from its canonical bytes (raises ledger.errors.DecodeError otherwise)."""
    return ENTRY.decode(raw)
