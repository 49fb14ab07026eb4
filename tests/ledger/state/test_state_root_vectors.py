"""Shared vectors of the header's state root (tests/vectors/state_root.json).

What a second implementation must agree on beyond the tree itself (``state_smt.json``): which of
a block's state writes the root authenticates and where. Global records go in the global tree
under the tagged hash of their key; a child's records (``c/<16-byte identity>...``) go in the
child's own tree, whose root is the child's slot in the global tree under its tag; a tombstone
(``erased/<tag>``) is the slot of an erased child; derived indexes (``x/...``) are left out. The
vectors are the state writes of a real chain under protocol 5: genesis, an enrolment, a minor's
crossing left pending (its marker is a derived index entry, so only the request record enters
the child's tree), the guardians' approvals, an adult's crossing, and an erasure. Regenerate with
``.venv/bin/python -c "import sys; sys.path[:0] = ['tests/ledger', 'tests/ledger/state']; import
test_state_root_vectors as v; v.write()"``.
"""

from __future__ import annotations

import json
from pathlib import Path

from ledger.hashing import tagged_hash
from ledger.privacy.tags import TAG_CHILD, child_tag
from ledger.state.authenticated import TAG_STATE_KEY, TAG_STATE_VALUE, commit
from ledger.state.records import P_DERIVED

PATH = Path(__file__).resolve().parents[2] / "vectors" / "state_root.json"


class Nodes(dict):
    def apply(self, writes: dict[bytes, bytes | None]) -> None:
        for k, v in writes.items():
            if v is None:
                self.pop(k, None)
            else:
                self[k] = v


def steps() -> list[tuple[list[tuple[bytes, bytes | None]], bytes]]:
    doc = json.loads(PATH.read_text())
    return [([(bytes.fromhex(k), None if v is None else bytes.fromhex(v)) for k, v in step["writes"]],
             bytes.fromhex(step["root"])) for step in doc["steps"]]


def test_the_state_root_of_each_block_matches_the_shared_vectors():
    nodes = Nodes()
    for writes, root in steps():
        committed = commit(nodes.get, writes)
        assert committed.root == root
        nodes.apply(committed.node_writes)


def test_the_vectors_cover_derived_indexes_children_and_a_tombstone_and_the_tags_they_name():
    doc = json.loads(PATH.read_text())
    tags = {"key": TAG_STATE_KEY, "value": TAG_STATE_VALUE, "child": TAG_CHILD}
    assert doc["tags"] == {name: tag.decode() for name, tag in tags.items()}
    keys = [k for writes, _ in steps() for k, _ in writes]
    assert any(k.startswith(b"x/pd/") for k in keys), "a pending request's marker, left out of the root"
    assert any(k.startswith(b"erased/") for k in keys) and any(k.startswith(b"c/") for k in keys)
    # the derived index entries change nothing: the roots hold without them
    nodes = Nodes()
    for writes, root in steps():
        committed = commit(nodes.get, [(k, v) for k, v in writes if not k.startswith(P_DERIVED)])
        assert committed.root == root
        nodes.apply(committed.node_writes)
    assert child_tag(b"\x01" * 16) == tagged_hash(TAG_CHILD, b"\x01" * 16)


# ---------------------------------------------------------------------------- generating them


def write() -> None:  # pragma: no cover - rewrites the vector file
    PATH.write_text(json.dumps(regenerate(), indent=1) + "\n")


def regenerate() -> dict:  # pragma: no cover
    from chainkit import Chain

    from ledger.chain import execute_block
    from ledger.storage.chainstore import ChainStore

    chain = Chain()
    authority, terminal = chain.open_border()
    minor = chain.enrol_child(authority)
    adult = chain.enrol_child(authority, minor=False)
    request = chain.pending_crossing(terminal, minor)
    chain.commit(*(chain.approve(g, request, minor) for g in minor.guardians))
    chain.commit(chain.crossing(terminal, adult))
    chain.commit(chain.erase(adult))
    # every block's writes from the first, checked by replaying them from genesis
    out = [(sorted(chain.genesis.state_writes().items()), chain.genesis.state_root())]
    replay = ChainStore.memory(chain.genesis)
    for height in range(1, chain.height + 1):
        block = chain.store.block(height)
        assert block is not None and block.header.version >= 5
        executed = execute_block(replay, block)
        assert executed.changes.state_root == block.header.state_root
        replay.commit_block(executed, chain.store.commit(height))
        out.append((list(executed.changes.writes), block.header.state_root))
    return {
        "description": "The header's state root from each block's state writes (ledger/state/authenticated.py), "
                       "protocol 5. Apply the steps in order to empty trees; each step lists the block's writes "
                       "(key, value; null deletes) and the root after it. key_hash = tagged(key tag, key), "
                       "value_hash = tagged(value tag, value), tagged(t, d) = SHA-256(len(t) || t || d). A key "
                       "c/<16-byte identity>... goes in that child's tree (state_smt.json's rules) at "
                       "key_hash; the child's slot in the global tree, at tagged(child tag, identity), holds "
                       "the child tree's root (removed when the tree is empty). erased/<32-byte tag> sets the "
                       "slot at that tag to value_hash. x/... keys are derived indexes and are left out. Any "
                       "other key goes in the global tree at key_hash. The global tree's root is the state "
                       "root. The first step is the genesis state.",
        "tags": {"key": TAG_STATE_KEY.decode(), "value": TAG_STATE_VALUE.decode(), "child": TAG_CHILD.decode()},
        "steps": [{"writes": [[k.hex(), None if v is None else v.hex()] for k, v in writes], "root": root.hex()}
                  for writes, root in out],
    }
