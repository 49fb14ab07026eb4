"""Block sync: a node that was down, or an observer, fetches decided blocks from its peers.

Every node tells its peers its height now and then (``status``). A node that sees a peer ahead
of it asks that peer for the next blocks (``get``) and receives them with the commit
certificate that decided each and its recorded slot changes (``blocks``). Nothing a peer sends
is trusted: each block is applied only if its certificate carries precommits of more than 2/3 of
the stake of the validator set in force at its height (as this node's own state computes it), and
if its full re-execution checks out. A block whose erased transactions are stubs re-executes with
the slot changes standing in for the erased children's records; its certified state root checks
them (docs/adr/0002-authenticated-state.md).

Messages are canonical msgpack maps on the block-sync channel; every field is bounded.
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger.encoding import Bytes, Int, List, Optional, Schema, Str, decode, encode
from ledger.errors import DecodeError

MAX_BLOCKS_PER_RESPONSE = 20
MAX_RESPONSE_BYTES = 12 * 1024 * 1024

STATUS, GET, BLOCKS = "status", "get", "blocks"


@dataclass(frozen=True, slots=True)
class Status:
    height: int


@dataclass(frozen=True, slots=True)
class Get:
    start: int
    limit: int


@dataclass(frozen=True, slots=True)
class Item:
    block: bytes
    commit: bytes | None
    slots: bytes | None = None  # the block's recorded slot changes (ChainStore.slots_bytes)


@dataclass(frozen=True, slots=True)
class Blocks:
    items: tuple[Item, ...]


ITEM = Schema(Item, {"block": Bytes(max=MAX_RESPONSE_BYTES), "commit": Optional(Bytes(max=64 * 1024)),
                     "slots": Optional(Bytes(max=2 * 1024 * 1024))})
SCHEMAS: dict[str, Schema] = {
    STATUS: Schema(Status, {"height": Int()}),
    GET: Schema(Get, {"start": Int(min=1), "limit": Int(min=1, max=MAX_BLOCKS_PER_RESPONSE)}),
    BLOCKS: Schema(Blocks, {"items": List(ITEM, max=MAX_BLOCKS_PER_RESPONSE)}),
}
_TYPE = Str(max=8, choices=tuple(SCHEMAS))


def encode_sync(msg: Status | Get | Blocks) -> bytes:
    kind = {Status: STATUS, Get: GET, Blocks: BLOCKS}[type(msg)]
    return encode({"body": SCHEMAS[kind].wire(msg), "type": kind})


def decode_sync(data: bytes) -> Status | Get | Blocks:
    value = decode(data, max_size=MAX_RESPONSE_BYTES + 4096)
    if type(value) is not dict or sorted(value) != ["body", "type"]:
        raise DecodeError("a sync message is {type, body}")
    kind = _TYPE.check(value["type"], "type")
    return SCHEMAS[kind].check(value["body"], "body")
