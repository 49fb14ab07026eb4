"""The state root: an authenticated map over the global records and one subtree per child.

The header's state root is the root of the **global tree** (:mod:`ledger.state.smt`). It holds

* every global record (``chain``, ``council``, ``role/...``, ``val/...``, ...) under the hash
  of its key, with the hash of its value;
* one **slot** per child, keyed by the child's tag (:func:`ledger.privacy.tags.child_tag`):
  the root of the **child's tree**, which holds the child's records (everything under
  ``c/<identity>``) the same way; once the child is erased, the hash of its tombstone instead.

Derived indexes (``x/...``) are functions of the records and are not authenticated.

So any record can be proven at a height: a global record by one proof, a child's record by a
proof in the child's tree plus a proof of the child's slot. And when a child's records are
erased, one slot is all that changes: a verifier that never saw them (an auditor, a node that
joins later) follows the slot's value from the certified roots, while re-executing everything
else (see :class:`SlotDeltas`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ledger.hashing import tagged_hash, tagged_state
from ledger.privacy.tags import child_tag
from ledger.state import smt
from ledger.state.records import P_DERIVED, P_ERASED, child_of_key

TAG_STATE_KEY = b"custos/state-key"
TAG_STATE_VALUE = b"custos/state-value"
GLOBAL_NAMESPACE = b"g"
CHILD_NAMESPACE = b"c"

Get = Callable[[bytes], bytes | None]


_KEY_STATE = tagged_state(TAG_STATE_KEY)
_VALUE_STATE = tagged_state(TAG_STATE_VALUE)


def key_hash(key: bytes) -> bytes:
    return tagged_hash(TAG_STATE_KEY, key)


def value_hash(value: bytes) -> bytes:
    return tagged_hash(TAG_STATE_VALUE, value)


def global_tree(get: Get) -> smt.Tree:
    return smt.Tree(GLOBAL_NAMESPACE, get)


def child_tree(identity: bytes, get: Get) -> smt.Tree:
    return smt.Tree(CHILD_NAMESPACE + identity, get)


#: one tree's changes: (the tree's namespace, {key hash: value hash, or None to delete}, the
#: tree's root after them)
TreeUpdate = tuple[bytes, dict[bytes, bytes | None], bytes]


@dataclass(frozen=True, slots=True)
class Commitment:
    """What a block's writes do to the authenticated state."""

    root: bytes
    node_writes: dict[bytes, bytes | None]  # tree nodes to store (keys relative to the tree store)
    slots: tuple[tuple[bytes, bytes | None], ...]  # (child tag, new slot value or None), by tag
    #: the trees' changes, in the order applied (the children's trees, then the global tree):
    #: :func:`apply_updates` makes ``node_writes`` from them again
    updates: tuple[TreeUpdate, ...] = ()


def commit(get: Get, writes: list[tuple[bytes, bytes | None]],
           followed: dict[bytes, bytes | None] | None = None) -> Commitment:
    """The new state root after ``writes`` (state key -> value, None deletes), reading the
    current trees through ``get``.

    ``followed`` overrides what the writes say for some children's slots: an executor that
    does not hold an erased child's records takes the slot's value from the block's recorded
    deltas instead (the certified root then checks it).
    """
    global_changes: dict[bytes, bytes | None] = {}
    child_changes: dict[bytes, dict[bytes, bytes | None]] = {}
    tombstones: dict[bytes, bytes | None] = {}
    # key_hash and value_hash inlined: this loop runs for every write of a block
    key_state, value_state = _KEY_STATE.copy, _VALUE_STATE.copy
    for key, value in writes:
        if key.startswith(P_DERIVED):
            continue
        if value is None:
            vh = None
        else:
            h = value_state()
            h.update(value)
            vh = h.digest()
        h = key_state()
        h.update(key)
        identity = child_of_key(key)
        if identity is not None:
            changes = child_changes.get(identity)
            if changes is None:
                changes = child_changes[identity] = {}
            changes[h.digest()] = vh
        elif key.startswith(P_ERASED):
            tombstones[key[len(P_ERASED):]] = vh
        else:
            global_changes[h.digest()] = vh
    node_writes: dict[bytes, bytes | None] = {}
    slots: dict[bytes, bytes | None] = {}
    updates: list[TreeUpdate] = []
    update_tree, empty = smt.update_tree, smt.EMPTY
    for identity, changes in child_changes.items():
        namespace = CHILD_NAMESPACE + identity
        root, nodes = update_tree(namespace, get, changes)
        node_writes.update(nodes)
        updates.append((namespace, changes, root))
        slots[child_tag(identity)] = None if root == empty else root
    slots.update(tombstones)  # an erased child's slot holds its tombstone
    if followed:
        slots.update(followed)
    global_changes.update(slots)
    root, nodes = global_tree(get).update(global_changes)
    node_writes.update(nodes)
    updates.append((GLOBAL_NAMESPACE, global_changes, root))
    return Commitment(root, node_writes, tuple(sorted(slots.items())), tuple(updates))


def apply_updates(get: Get, updates: Sequence[TreeUpdate]) -> dict[bytes, bytes | None]:
    """The node writes of a block's tree changes (:attr:`Commitment.updates`) on the trees read
    through ``get``: what :func:`commit` computed, again (each tree reads only its own nodes).
    Raises ValueError if a tree's root does not come out as recorded."""
    node_writes: dict[bytes, bytes | None] = {}
    for namespace, changes, recorded in updates:
        root, nodes = smt.Tree(namespace, get).update(changes)
        if root != recorded:
            raise ValueError(f"the tree at {namespace.hex()[:20]} does not come out with its recorded root")
        node_writes.update(nodes)
    return node_writes


def root_of(get: Get) -> bytes:
    return global_tree(get).root()
