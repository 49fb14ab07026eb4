"""The signed transaction envelope.

Wire form (canonical msgpack map)::

    {"body": {...}, "kind": "crossing.request", "nonce": <uint64>, "sigs": [{"key": pk, "sig": s}, ...]}

The transaction id is the tagged hash of the *unsigned* part (kind, body, nonce). Signatures are
witnesses over ``sign_bytes("tx", chain_id, id)``: they bind the chain id, and two envelopes that
differ only in which council members signed still have one id, so a transaction can be committed
at most once. The client-chosen ``nonce`` lets a sender issue the same body twice on purpose
(bond 10, then 20, then 10 again), while an identical resubmission keeps its id and is answered
with the original result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from ledger.crypto.keys import DOMAIN_TX, SigningKey, sign_bytes, verify_raw
from ledger.encoding import Bytes, Schema, decode, encode, pack
from ledger.errors import DecodeError
from ledger.hashing import TAG_TX, tagged_hash
from ledger.tx.bodies import BODIES

MAX_TX_BYTES = 64 * 1024
MAX_SIGS = 16
NONCE_MAX = 2**64 - 1
_ENVELOPE_KEYS = ("body", "kind", "nonce", "sigs")


@dataclass(frozen=True, slots=True)
class Sig:
    key: bytes
    sig: bytes


SIG = Schema(Sig, {"key": Bytes(32), "sig": Bytes(64)})
_SIGS_KEY = pack("sigs")
_SIG_BYTES = len(SIG.encode(Sig(bytes(32), bytes(64))))  # every checked signature encodes to this many


class Transaction:
    """A decoded, well-formed envelope. Construct with :func:`make_tx` or :func:`decode_tx`.

    ``raw`` is its canonical encoding (what blocks and the log hold); ``id`` the tagged hash of
    the unsigned part.
    """

    __slots__ = ("_signers", "_unsigned", "body", "id", "kind", "nonce", "raw", "sigs")

    def __init__(self, kind: str, body: Any, nonce: int, sigs: tuple[Sig, ...], raw: bytes,
                 unsigned: bytes) -> None:
        self.kind = kind
        self.body = body
        self.nonce = nonce
        self.sigs = sigs
        self.raw = raw
        self._unsigned = unsigned
        self.id = tagged_hash(TAG_TX, unsigned)
        self._signers: frozenset[bytes] | None = None

    @property
    def signers(self) -> frozenset[bytes]:
        """The keys that signed (each rule that checks signers asks: made once)."""
        if self._signers is None:
            self._signers = frozenset(s.key for s in self.sigs)
        return self._signers

    def bad_signatures(self, chain_id: str) -> list[bytes]:
        """Keys whose signature does not verify for this chain and id (empty when all do)."""
        message = sign_bytes(DOMAIN_TX, chain_id, self.id)
        return [s.key for s in self.sigs if not verify_raw(s.key, message, s.sig)]

    def __repr__(self) -> str:
        return f"Transaction({self.kind}, id={self.id.hex()[:16]})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Transaction) and self.raw == other.raw

    def __hash__(self) -> int:
        return hash(self.id)


def _unsigned_bytes(kind: str, body_wire: dict, nonce: int) -> bytes:
    """The canonical bytes the id hashes. ``body_wire`` is already in canonical key order
    (built by a schema, or parsed from bytes checked to be canonical), so it packs as is."""
    return pack({"body": body_wire, "kind": kind, "nonce": nonce})


def unsigned_part(raw: bytes, sigs_bytes: int) -> bytes:
    """The bytes a transaction's id hashes, cut from canonical envelope bytes whose last
    ``sigs_bytes`` are the ``sigs`` entry (its key and list): the envelope is the map of body,
    kind, nonce and sigs in that order, so ``_unsigned_bytes`` is the rest under a three-entry
    map header."""
    return b"\x83" + raw[1:len(raw) - sigs_bytes]


def make_tx(kind: str, body: Any, nonce: int, signers: list[SigningKey] | tuple[SigningKey, ...],
            chain_id: str) -> Transaction:
    """Build and sign a transaction (client side)."""
    schema = BODIES.get(kind)
    if schema is None:
        raise DecodeError(f"unknown transaction kind {kind!r}", "kind")
    if not 0 <= nonce <= NONCE_MAX:
        raise DecodeError("nonce outside the 64-bit range", "nonce")
    body_wire = schema.wire(body)
    schema.check(body_wire, "body")  # the client learns of a bad field before the node does
    unsigned = _unsigned_bytes(kind, body_wire, nonce)
    tid = tagged_hash(TAG_TX, unsigned)
    message = sign_bytes(DOMAIN_TX, chain_id, tid)
    by_key = {k.public: k for k in signers}
    sigs = tuple(Sig(pk, by_key[pk].sign_raw(message)) for pk in sorted(by_key))
    raw = encode({"body": body_wire, "kind": kind, "nonce": nonce, "sigs": [SIG.wire(s) for s in sigs]})
    return Transaction(kind, body, nonce, sigs, raw, unsigned)


def add_signatures(tx: Transaction, signers: list[SigningKey], chain_id: str) -> Transaction:
    """Return ``tx`` with more signatures (council members or guardians signing in turn)."""
    message = sign_bytes(DOMAIN_TX, chain_id, tx.id)
    by_key = {s.key: s for s in tx.sigs}
    for k in signers:
        by_key[k.public] = Sig(k.public, k.sign_raw(message))
    sigs = tuple(by_key[pk] for pk in sorted(by_key))
    wire = decode(tx.raw)
    wire["sigs"] = [SIG.wire(s) for s in sigs]
    return Transaction(tx.kind, tx.body, tx.nonce, sigs, encode(wire), tx._unsigned)


def decode_tx_batch(data: bytes, *, max_items: int) -> list[bytes]:
    """A msgpack array of transaction envelopes (as bytes, not yet decoded): the form of a batch
    submission and of transaction gossip. :class:`DecodeError` for anything else."""
    try:
        items = msgpack.unpackb(data, raw=False, max_array_len=max_items, max_bin_len=MAX_TX_BYTES,
                                max_str_len=0, max_map_len=0, max_ext_len=0)
    except Exception:  # msgpack raises a zoo of types for bad input
        raise DecodeError(f"a batch is a msgpack array of at most {max_items} transactions") from None
    if type(items) is not list or not all(type(i) is bytes for i in items):
        raise DecodeError("a batch is a msgpack array of transaction byte strings")
    return items


def decode_tx(data: bytes) -> Transaction:
    """Parse envelope bytes; :class:`DecodeError` for anything malformed or non-canonical."""
    if len(data) > MAX_TX_BYTES:
        raise DecodeError(f"transaction of {len(data)} bytes exceeds {MAX_TX_BYTES}")
    # key order is checked below, map by map: the envelope's keys as a tuple, the body's and the
    # signatures' by their schemas
    value = decode(data, max_size=MAX_TX_BYTES, key_order=False)
    if type(value) is not dict:
        raise DecodeError("a transaction is a map")
    if tuple(value) != _ENVELOPE_KEYS:
        raise DecodeError(f"transaction fields must be exactly {list(_ENVELOPE_KEYS)}, got {list(value)}")
    kind = value["kind"]
    if type(kind) is not str:
        raise DecodeError("expected text", "kind")
    schema = BODIES.get(kind)
    if schema is None:
        raise DecodeError(f"unknown transaction kind {kind[:40]!r}", "kind")
    body = schema.check_canonical(value["body"], "body")
    nonce = value["nonce"]
    if type(nonce) is not int or not 0 <= nonce <= NONCE_MAX:
        raise DecodeError("expected an integer in the 64-bit range", "nonce")
    raw_sigs = value["sigs"]
    if type(raw_sigs) is not list or not 1 <= len(raw_sigs) <= MAX_SIGS:
        raise DecodeError(f"expected 1..{MAX_SIGS} signatures", "sigs")
    try:
        sigs = tuple([SIG.check_canonical(s) for s in raw_sigs])
    except DecodeError:  # again, naming each signature's place in the error
        sigs = tuple(SIG.check_canonical(s, f"sigs[{i}]") for i, s in enumerate(raw_sigs))
    for i in range(1, len(sigs)):
        if not sigs[i - 1].key < sigs[i].key:
            raise DecodeError("signatures must be sorted by key, one per key", "sigs")
    # ``data`` is canonical (``decode`` re-encoded it), so the unsigned part is its body, kind
    # and nonce under a three-entry map header: ``_unsigned_bytes`` without packing them again
    raw = bytes(data)
    sigs_bytes = len(_SIGS_KEY) + (1 if len(sigs) < 16 else 3) + _SIG_BYTES * len(sigs)
    return Transaction(kind, body, nonce, sigs, raw, unsigned_part(raw, sigs_bytes))
