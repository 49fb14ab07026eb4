"""State-sync messages between nodes (p2p channel ``STATE_SYNC``): canonical msgpack, every
field bounded.

================  =========================================================================
request           answer
================  =========================================================================
``offer?``        ``offer``: the newest snapshot the peer holds (height 0: none yet); its
                  manifest's hash, size and chunk count
``headers?``      ``headers``: consecutive headers from ``start``, each with its commit
                  certificate and, where the validator set changes, the next set (what
                  :mod:`ledger.light` needs to certify a header from genesis)
``manifest?``     ``manifest``: the manifest of the snapshot at ``height`` with ``hash``
                  (empty bytes: no longer held)
``chunk?``        ``chunk``: chunk ``index`` of that snapshot (empty bytes: no longer held)
================  =========================================================================

Nothing an answer says is trusted: the joining node certifies the header, then checks the
manifest against it and each chunk against the manifest (:mod:`ledger.snapshot.verify`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger.encoding import Bytes, Int, List, Optional, Schema, Str, decode, encode
from ledger.errors import DecodeError
from ledger.snapshot.format import MAX_CHUNK_BYTES, MAX_MANIFEST_BYTES, MAX_PARTS

MAX_HEADERS = 500
MAX_HEADERS_BYTES = 4 * 1024 * 1024
_HASH = Bytes(32)


@dataclass(frozen=True, slots=True)
class GetOffer:
    pass


@dataclass(frozen=True, slots=True)
class Offer:
    height: int  # 0: no snapshot yet
    hash: bytes
    size: int
    chunks: int


@dataclass(frozen=True, slots=True)
class GetHeaders:
    start: int
    limit: int


@dataclass(frozen=True, slots=True)
class HeaderItem:
    header: bytes
    commit: bytes
    next_validators: bytes | None


@dataclass(frozen=True, slots=True)
class Headers:
    start: int
    items: tuple[HeaderItem, ...]


@dataclass(frozen=True, slots=True)
class GetManifest:
    height: int
    hash: bytes


@dataclass(frozen=True, slots=True)
class ManifestReply:
    height: int
    hash: bytes
    data: bytes


@dataclass(frozen=True, slots=True)
class GetChunk:
    height: int
    hash: bytes
    index: int


@dataclass(frozen=True, slots=True)
class ChunkReply:
    height: int
    hash: bytes
    index: int
    data: bytes


Message = GetOffer | Offer | GetHeaders | Headers | GetManifest | ManifestReply | GetChunk | ChunkReply

_SCHEMAS: dict[str, tuple[type, Schema]] = {
    "offer?": (GetOffer, Schema(GetOffer, {})),
    "offer": (Offer, Schema(Offer, {"height": Int(), "hash": Bytes(max=32), "size": Int(max=MAX_MANIFEST_BYTES),
                                    "chunks": Int(max=2 * MAX_PARTS)})),
    "headers?": (GetHeaders, Schema(GetHeaders, {"start": Int(min=1), "limit": Int(min=1, max=MAX_HEADERS)})),
    "headers": (Headers, Schema(Headers, {"start": Int(min=1), "items": List(Schema(HeaderItem, {
        "header": Bytes(max=4096), "commit": Bytes(max=64 * 1024), "next_validators": Optional(Bytes(max=64 * 1024)),
    }), max=MAX_HEADERS)})),
    "manifest?": (GetManifest, Schema(GetManifest, {"height": Int(min=1), "hash": _HASH})),
    "manifest": (ManifestReply, Schema(ManifestReply, {"height": Int(min=1), "hash": _HASH,
                                                       "data": Bytes(max=MAX_MANIFEST_BYTES)})),
    "chunk?": (GetChunk, Schema(GetChunk, {"height": Int(min=1), "hash": _HASH, "index": Int(max=2 * MAX_PARTS)})),
    "chunk": (ChunkReply, Schema(ChunkReply, {"height": Int(min=1), "hash": _HASH, "index": Int(max=2 * MAX_PARTS),
                                              "data": Bytes(max=MAX_CHUNK_BYTES)})),
}
_KIND = {cls: kind for kind, (cls, _) in _SCHEMAS.items()}
_TYPE = Str(max=16, choices=tuple(_SCHEMAS))
MAX_MESSAGE_BYTES = MAX_MANIFEST_BYTES + 4096


def encode_message(msg: Message) -> bytes:
    kind = _KIND[type(msg)]
    return encode({"body": _SCHEMAS[kind][1].wire(msg), "type": kind})


def decode_message(data: bytes) -> Message:
    value = decode(data, max_size=MAX_MESSAGE_BYTES)
    if type(value) is not dict or sorted(value) != ["body", "type"]:
        raise DecodeError("a state-sync message is {type, body}")
    kind = _TYPE.check(value["type"], "type")
    return _SCHEMAS[kind][1].check(value["body"], "body")
