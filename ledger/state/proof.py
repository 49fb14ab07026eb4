"""Proofs of single state records against a state root, and their checks.

A record is proven at a height against that height's header's state root
(:mod:`ledger.state.authenticated`):

* a **global record** (``role/...``, ``vset/...``, ...) by one proof in the global tree, keyed by
  ``key_hash(key)`` and ending in ``value_hash(value)`` (or in absence);
* a **child's record** (``c/<identity>...``) by the proof of the child's **slot** in the global
  tree (keyed by the child's tag, ending in the root of the child's tree, or in absence when the
  child has no records) plus the proof of the record in the child's tree;
* an erased child's record is absent, proven by the slot holding the hash of the child's
  tombstone: the proof carries the tombstone's bytes;
* a tombstone ``erased/<tag>`` is the slot itself.

Derived indexes (``x/...``) are not authenticated and cannot be proven.

Wire form (canonical msgpack of a list, fields in this order)::

    [key, value or nil, global proof, slot or nil, child proof or nil, tombstone or nil]

each proof being :meth:`ledger.state.smt.Proof.to_wire`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger.encoding import decode, encode
from ledger.errors import CustosError, DecodeError
from ledger.privacy.tags import child_tag
from ledger.state import smt
from ledger.state.authenticated import Get, child_tree, global_tree, key_hash, value_hash
from ledger.state.records import ERASED, P_DERIVED, P_ERASED, child_of_key, k_erased

MAX_KEY_BYTES = 256
MAX_VALUE_BYTES = 64 * 1024
MAX_TOMBSTONE_BYTES = 1024


class ProofError(CustosError):
    """A state proof that does not prove what it claims."""

    code = "bad-state-proof"


@dataclass(frozen=True, slots=True)
class RecordProof:
    """What a node claims about ``key`` at some state root, with the proof of it."""

    key: bytes
    value: bytes | None
    global_proof: smt.Proof
    slot: bytes | None = None  # a child's record: the child's slot value
    child_proof: smt.Proof | None = None  # a child's record under a live slot
    tombstone: bytes | None = None  # a child's record under an erased child's slot

    def wire(self) -> list:
        return [self.key, self.value, self.global_proof.to_wire(), self.slot,
                None if self.child_proof is None else self.child_proof.to_wire(), self.tombstone]

    def encode(self) -> bytes:
        return encode(self.wire())

    @classmethod
    def from_wire(cls, obj: object) -> RecordProof:
        if not (isinstance(obj, list) and len(obj) == 6):
            raise DecodeError("a record proof is [key, value, global proof, slot, child proof, tombstone]")
        key, value, gp, slot, cp, tomb = obj
        if type(key) is not bytes or not 0 < len(key) <= MAX_KEY_BYTES:
            raise DecodeError(f"a record proof's key is 1..{MAX_KEY_BYTES} bytes")
        if value is not None and (type(value) is not bytes or len(value) > MAX_VALUE_BYTES):
            raise DecodeError(f"a record proof's value is nil or at most {MAX_VALUE_BYTES} bytes")
        if slot is not None and (type(slot) is not bytes or len(slot) != 32):
            raise DecodeError("a record proof's slot is nil or 32 bytes")
        if tomb is not None and (type(tomb) is not bytes or len(tomb) > MAX_TOMBSTONE_BYTES):
            raise DecodeError(f"a record proof's tombstone is nil or at most {MAX_TOMBSTONE_BYTES} bytes")
        return cls(key, value, smt.Proof.from_wire(gp), slot, None if cp is None else smt.Proof.from_wire(cp), tomb)

    @classmethod
    def decode(cls, raw: bytes) -> RecordProof:
        return cls.from_wire(decode(raw))

    def check(self, state_root: bytes) -> None:
        """Raise :class:`ProofError` unless this proves ``key`` -> ``value`` under ``state_root``."""
        check_record(state_root, self)


def _fail(why: str, key: bytes) -> ProofError:
    return ProofError(f"the proof of {key.hex()[:48]} does not hold: {why}")


def check_record(state_root: bytes, p: RecordProof) -> None:
    key, value = p.key, p.value
    if key.startswith(P_DERIVED):
        raise _fail("derived indexes are not authenticated", key)
    identity = child_of_key(key)
    if identity is None:
        if p.slot is not None or p.child_proof is not None or p.tombstone is not None:
            raise _fail("a global record's proof has one part", key)
        if key.startswith(P_ERASED):
            path = key[len(P_ERASED):]
            if len(path) != 32:
                raise _fail("a tombstone is keyed by a 32-byte child tag", key)
        else:
            path = key_hash(key)
        if not smt.verify(state_root, path, None if value is None else value_hash(value), p.global_proof):
            raise _fail("not in the global tree under this root", key)
        return
    tag = child_tag(identity)
    if not smt.verify(state_root, tag, p.slot, p.global_proof):
        raise _fail("the child's slot is not in the global tree under this root", key)
    if p.slot is None:  # the child has no records at all
        if value is not None or p.child_proof is not None or p.tombstone is not None:
            raise _fail("a child without a slot holds no records", key)
        return
    if p.tombstone is not None:  # the child was erased: its slot holds the tombstone's hash
        if value is not None or p.child_proof is not None:
            raise _fail("an erased child holds no records", key)
        if value_hash(p.tombstone) != p.slot:
            raise _fail("the tombstone does not hash to the child's slot", key)
        try:
            ERASED.decode(p.tombstone)
        except DecodeError:
            raise _fail("the tombstone is not an erasure record", key) from None
        return
    if p.child_proof is None:
        raise _fail("a child's record needs the proof in the child's tree", key)
    if not smt.verify(p.slot, key_hash(key), None if value is None else value_hash(value), p.child_proof):
        raise _fail("not in the child's tree under the child's slot", key)


def prove_record(state_get: Get, node_get: Get, key: bytes) -> RecordProof:
    """The proof of ``key`` (present or absent) in a state read through ``state_get`` (records)
    and ``node_get`` (tree nodes), which must be one consistent snapshot."""
    if key.startswith(P_DERIVED):
        raise ProofError(f"{key[:8]!r}...: derived indexes are not authenticated")
    identity = child_of_key(key)
    gtree = global_tree(node_get)
    if identity is None:
        path = key[len(P_ERASED):] if key.startswith(P_ERASED) else key_hash(key)
        if key.startswith(P_ERASED) and len(path) != 32:
            raise ProofError("a tombstone is keyed by a 32-byte child tag")
        return RecordProof(key, state_get(key), gtree.prove(path))
    tag = child_tag(identity)
    slot = gtree.lookup(tag)
    gproof = gtree.prove(tag)
    if slot is None:
        return RecordProof(key, None, gproof)
    tombstone = state_get(k_erased(tag))
    if tombstone is not None and value_hash(tombstone) == slot:
        return RecordProof(key, None, gproof, slot, tombstone=tombstone)
    return RecordProof(key, state_get(key), gproof, slot, child_tree(identity, node_get).prove(key_hash(key)))


__all__ = ["ProofError", "RecordProof", "check_record", "prove_record"]
