"""Checking a snapshot (the joining node's side) against a certified header, piece by piece.

:class:`Assembly` takes the manifest first and checks it whole against the header of height
``H`` (certified by the caller: :mod:`ledger.light`): the global log's right edge folds to the
header's log root; the ``txlog`` record is proven under the state root and covers every entry of
the global log; each outlined child's slot is proven; each tree's parts fold to its root; the
transaction chunks' hashes fold to the transaction-id log's right edge. Then each chunk, in any
order, is checked against the manifest alone: a state chunk's records rebuild the hash of each of
its parts, a transaction chunk's entries the hash of its subtree. A chunk that fails is refused
with :class:`SnapshotError` and nothing of it is returned, so the caller can ask another peer.

Each checked chunk yields the store records it stands for (:mod:`ledger.storage.chainstore`
layout): state records, tree nodes, the derived indexes rebuilt from the records
(:mod:`ledger.state.derived`), transaction-index records in both orders. :meth:`finish` adds the
tree nodes above the cut, the global log's right edge and the derived indexes of outlined
children. Nothing the state root does not commit to can pass: an erased child's slot holds its
tombstone's hash, so a chunk that brought its records back would not rebuild the part's hash.
"""

from __future__ import annotations

from collections.abc import Iterable

from ledger.block import Header
from ledger.encoding import decode
from ledger.errors import CustosError, DecodeError
from ledger.merkle import node_hash
from ledger.privacy.tags import child_tag
from ledger.snapshot.format import (
    MANIFEST,
    MAX_CHUNK_BYTES,
    MAX_MANIFEST_BYTES,
    Chunk,
    Manifest,
    PartData,
    Record,
    decode_chunk,
    tx_chunk_geometry,
)
from ledger.state import smt, txindex
from ledger.state.authenticated import CHILD_NAMESPACE, GLOBAL_NAMESPACE, key_hash, value_hash
from ledger.state.derived import child_indexes
from ledger.state.proof import ProofError, RecordProof
from ledger.state.records import K_TX_LOG, P_DERIVED, P_ERASED, TX_LOG, TxLog, child_of_key
from ledger.storage.chainstore import (
    STATE,
    TREE_NODES,
    TX_INDEX,
    TxLocation,
    encode_location,
    location_row,
    log_key,
    order_key,
)

Writes = dict[bytes, bytes]


class SnapshotError(CustosError):
    """A manifest or chunk that is not what the certified header says the state is."""

    code = "bad-snapshot"


class NotCovered(SnapshotError):
    """The chain's transaction index is not under its state root (it began before protocol 4):
    no snapshot of it can be checked, whoever serves it."""

    code = "snapshot-not-covered"


def _fold(hashes: list[bytes]) -> bytes:
    """The root of a complete binary tree over ``hashes`` (a power-of-two count), pairwise."""
    while len(hashes) > 1:
        hashes = [node_hash(hashes[i], hashes[i + 1]) for i in range(0, len(hashes), 2)]
    return hashes[0]


class Assembly:
    """One snapshot being assembled: :meth:`chunk` for each chunk, then :meth:`finish`."""

    def __init__(self, header: Header, manifest_bytes: bytes) -> None:
        if len(manifest_bytes) > MAX_MANIFEST_BYTES:
            raise SnapshotError("the manifest is too large")
        try:
            manifest = MANIFEST.decode(manifest_bytes, max_size=MAX_MANIFEST_BYTES)
        except DecodeError as exc:
            raise SnapshotError(f"the manifest does not decode: {exc}") from None
        self.header = header
        self.manifest = manifest
        self._cuts: list[tuple[bytes, dict[bytes, bytes]]] = []  # per tree: (namespace, path -> hash)
        self._lone: list[dict[bytes, bytes]] = [{} for _ in manifest.trees]  # per tree: path -> key || value
        self._check_log(manifest, header)
        self.tx_log = self._check_tx_log(manifest, header)
        self._check_trees(manifest, header)
        self._tx_geometry = tx_chunk_geometry(self.tx_log.size)
        self._check_tx_chunks(manifest)
        # state chunk i carries parts[starts[i]:starts[i + 1]]
        starts = [0]
        for count in manifest.chunks:
            starts.append(starts[-1] + count)
        if starts[-1] != len(manifest.parts):
            raise SnapshotError("the chunks do not carry every part exactly once")
        self._starts = starts
        self.state_chunks = len(manifest.chunks)
        self.chunk_count = self.state_chunks + len(self._tx_geometry)
        self.missing = set(range(self.chunk_count))
        self._outlined = {t.child: i for i, t in enumerate(manifest.trees) if t.child is not None}
        self._outlined_records: dict[bytes, list[Record]] = {identity: [] for identity in self._outlined}
        self._outlined_seen: set[bytes] = set()

    # ------------------------------------------------------------------ the manifest
    @staticmethod
    def _check_log(m: Manifest, h: Header) -> None:
        pieces = txindex.pieces(h.log_size)
        if len(m.log) != len(pieces) or txindex.root(TxLog(h.log_size, m.log)) != h.log_root:
            raise SnapshotError("the global log's right edge does not give the header's log root")

    @staticmethod
    def _check_tx_log(m: Manifest, h: Header) -> TxLog:
        try:
            proof = RecordProof.decode(m.tx_log)
        except DecodeError as exc:
            raise SnapshotError(f"the transaction-id log's proof does not decode: {exc}") from None
        if proof.key != K_TX_LOG:
            raise SnapshotError("the transaction-id log's proof is of another record")
        try:
            proof.check(h.state_root)
        except ProofError as exc:
            raise SnapshotError(str(exc)) from None
        try:
            log = txindex.EMPTY if proof.value is None else TX_LOG.decode(proof.value)
        except DecodeError as exc:
            raise SnapshotError(f"the transaction-id log record does not decode: {exc}") from None
        if log.size != h.log_size:
            raise NotCovered(f"the chain's state covers {log.size} of its {h.log_size} transactions' ids: it began "
                             "before protocol 4, and a node can only join it by replaying it from genesis")
        if not txindex.well_formed(log):
            raise SnapshotError("the transaction-id log record is malformed")
        return log

    def _check_trees(self, m: Manifest, h: Header) -> None:
        first = m.trees[0]
        if first.child is not None or first.slot_proof is not None or first.root != h.state_root:
            raise SnapshotError("the manifest's first tree is not the global tree at the header's state root")
        seen: set[bytes] = set()
        for t in m.trees[1:]:
            if t.child is None or t.slot_proof is None or t.child in seen:
                raise SnapshotError("an outlined child's tree is named twice or without its slot's proof")
            seen.add(t.child)
            try:
                proof = smt.Proof.from_wire(decode(t.slot_proof))
            except DecodeError as exc:
                raise SnapshotError(f"an outlined child's slot proof does not decode: {exc}") from None
            if t.root == smt.EMPTY or not smt.verify(h.state_root, child_tag(t.child), t.root, proof):
                raise SnapshotError("an outlined child's tree root is not its slot under the state root")
        by_tree: list[dict[bytes, bytes]] = [{} for _ in m.trees]
        for p in m.parts:
            if p.tree >= len(m.trees):
                raise SnapshotError("a part of no tree")
            if p.path in by_tree[p.tree]:
                raise SnapshotError("a part is listed twice")
            by_tree[p.tree][p.path] = p.hash
        for i, t in enumerate(m.trees):
            ns = GLOBAL_NAMESPACE if t.child is None else CHILD_NAMESPACE + t.child
            try:
                root, _ = smt.fold_parts(ns, by_tree[i])
            except ValueError as exc:
                raise SnapshotError(f"the parts of a tree are not a cut of it: {exc}") from None
            if root != t.root:
                raise SnapshotError("the parts of a tree do not fold to its root")
            # the nodes above the cut are folded again by finish(), with the entries of the
            # single-entry parts that the chunks carry
            self._cuts.append((ns, by_tree[i]))

    def _check_tx_chunks(self, m: Manifest) -> None:
        geometry = self._tx_geometry
        if len(m.tx_chunks) != len(geometry):
            raise SnapshotError(f"the transaction-id log needs {len(geometry)} chunks, the manifest lists "
                                f"{len(m.tx_chunks)}")
        i = 0
        for piece, (level, start) in zip(self.tx_log.frontier, txindex.pieces(self.tx_log.size), strict=True):
            hashes = []
            while i < len(geometry) and geometry[i][1] < start + (1 << level):
                hashes.append(m.tx_chunks[i])
                i += 1
            if _fold(hashes) != piece:
                raise SnapshotError("the transaction chunks' hashes do not fold to the transaction-id log")

    # ------------------------------------------------------------------ chunks
    def chunk(self, index: int, data: bytes) -> Writes:
        """The store records chunk ``index`` stands for; :class:`SnapshotError` if it is not the
        chunk the manifest describes."""
        if not 0 <= index < self.chunk_count:
            raise SnapshotError(f"there is no chunk {index}")
        if len(data) > MAX_CHUNK_BYTES:
            raise SnapshotError(f"chunk {index} is too large")
        try:
            chunk = decode_chunk(data)
        except DecodeError as exc:
            raise SnapshotError(f"chunk {index} does not decode: {exc}") from None
        if chunk.index != index:
            raise SnapshotError(f"chunk {index} says it is chunk {chunk.index}")
        try:
            writes = self._state_chunk(index, chunk) if index < self.state_chunks else self._tx_chunk(index, chunk)
        except (DecodeError, ValueError) as exc:
            raise SnapshotError(f"chunk {index} does not hold: {exc}") from None
        self.missing.discard(index)
        return writes

    def _state_chunk(self, index: int, chunk: Chunk) -> Writes:
        refs = self.manifest.parts[self._starts[index]:self._starts[index + 1]]
        if chunk.parts is None or chunk.txs is not None or len(chunk.parts) != len(refs):
            raise SnapshotError(f"chunk {index} does not carry its {len(refs)} parts")
        writes: Writes = {}
        lone_now: list[tuple[int, bytes, bytes]] = []  # parts that are a lone entry, kept by the node above
        outlined_now: list[bytes] = []
        child_records: list[tuple[bytes, tuple[Record, ...]]] = []
        for ref, part in zip(refs, chunk.parts, strict=True):
            tree = self.manifest.trees[ref.tree]
            if tree.child is None:
                entries = self._global_entries(part, writes, outlined_now, child_records)
                ns = GLOBAL_NAMESPACE
            else:
                if part.children:
                    raise SnapshotError(f"chunk {index}: a part of a child's tree names children")
                entries = [(key_hash(r.key), value_hash(r.value)) for r in self._records_of(tree.child, part.records)]
                ns = CHILD_NAMESPACE + tree.child
                child_records.append((tree.child, part.records))
                writes.update((STATE + r.key, r.value) for r in part.records)
            digest, nodes = smt.build_part(ns, ref.path, entries)
            if digest != ref.hash:
                raise SnapshotError(f"chunk {index}: a part's records do not give the hash the manifest names")
            if ref.path and len(entries) == 1:
                lone_now.append((ref.tree, ref.path, entries[0][0] + entries[0][1]))
            else:
                writes.update((TREE_NODES + k, v) for k, v in nodes.items() if v is not None)
        # only now, with every part of the chunk checked, does anything of it count
        for tree_index, path, entry in lone_now:
            self._lone[tree_index][path] = entry
        self._outlined_seen.update(outlined_now)
        for identity, records in child_records:
            if identity in self._outlined:
                self._outlined_records[identity].extend(records)
        return writes

    def _global_entries(self, part: PartData, writes: Writes, outlined_now: list[bytes],
                        child_records: list) -> list[tuple[bytes, bytes]]:
        entries = []
        for r in part.records:
            key = r.key
            if key.startswith(P_DERIVED) or child_of_key(key) is not None:
                raise SnapshotError("a part of the global tree carries a derived or a child's record")
            if key.startswith(P_ERASED):
                tag = key[len(P_ERASED):]
                if len(tag) != 32:
                    raise SnapshotError("a tombstone's key is erased/ and a 32-byte child tag")
                entries.append((tag, value_hash(r.value)))
            else:
                entries.append((key_hash(key), value_hash(r.value)))
            writes[STATE + key] = r.value
        for child in part.children:
            identity = child.identity
            if child.records is None:
                tree = self._outlined.get(identity)
                if tree is None or identity in self._outlined_seen or identity in outlined_now:
                    raise SnapshotError("a child is outlined that the manifest does not name, or twice")
                outlined_now.append(identity)
                entries.append((child_tag(identity), self.manifest.trees[tree].root))
                continue
            if identity in self._outlined:
                raise SnapshotError("an outlined child's records inside a part of the global tree")
            records = self._records_of(identity, child.records)
            if not records:
                raise SnapshotError("a child without records has no slot")
            root, nodes = smt.build_part(CHILD_NAMESPACE + identity, b"",
                                         [(key_hash(r.key), value_hash(r.value)) for r in records])
            writes.update((TREE_NODES + k, v) for k, v in nodes.items() if v is not None)
            writes.update((STATE + r.key, r.value) for r in records)
            for key, value in child_indexes(identity, ((r.key, r.value) for r in records)).items():
                writes[STATE + key] = value
            entries.append((child_tag(identity), root))
        return entries

    @staticmethod
    def _records_of(identity: bytes, records: Iterable[Record]) -> list[Record]:
        out = list(records)
        if not all(child_of_key(r.key) == identity for r in out):
            raise SnapshotError("a child's records include a key that is not the child's")
        return out

    def _tx_chunk(self, index: int, chunk: Chunk) -> Writes:
        level, start = self._tx_geometry[index - self.state_chunks]
        entries = chunk.txs
        if entries is None or chunk.parts is not None or len(entries) != 1 << level:
            raise SnapshotError(f"chunk {index} does not carry its {1 << level} transactions")
        writes: Writes = {}
        leaves = []
        for i, e in enumerate(entries):
            if e.height > self.header.height:
                raise SnapshotError(f"chunk {index} places a transaction after the snapshot's height")
            location = TxLocation(e.height, e.position, start + i, e.status, e.ref)
            leaves.append(txindex.entry_leaf(e.id, e.height, e.position, location_row(e.id, location)))
            writes[TX_INDEX + e.id] = encode_location(location)
            writes[order_key(start + i)] = e.id
        if txindex.subtree_hash(leaves) != self.manifest.tx_chunks[index - self.state_chunks]:
            raise SnapshotError(f"chunk {index}: its transactions do not give the hash the manifest names")
        return writes

    # ------------------------------------------------------------------ the end
    def finish(self) -> Writes:
        """The records that complete the store once every chunk is in: the tree nodes above the
        cut, the global log's right edge, the derived indexes of outlined children."""
        if self.missing:
            raise SnapshotError(f"{len(self.missing)} chunks are still missing")
        if self._outlined_seen != set(self._outlined):
            raise SnapshotError("an outlined child's tree was never placed in the global tree")
        writes: Writes = {}
        for (ns, parts), lone in zip(self._cuts, self._lone, strict=True):
            _, nodes = smt.fold_parts(ns, parts, lone)
            writes.update((TREE_NODES + k, v) for k, v in nodes.items())
        for (level, start), digest in zip(txindex.pieces(self.header.log_size), self.manifest.log, strict=True):
            writes[log_key(level, start >> level)] = digest
        for identity, records in self._outlined_records.items():
            for key, value in child_indexes(identity, ((r.key, r.value) for r in records)).items():
                writes[STATE + key] = value
        return writes


__all__ = ["Assembly", "NotCovered", "SnapshotError"]
