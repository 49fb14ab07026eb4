"""Checking a node's access-log answer: the client verifies, it does not believe.

For the entries a node returns about one child (``GET /v1/access-log``):

* every entry is canonical, names the child's tag, and comes with an inclusion proof that
  leads to the tree head the chain holds for this node (its ``anchor``) when the entry is old
  enough, else to the node's current head;
* the current head extends the anchor (a consistency proof);
* the anchor itself is the one the chain holds: the checkpoint transaction is proven in the
  chain by a receipt (ledger.audit.receipt), signed by the node, naming this size and root;
  and other nodes hold no later checkpoint of it (:func:`compare_checkpoints`).

What this cannot show alone is that no entry was *left out* of the answer: the proofs are of
presence. :func:`audit_whole_log` closes that gap for oversight bodies, which may read the
whole log: it rebuilds the tree from every entry and compares it with the anchor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ledger.errors import CustosError, DecodeError
from ledger.merkle import EMPTY_ROOT, MemoryNodeStore, MerkleLog, leaf_hash, verify_consistency, verify_inclusion
from ledger.privacy.tags import child_tag
from ledger.tx.bodies import ACCESS_CHECKPOINT
from ledger.tx.envelope import decode_tx
from node.access.entry import Entry, decode_entry


def _bytes(value: Any, size: int | None = None) -> bytes:
    raw = value if isinstance(value, bytes) else bytes.fromhex(str(value))
    if size is not None and len(raw) != size:
        raise ValueError(f"expected {size} bytes, got {len(raw)}")
    return raw


@dataclass(frozen=True)
class Read:
    """One verified entry of one node's log."""

    index: int
    entry: Entry
    anchored: bool  # covered by the checkpoint the chain holds


@dataclass
class NodeReport:
    url: str
    reached: bool = False  # the node answered at all
    node: bytes = b""
    size: int = 0
    root: bytes = EMPTY_ROOT
    anchor: tuple[int, bytes, int, bytes] | None = None  # size, root, height, checkpoint tx id
    reads: list[Read] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def anchored_size(self) -> int:
        return self.anchor[0] if self.anchor is not None else 0


def check_child_answer(report: NodeReport, doc: dict, identity: bytes) -> None:
    """Check one page of a node's answer about the child ``identity``; findings go to ``report``."""
    tag = child_tag(identity)
    try:
        report.node = _bytes(doc["node"], 32)
        report.size = int(doc["size"])
        report.root = _bytes(doc["root"], 32)
        anchor = doc.get("anchor")
        report.anchor = None if anchor is None else (
            int(anchor["size"]), _bytes(anchor["root"], 32), int(anchor["height"]), _bytes(anchor["tx"], 32))
        consistency = [_bytes(p, 32) for p in doc.get("consistency") or []]
        entries = list(doc["entries"])
    except (KeyError, TypeError, ValueError) as exc:
        report.failures.append(f"the answer is malformed: {exc}")
        return
    if doc.get("damage"):
        report.failures.append(f"the node reports its access log damaged: {doc['damage']}")
    a_size, a_root = (report.anchor[0], report.anchor[1]) if report.anchor is not None else (0, EMPTY_ROOT)
    if report.anchor is None:
        report.notes.append("no checkpoint of this node's log is on the chain: its entries are not anchored")
    elif a_size > report.size:
        report.failures.append(f"the log has {report.size} entries, fewer than the {a_size} the chain holds a "
                               "checkpoint of (entries were removed)")
    elif not verify_consistency(a_size, report.size, a_root, report.root, consistency):
        report.failures.append(f"the log's head ({report.size} entries) does not extend the checkpoint on the chain "
                               f"({a_size} entries): the log was rewritten")
    elif report.size > a_size:
        report.notes.append(f"the newest {report.size - a_size} entries are not yet committed to the chain")
    last = max((r.index for r in report.reads), default=-1)
    for item in entries:
        try:
            index = int(item["index"])
            raw = _bytes(item["entry"])
            proof = [_bytes(p, 32) for p in item["proof"]]
        except (KeyError, TypeError, ValueError) as exc:
            report.failures.append(f"an entry is malformed: {exc}")
            continue
        if index <= last:
            report.failures.append(f"entry {index} is out of order")
            continue
        last = index
        try:
            entry = decode_entry(raw)
        except DecodeError as exc:
            report.failures.append(f"entry {index} does not decode: {exc}")
            continue
        anchored = index < a_size
        size, root = (a_size, a_root) if anchored else (report.size, report.root)
        if not verify_inclusion(leaf_hash(raw), index, size, proof, root):
            where = "the checkpoint on the chain" if anchored else "the log's head"
            report.failures.append(f"entry {index} is not in the log it claims ({where}): it was altered")
            continue
        if entry.child != tag:
            report.failures.append(f"entry {index} concerns another child")
            continue
        report.reads.append(Read(index, entry, anchored))


def check_anchor_transaction(report: NodeReport, tx_bytes: bytes) -> None:
    """The checkpoint transaction a receipt proved in the chain is this node's, with this head."""
    if report.anchor is None:
        return
    try:
        tx = decode_tx(tx_bytes)
    except CustosError as exc:
        report.failures.append(f"the checkpoint transaction does not decode: {exc}")
        return
    body = tx.body
    if tx.id != report.anchor[3] or tx.kind != ACCESS_CHECKPOINT:
        report.failures.append("the receipt is not of the checkpoint the node named")
    elif body.node != report.node or tx.signers != frozenset({report.node}):
        report.failures.append("the checkpoint on the chain is another node's")
    elif (body.size, body.root) != report.anchor[:2]:
        report.failures.append(f"the chain's checkpoint says {body.size} entries with another root than the node's "
                               "answer")


def compare_checkpoints(report: NodeReport, seen: list[tuple[str, int, int]]) -> None:
    """``seen``: (url, size, height) of this node's checkpoint as other nodes hold it. A later one
    than the answer's anchor means the node answered from an old checkpoint."""
    for url, size, height in seen:
        if size > report.anchored_size and (report.anchor is None or height > report.anchor[2]):
            report.failures.append(f"{url} holds a later checkpoint of this node's log ({size} entries, height "
                                   f"{height}) than its answer used ({report.anchored_size})")


def audit_whole_log(report: NodeReport, rows: list[tuple[int, bytes]], identity: bytes) -> None:
    """Oversight's complete check: ``rows`` are every entry (index, bytes) of the node's log up
    to its head. The tree they make must give the chain's root at the anchor and the node's head,
    and every entry about the child must be among those the per-child answer returned."""
    tree_nodes = MemoryNodeStore()
    tree = MerkleLog(tree_nodes.get, 0)
    about: list[int] = []
    tag = child_tag(identity)
    for expected, (index, raw) in enumerate(rows):
        if index != expected:
            report.failures.append(f"the whole log skips entry {expected}")
            return
        tree.append(leaf_hash(raw))
        try:
            if decode_entry(raw).child == tag:
                about.append(index)
        except DecodeError:
            report.failures.append(f"entry {index} does not decode")
    tree_nodes.put_many(tree.take_pending())
    if report.anchor is not None:
        a_size, a_root = report.anchor[:2]
        if tree.size < a_size or tree.root(a_size) != a_root:
            report.failures.append("the whole log does not give the root the chain holds: entries were changed, "
                                   "removed or reordered")
            return
    if tree.size >= report.size and tree.root(report.size) != report.root:
        report.failures.append("the whole log does not give the node's own head")
        return
    returned = {r.index for r in report.reads}
    missing = [i for i in about if i < report.size and i not in returned]
    if missing:
        report.failures.append(f"the answer about the child left out entries {missing[:10]}")
