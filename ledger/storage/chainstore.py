"""The chain on disk: blocks, commits, the transaction index, state and the global log.

Key layout (one-byte prefixes; heights and indices big-endian so iteration is ordered)::

    b"G"                    genesis (canonical encoding)
    b"T"                    tip: the last committed block's height, hash, time and roots
    b"B" + height           block (canonical encoding)
    b"C" + height           the commit certificate that decided that block
    b"N" + hash             height of the block with that header hash
    b"X" + tx id            where a transaction is: height, position, log index, result
    b"K" + log index        the id of the transaction at that index of the global log (the
                            transaction index in log order, which a state-sync snapshot serves)
    b"S" + state key        state
    b"M" + tree position    a node of the authenticated state's trees (ledger/state/authenticated.py)
    b"J"                    the height the tree nodes on disk are at, while the nodes of later
                            blocks are held in memory (see "Tree nodes held in memory" below)
    b"W" + height           that block's changes to the trees (stores written before the tree
                            journal; see below)
    b"R" + height           the children's slots that block changed: (child tag, value or nil)
    b"L" + level + index    a complete subtree of the global RFC 6962 log
    b"P" + sequence         a transaction the node accepted and has not committed yet
    b"I" + identity + height + position
                            a committed transaction about that child (node stores only): what an
                            erasure replaces by stubs, found without reading the chain
    b"E" + child tag        a child erased by a committed block whose transactions are still
                            whole in the stored blocks (the value is the identity)
    b"E"                    a purge ran: the store's files still need compacting and reopening
    b"A"                    the store began from a state-sync snapshot at this height (blocks
                            at and below it are not held)
    b"H" + height           a header without its block: those a store that began from a
                            snapshot certified from genesis (with their ``C`` and ``N`` records)

A block and every change it causes go to LevelDB in ONE synchronous write batch, tip record
included: after a crash the store holds block h or block h+1 completely, never a mix. The block
that erases a child records the pending purge (``E``) in that same batch, so a crash before the
purge leaves it to be resumed at the next start (see :mod:`ledger.storage.erasure`).

Tree nodes held in memory. A block rewrites the nodes on the paths it changes: a child's tree
root at each crossing, the global tree's top at every block. Written with each block, those
rewrites were most of the store's bytes and of LevelDB's compactions (``scripts/bench_store.py``).
A store opened with ``tree_blocks`` > 0 keeps them in memory instead. Each block's tree changes
(key and value hashes by tree, a tenth of the nodes' bytes) go to the tree journal, a file in the
store's directory (:mod:`ledger.storage.treejournal`), durably and before the block's batch; the
first block held since the nodes were last written records in its batch the height the nodes on
disk are at (``J``). Every ``tree_blocks`` blocks (or once more nodes than ``TREE_NODES_HELD``
are held, or at close, or before a purge) the store writes the nodes held, each once however
often it changed, and deletes ``J``, in one batch, then empties the journal. Opening a store that
holds ``J`` (it stopped without writing its nodes) applies the journal's entries for the blocks
after that height again to the nodes on disk, checking every tree's recorded root and the last
against the tip's state root. Readers see the nodes held: the live state, and the frozen views
(:meth:`ChainStore.snapshot`, :meth:`ChainStore.raw_view`), which keep the blocks' node writes as
of their height. (Stores written before the journal kept each block's changes as a ``W`` record;
opening one that holds them rebuilds the nodes from those and writes them at once.)
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ledger.block import COMMIT, HEADER, MAX_BLOCK_TXS, Block, Commit, Header
from ledger.chain import ExecutedBlock, Tip
from ledger.encoding import Bytes, Int, List, Optional, Schema, Str, decode, pack
from ledger.errors import DecodeError, StorageError
from ledger.genesis import GENESIS, Genesis
from ledger.merkle import EMPTY_ROOT, MerkleLog
from ledger.privacy.subjects import subject_of
from ledger.privacy.tags import child_tag
from ledger.rules.erasure import EVENT_ERASED
from ledger.state.authenticated import TreeUpdate, apply_updates, root_of
from ledger.state.machine import chain_info_of, result_row
from ledger.state.records import K_CHAIN, ChainInfo
from ledger.storage.kv import DEFAULT_MAX_OPEN_FILES, KV, LevelKV, MemoryKV, Snapshot
from ledger.storage.nodecache import NodeCache
from ledger.storage.treejournal import JOURNAL_NAME, TreeJournal

TIP = Schema(
    Tip,
    {
        "height": Int(),
        "hash": Bytes(32),
        "time": Int(),
        "state_root": Bytes(32),
        "log_size": Int(),
        "log_root": Bytes(32),
    },
)


@dataclass(frozen=True, slots=True)
class TxLocation:
    height: int
    index: int
    log_index: int
    status: str
    ref: bytes | None


TX_LOCATION = Schema(
    TxLocation,
    {"height": Int(min=1), "index": Int(), "log_index": Int(), "status": Str(max=16), "ref": Optional(Bytes(32))},
)


def encode_location(location: TxLocation) -> bytes:
    """``TX_LOCATION.encode`` of a location this software made (its fields in range): the same
    bytes without the schema's generic walk, which every indexed transaction would pay."""
    return _pack_location(location.height, location.index, location.log_index, location.status, location.ref)


def _pack_location(height: int, index: int, log_index: int, status: str, ref: bytes | None) -> bytes:
    return pack({"height": height, "index": index, "log_index": log_index, "ref": ref, "status": status})


_GENESIS, _TIP = b"G", b"T"
_SUBJECT, _ERASURE = b"I", b"E"
COMPACTION_DUE = _ERASURE
_ANCHOR, _HEADER = b"A", b"H"
_TREE_LOG = b"W"  # (stores written before the tree journal)
_TREE_BASE = b"J"
#: blocks whose tree nodes a node's store holds in memory before writing them (ChainStore.open)
DEFAULT_TREE_BLOCKS = 64
#: tree nodes held in memory at most (about 800 bytes each): written sooner when a store holds more
TREE_NODES_HELD = 65536
ANCHOR_KEY = _ANCHOR
#: the record of the height the tree nodes on disk are at, and the legacy prefix of blocks' tree
#: changes (what an audit of a data directory reads to know which tree nodes it can compare)
TREE_BASE_KEY, LEGACY_TREE_CHANGES = _TREE_BASE, _TREE_LOG
_UNREAD = object()
#: prefixes a state-sync snapshot reads and writes (ledger/snapshot/)
STATE, TREE_NODES, TX_INDEX, TX_ORDER = b"S", b"M", b"X", b"K"


@dataclass(frozen=True, slots=True)
class Anchor:
    """Where a store that began from a state-sync snapshot began."""

    height: int


ANCHOR = Schema(Anchor, {"height": Int(min=1)})


def _h(height: int) -> bytes:
    return height.to_bytes(8, "big")


def subject_key(identity: bytes, height: int = -1, position: int = 0) -> bytes:
    """The key of a child's transaction in the subject index (the child's prefix without height)."""
    key = _SUBJECT + identity
    return key if height < 0 else key + _h(height) + position.to_bytes(4, "big")


def split_subject_key(key: bytes) -> tuple[bytes, int, int]:
    """(identity, height, position) of a subject index key."""
    return key[1:17], int.from_bytes(key[17:25], "big"), int.from_bytes(key[25:29], "big")


def erasure_key(tag: bytes) -> bytes:
    """The key of a pending purge, under the erased child's tag."""
    return _ERASURE + tag


def order_key(log_index: int) -> bytes:
    """The key of the transaction at ``log_index`` in the transaction index in log order."""
    return TX_ORDER + log_index.to_bytes(8, "big")


_LOG_LEVELS = [b"L" + bytes([level]) for level in range(256)]


def log_key(level: int, index: int) -> bytes:
    """The key of a complete subtree of the global log."""
    return _LOG_LEVELS[level] + index.to_bytes(8, "big")


class StateOnKV:
    """The state as a :class:`ledger.state.view.StateReader` over the ``S`` prefix."""

    __slots__ = ("_kv", "nodes", "pending")

    def __init__(self, kv: KV) -> None:
        self._kv = kv
        #: every write of tree nodes to ``kv`` goes through ``nodes.writing``
        self.nodes = NodeCache()
        #: tree nodes held in memory, not written yet (None: deleted), ahead of the store's
        self.pending: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        return self._kv.get(b"S" + key)

    def scan(self, start: bytes, stop: bytes) -> Iterator[tuple[bytes, bytes]]:
        for k, v in self._kv.iterate(b"S" + start, b"S" + stop):
            yield k[1:], v

    def last(self, start: bytes, stop: bytes) -> tuple[bytes, bytes] | None:
        for k, v in self._kv.iterate(b"S" + start, b"S" + stop, reverse=True):
            return k[1:], v
        return None

    def tree_node(self, position: bytes) -> bytes | None:
        pending = self.pending
        if position in pending:
            return pending[position]
        return self.nodes.get(position, self._stored_node)

    def _stored_node(self, position: bytes) -> bytes | None:
        return self._kv.get(b"M" + position)


def _node_through(layers: tuple[dict[bytes, bytes | None], ...], position: bytes,
                  stored: Callable[[], bytes | None]) -> bytes | None:
    """The node at ``position`` as the newest of ``layers`` (blocks' node writes not yet in the
    store, oldest first) has it (None: deleted), else as ``stored()`` reads it."""
    for layer in reversed(layers):
        if position in layer:
            return layer[position]
    return stored()


class StateSnapshot:
    """The state records and tree nodes as they were at ``height`` (a store snapshot), for
    serving proofs while later blocks are written."""

    __slots__ = ("_layers", "_snap", "height")

    def __init__(self, snap: Snapshot, height: int, layers: tuple[dict[bytes, bytes | None], ...] = ()) -> None:
        self._snap, self.height = snap, height
        self._layers = layers  # the tree nodes of the blocks up to ``height`` not written yet, oldest first

    def get(self, key: bytes) -> bytes | None:
        return self._snap.get(b"S" + key)

    def scan(self, start: bytes, stop: bytes) -> Iterator[tuple[bytes, bytes]]:
        with self._snap.iterator(start=b"S" + start, stop=b"S" + stop) as it:
            for k, v in it:
                yield k[1:], v

    def last(self, start: bytes, stop: bytes) -> tuple[bytes, bytes] | None:
        tail = deque(self.scan(start, stop), maxlen=1)  # a snapshot iterates forwards only
        return tail[0] if tail else None

    def tree_node(self, position: bytes) -> bytes | None:
        return _node_through(self._layers, position, lambda: self._snap.get(b"M" + position))

    def close(self) -> None:
        self._snap.close()


class RawView:
    """The whole store as it was when the view was taken (a store snapshot), key by key: what a
    state-sync snapshot is planned and served from (ledger/snapshot/make.py)."""

    __slots__ = ("_layers", "_snap", "height")

    def __init__(self, snap: Snapshot, height: int, layers: tuple[dict[bytes, bytes | None], ...] = ()) -> None:
        self._snap, self.height = snap, height
        self._layers = layers  # as StateSnapshot's

    def get(self, key: bytes) -> bytes | None:
        if self._layers and key[:1] == TREE_NODES:
            return _node_through(self._layers, key[1:], lambda: self._snap.get(key))
        return self._snap.get(key)

    def items(self, start: bytes, stop: bytes) -> Generator[tuple[bytes, bytes], None, None]:
        if self._layers and start < TREE_NODES + b"\xff" and stop > TREE_NODES:
            raise StorageError("tree nodes held in memory are read by position, not scanned")
        with self._snap.iterator(start=start, stop=stop) as it:
            yield from it

    def close(self) -> None:
        self._snap.close()


@dataclass(frozen=True, slots=True)
class Slot:
    child: bytes  # the child's tag
    value: bytes | None  # the child's tree root or tombstone hash; nil once empty


SLOTS = List(Schema(Slot, {"child": Bytes(32), "value": Optional(Bytes(32))}), max=2 * MAX_BLOCK_TXS + 1024)


def encode_slots(slots: tuple[tuple[bytes, bytes | None], ...]) -> bytes:
    """``SLOTS`` encoded, from the slot changes a block execution made (32-byte tags, in tag
    order; values 32 bytes or nil): the same bytes as ``encode(SLOTS.wire(...))`` without the
    generic walk, which a block pays once per child it touched."""
    return pack([{"child": tag, "value": value} for tag, value in slots])


def decode_slots(raw: bytes) -> tuple[tuple[bytes, bytes | None], ...]:
    return tuple((slot.child, slot.value) for slot in SLOTS.check(decode(raw), "slots"))


def encode_tree_updates(updates: tuple[TreeUpdate, ...]) -> bytes:
    """A block's tree changes (``W``): ``[[namespace, [key hash, value hash or nil, ...], root], ...]``."""
    return pack([[namespace, [x for item in changes.items() for x in item], root]
                 for namespace, changes, root in updates])


def decode_tree_updates(raw: bytes) -> list[TreeUpdate]:
    out: list[TreeUpdate] = []
    trees = decode(raw)
    if not isinstance(trees, list):
        raise DecodeError("tree changes are a list")
    for tree in trees:
        if not (isinstance(tree, list) and len(tree) == 3 and type(tree[0]) is bytes and isinstance(tree[1], list)
                and len(tree[1]) % 2 == 0 and type(tree[2]) is bytes and len(tree[2]) == 32):
            raise DecodeError("a tree's changes are [namespace, [key, value, ...], root]")
        flat = tree[1]
        keys, values = flat[0::2], flat[1::2]
        if not (all(type(k) is bytes and len(k) == 32 for k in keys)
                and all(v is None or (type(v) is bytes and len(v) == 32) for v in values)):
            raise DecodeError("a tree change is a 32-byte key hash and a 32-byte value hash or nil")
        out.append((tree[0], dict(zip(keys, values, strict=True)), tree[2]))
    return out


ERASED_STATUS = "erased"


def location_row(tx_id: bytes, location: TxLocation) -> bytes:
    """The result row of an indexed transaction (:func:`ledger.state.machine.result_row`): the
    one its stub kept for an erased one, as every node has it either way."""
    if location.status == ERASED_STATUS and location.ref is not None:
        return location.ref
    return result_row(tx_id, location.status, location.ref)


def expected_location(executed: ExecutedBlock, i: int) -> TxLocation:
    """Where the index says the block's ``i``-th executed transaction is, and its result."""
    outcome = executed.changes.results[i].outcome
    position = executed.position_of(i)
    return TxLocation(executed.height, position, executed.first_log_index + position, outcome.status, outcome.ref)


def encoded_locations(executed: ExecutedBlock) -> list[bytes]:
    """The transaction-index records of a block's executed transactions, as the store holds them:
    ``encode_location(expected_location(executed, i))`` for each, built without the records."""
    height, first, results = executed.height, executed.first_log_index, executed.changes.results
    positions = executed.positions
    out = []
    for i in range(len(executed.txs)):
        outcome = results[i].outcome
        position = i if positions is None else positions[i]
        out.append(_pack_location(height, position, first + position, outcome.status, outcome.ref))
    return out


def erased_locations(executed: ExecutedBlock) -> dict[bytes, bytes]:
    """Index records for the stubs of a re-executed block: where each erased transaction was. What
    it did is known only to the nodes that held it before the erasure: the record's status is
    ``erased`` and its ``ref`` the result row hash the stub kept, against which a node's own record
    can be checked (:func:`ledger.state.machine.result_row`)."""
    h = executed.height
    return {tx_id: encode_location(TxLocation(h, position, executed.first_log_index + position, ERASED_STATUS,
                                                 row))
            for position, tx_id, row in executed.erased}


class ChainStore:
    """A :class:`ledger.chain.ChainView` backed by a key-value store.

    ``sync`` makes every block's batch durable before ``commit_block`` returns;
    ``keep_blocks=False`` keeps only what executing later blocks needs (state, log, indexes),
    as the auditor's own replay does; ``tree_blocks`` > 0 holds that many blocks' tree nodes in
    memory before writing them (see the module doc).
    """

    def __init__(self, kv: KV, *, sync: bool = True, keep_blocks: bool = True, tree_blocks: int = 0) -> None:
        self.kv = kv
        self._sync = sync
        self._keep_blocks = keep_blocks
        self._tree_blocks = tree_blocks
        #: the tree nodes each block wrote since they were last written to ``kv``, with the
        #: block's height (the store's own view of them is ``_state.pending``, all merged)
        self._layers: list[tuple[int, dict[bytes, bytes | None]]] = []
        #: held while tree nodes move between memory and ``kv``, and while a frozen view is taken
        self._tree_lock = threading.RLock()
        self._state = StateOnKV(kv)
        path = getattr(kv, "path", None)
        #: the held blocks' tree changes, for a restart to rebuild their nodes (none in memory)
        self._journal = TreeJournal(Path(path) / JOURNAL_NAME) if path is not None else None
        self._tip: Tip | None = None
        self._chain: ChainInfo | None = None
        self._genesis: Genesis | None = None
        #: set when a block or record read back does not decode (see :attr:`damage`)
        self._damage: str | None = None
        #: held while the files are reopened (after a purge), and by every read made on a thread
        #: other than the event loop's (the health patrol, the state-sync server): LevelDB frees
        #: the database under a read in flight on another thread, which crashes the process
        self.files_lock = threading.Lock()
        self._anchor: Anchor | object | None = _UNREAD  # written once, with the snapshot the store began from
        raw = kv.get(_TIP)
        if raw is not None:
            try:
                self._tip = TIP.decode(raw)
                self._genesis = GENESIS.decode(kv.get(_GENESIS) or b"")
                self._chain = chain_info_of(self._state)
            except DecodeError as exc:
                raise StorageError(f"the store's tip, genesis or chain record does not decode: {exc}") from None
            self._recover_tree()

    # ---- opening
    @classmethod
    def open(cls, path: str | Path, genesis: Genesis | None = None, *, create: bool = True,
             max_open_files: int = DEFAULT_MAX_OPEN_FILES, tree_blocks: int = DEFAULT_TREE_BLOCKS) -> ChainStore:
        """Open the store at ``path``. With ``create``, a missing (or empty) directory becomes a
        new store holding ``genesis``; an existing store is never made anew (see
        :class:`~ledger.storage.kv.LevelKV`), and one that lost its tip record is refused."""
        kv = LevelKV(path, create=create, max_open_files=max_open_files)
        try:
            store = cls(kv, tree_blocks=tree_blocks)
            if store._tip is None and not kv.created:
                raise StorageError(f"the store at {path} holds no tip record: it is damaged (a new store "
                                   "is only made in a missing or empty directory)")
            if genesis is not None:
                store.initialize(genesis)
        except BaseException:
            kv.close()
            raise
        return store

    @classmethod
    def memory(cls, genesis: Genesis | None = None) -> ChainStore:
        store = cls(MemoryKV())
        if genesis is not None:
            store.initialize(genesis)
        return store

    def initialize(self, genesis: Genesis) -> None:
        """Write the genesis state into an empty store, or check an existing store matches it."""
        if self._tip is not None:
            if self.genesis.hash != genesis.hash:
                raise StorageError(
                    f"this data directory holds chain {self.genesis.chain_id} with genesis "
                    f"{self.genesis.hash.hex()[:16]}, not genesis {genesis.hash.hex()[:16]}"
                )
            return
        tip = Tip(height=0, hash=genesis.hash, time=genesis.genesis_time, state_root=genesis.state_root(),
                  log_size=0, log_root=EMPTY_ROOT)
        changes: dict[bytes, bytes | None] = {b"S" + k: v for k, v in genesis.state_writes().items()}
        nodes = genesis.state_commitment().node_writes
        changes.update((b"M" + k, v) for k, v in nodes.items())
        changes[_GENESIS] = GENESIS.encode(genesis)
        changes[_TIP] = TIP.encode(tip)
        with self._state.nodes.writing(nodes):
            self.kv.write(changes, sync=self._sync)
        self._tip, self._genesis = tip, genesis
        self._chain = chain_info_of(self._state)

    def close(self) -> None:
        try:
            if self._tree_blocks and self.damage is None:
                self.flush_tree()  # (if this fails, the next start rebuilds them)
        finally:
            if self._journal is not None:
                self._journal.close()
            self.kv.close()

    # ---- tree nodes held in memory
    def _hold(self, height: int, nodes: dict[bytes, bytes | None]) -> None:
        self._state.pending.update(nodes)
        self._layers.append((height, nodes))

    @property
    def tree_blocks_held(self) -> int:
        """Blocks whose tree nodes are held in memory (and their changes in the journal): what a
        restart after a crash would replay."""
        return len(self._layers)

    def flush_tree(self) -> None:
        """Write the tree nodes held in memory, each once, in one batch, then empty the journal
        of their blocks' tree changes."""
        with self._tree_lock:
            if not self._layers:
                return
            self._write_held({_TREE_BASE: None})
            if self._journal is not None:
                self._journal.cut(0)

    def _write_held(self, batch: dict[bytes, bytes | None]) -> None:
        pending = self._state.pending
        batch.update((TREE_NODES + position, node) for position, node in pending.items())
        with self._state.nodes.writing(pending):
            self.kv.write(batch, sync=self._sync)
        self._state.pending = {}  # a new dict: what readers already hold stays as it was
        self._layers = []

    def _recover_tree(self) -> None:
        """Rebuild the tree nodes of the blocks whose nodes were held in memory when the store
        last stopped: apply their tree changes, from the journal, to the nodes on disk."""
        legacy = [(int.from_bytes(key[1:], "big"), raw)
                  for key, raw in self.kv.iterate(_TREE_LOG, _TREE_LOG + b"\xff")]
        if legacy:
            heights = [height for height, _ in legacy]
            if heights != list(range(heights[0], self.tip.height + 1)):
                raise StorageError(f"the store holds the tree changes of blocks {heights[0]} to {heights[-1]}, "
                                   f"not a run up to its tip {self.tip.height}: it is damaged")
            self._rebuild(legacy, "stored tree changes")
            self._write_held({_TREE_LOG + _h(height): None for height, _ in legacy})
            return
        raw = self.kv.get(_TREE_BASE)
        if raw is None:  # the nodes on disk are the tip's; entries left are of blocks before it
            if self._journal is not None:
                self._journal.cut(0)
            return
        base, tip = int.from_bytes(raw, "big"), self.tip.height
        if len(raw) != 8 or base >= tip:
            raise StorageError(f"the store's record of where its tree nodes stand ({raw.hex()}) is not a height "
                               f"below its tip {tip}: it is damaged")
        entries = [] if self._journal is None else self._journal.read()
        run = entries[:tip - base]
        if [height for height, _, _ in run] != list(range(base + 1, tip + 1)):
            found = ", ".join(str(height) for height, _, _ in entries[:5]) or "none"
            raise StorageError(f"the tree journal does not hold the tree changes of blocks {base + 1} to {tip} "
                               f"(it holds blocks: {found}): the store's state tree cannot be rebuilt; "
                               "the store is damaged")
        assert self._journal is not None
        self._journal.cut(run[-1][2])  # an entry past the tip belongs to a block never stored
        self._rebuild([(height, payload) for height, payload, _ in run], "tree journal")

    def _rebuild(self, kept: list[tuple[int, bytes]], source: str) -> None:
        """Hold the nodes that the tree changes ``kept`` (height, encoded changes) of the blocks
        up to the tip, in order, make, checking each tree's root as it was recorded and the last
        against the tip's state root."""
        for height, raw in kept:
            try:
                nodes = apply_updates(self._state.tree_node, decode_tree_updates(raw))
            except DecodeError as exc:
                raise StorageError(f"the tree changes of block {height} ({source}) do not decode: {exc}") from None
            except ValueError as exc:
                raise StorageError(f"the tree changes of block {height} ({source}) do not apply: {exc}; "
                                   "the store is damaged") from None
            self._hold(height, nodes)
        if root_of(self._state.tree_node) != self.tip.state_root:
            raise StorageError(f"the state tree rebuilt from the {source} does not match the tip's "
                               "state root: the store is damaged")

    @property
    def damage(self) -> str | None:
        """What is known to be wrong with the stored data (None while nothing is)."""
        return self._damage or getattr(self.kv, "damage", None)

    def mark_damaged(self, reason: str) -> None:
        if self._damage is None:
            self._damage = reason

    @staticmethod
    def header_writes(header: Header, commit: Commit) -> dict[bytes, bytes]:
        """The records of a certified header held without its block (a store that begins from a
        snapshot keeps the headers it certified from genesis, and serves them to light clients)."""
        if commit.height != header.height or commit.block != header.hash:
            raise StorageError(f"the commit certificate is not for header {header.height}")
        return {_HEADER + _h(header.height): HEADER.encode(header), b"C" + _h(header.height): COMMIT.encode(commit),
                b"N" + header.hash: _h(header.height)}

    @staticmethod
    def anchor_writes(genesis: Genesis, header: Header,
                      commit: Commit) -> tuple[dict[bytes, bytes], dict[bytes, bytes]]:
        """The records that make a store holding a verified snapshot of the state after ``header``
        (written by the caller) a chain store at that height: (the anchor, the header and its
        certificate, the genesis; then the tip, to be written last, once everything else is
        durable)."""
        first = {**ChainStore.header_writes(header, commit), _GENESIS: GENESIS.encode(genesis),
                 _ANCHOR: ANCHOR.encode(Anchor(header.height))}
        tip = Tip(height=header.height, hash=header.hash, time=header.time, state_root=header.state_root,
                  log_size=header.log_size, log_root=header.log_root)
        return first, {_TIP: TIP.encode(tip)}

    # ---- ChainView
    @property
    def tip(self) -> Tip:
        if self._tip is None:
            raise StorageError("the store is not initialised with a genesis")
        return self._tip

    @property
    def chain(self) -> ChainInfo:
        if self._chain is None:
            raise StorageError("the store is not initialised with a genesis")
        return self._chain

    @property
    def genesis(self) -> Genesis:
        if self._genesis is None:
            raise StorageError("the store is not initialised with a genesis")
        return self._genesis

    @property
    def state(self) -> StateOnKV:
        return self._state

    @property
    def height(self) -> int:
        return self.tip.height

    def get_log_node(self, level: int, index: int) -> bytes | None:
        return self.kv.get(log_key(level, index))

    def has_tx(self, tx_id: bytes) -> bool:
        return self.kv.get(b"X" + tx_id) is not None

    # ---- reads
    def block_bytes(self, height: int) -> bytes | None:
        return self.kv.get(b"B" + _h(height))

    def read_verified(self, height: int) -> tuple[bytes | None, bytes | None]:
        """Block ``height`` and its commit as stored, every checksum on the way verified (LevelDB
        otherwise trusts what it cached or read): for the health patrol."""
        with self.files_lock:
            get = getattr(self.kv, "get_verified", self.kv.get)
            return get(b"B" + _h(height)), get(b"C" + _h(height))

    def block(self, height: int) -> Block | None:
        raw = self.block_bytes(height)
        return None if raw is None else Block.decode(raw)

    def header(self, height: int) -> Header | None:
        block = self.block(height)
        if block is None:
            if height > self.base:
                return None
            raw = self.kv.get(_HEADER + _h(height))  # certified when the store began from a snapshot
            return None if raw is None else HEADER.decode(raw)
        return block.header

    @property
    def anchor(self) -> Anchor | None:
        """Where this store began if it began from a state-sync snapshot (None: from genesis)."""
        if self._anchor is _UNREAD:
            raw = self.kv.get(_ANCHOR)
            self._anchor = None if raw is None else ANCHOR.decode(raw)
        return self._anchor  # type: ignore[return-value]

    @property
    def base(self) -> int:
        """The last height whose block this store does not hold because it never had it: 0 for
        a store that began at genesis, the snapshot's height for one that began from a snapshot."""
        anchor = self.anchor
        return 0 if anchor is None else anchor.height

    def commit(self, height: int) -> Commit | None:
        raw = self.kv.get(b"C" + _h(height))
        return None if raw is None else COMMIT.decode(raw)

    def height_of(self, block_hash: bytes) -> int | None:
        raw = self.kv.get(b"N" + block_hash)
        return None if raw is None else int.from_bytes(raw, "big")

    def slots_bytes(self, height: int) -> bytes | None:
        """The slot changes of block ``height`` as stored (None: it changed none)."""
        return self.kv.get(b"R" + _h(height))

    def slots(self, height: int) -> tuple[tuple[bytes, bytes | None], ...]:
        """The children's slots block ``height`` changed (what a verifier lacking an erased
        child's records needs to follow the state root)."""
        raw = self.kv.get(b"R" + _h(height))
        return () if raw is None else decode_slots(raw)

    def snapshot(self) -> StateSnapshot:
        """The state at the tip, frozen (LevelDB and in-memory stores can take one)."""
        take = getattr(self.kv, "snapshot", None)
        if take is None:
            raise StorageError("this store cannot take snapshots")
        with self._tree_lock:
            return StateSnapshot(take(), self.tip.height, self._held_layers())

    def _held_layers(self) -> tuple[dict[bytes, bytes | None], ...]:
        return tuple(nodes for _, nodes in self._layers)

    def raw_view(self) -> RawView:
        """The whole store at the tip, frozen (LevelDB and in-memory stores can take one)."""
        take = getattr(self.kv, "snapshot", None)
        if take is None:
            raise StorageError("this store cannot take snapshots")
        with self._tree_lock:
            snap, layers = take(), self._held_layers()
        raw = snap.get(_TIP)  # the tip as the snapshot sees it (a block may be landing meanwhile)
        if raw is None:
            snap.close()
            raise StorageError("the store is not initialised with a genesis")
        return RawView(snap, TIP.decode(raw).height, layers)

    def tx_location(self, tx_id: bytes) -> TxLocation | None:
        """Where a committed transaction is. A block being written by another thread is not
        committed yet for this store's readers until its tip is: its index records may be on
        disk before the tip moves, and a proof up to the old tip cannot cover them."""
        raw = self.kv.get(b"X" + tx_id)
        if raw is None:
            return None
        location = TX_LOCATION.decode(raw)
        return location if location.height <= self.tip.height else None

    def log(self) -> MerkleLog:
        return MerkleLog(self.get_log_node, self.tip.log_size)

    # ---- writes
    def commit_block(self, executed: ExecutedBlock, commit: Commit | None, *,
                     locations: list[bytes] | None = None) -> None:
        """Store a decided block and everything it changes in one batch (synchronous unless
        the store was opened otherwise). ``locations``: the block's :func:`encoded_locations`,
        if the caller computed them already."""
        block = executed.block
        h = block.header
        tip = self.tip
        if h.height != tip.height + 1 or h.prev_hash != tip.hash:
            raise StorageError(f"block {h.height} does not extend the stored tip {tip.height}")
        batch: dict[bytes, bytes | None] = {}
        for key, value in executed.changes.writes:
            batch[b"S" + key] = value
        deferred = self._tree_blocks > 0
        if deferred:
            if not self._layers:  # the first block held: the nodes on disk are its parent's
                batch[_TREE_BASE] = _h(tip.height)
        else:
            if self._layers:
                self.flush_tree()  # nodes a restart rebuilt in memory go first
            for position, node in executed.changes.tree_writes.items():
                batch[b"M" + position] = node
        if executed.changes.slots:
            batch[b"R" + _h(h.height)] = encode_slots(executed.changes.slots)
        for (level, index), node in executed.log_nodes.items():
            batch[log_key(level, index)] = node
        first = executed.first_log_index
        encoded = locations or encoded_locations(executed)
        for i, (tx, where) in enumerate(zip(executed.txs, encoded, strict=True)):
            batch[b"X" + tx.id] = where
            batch[order_key(first + executed.position_of(i))] = tx.id
        for tx_id, where in erased_locations(executed).items():
            batch[b"X" + tx_id] = where
        for place, stub_id, _row in executed.erased:
            batch[order_key(first + place)] = stub_id
        batch[b"N" + block.hash] = _h(h.height)
        if self._keep_blocks:
            self._erasure_records(executed, batch)
            if commit is None or commit.height != h.height or commit.block != block.hash:
                raise StorageError("the commit certificate is not for this block")
            batch[b"B" + _h(h.height)] = block.encode()
            batch[b"C" + _h(h.height)] = COMMIT.encode(commit)
        new_tip = Tip(height=h.height, hash=block.hash, time=h.time, state_root=h.state_root,
                      log_size=h.log_size, log_root=h.log_root)
        batch[_TIP] = TIP.encode(new_tip)
        if deferred:
            with self._tree_lock:  # a frozen view sees the block, its nodes and its height, or none
                self._write_deferred(h.height, batch, executed.changes.tree_updates)
                self._hold(h.height, executed.changes.tree_writes)
                self._tip = new_tip
        else:
            with self._state.nodes.writing(executed.changes.tree_writes):
                self.kv.write(batch, sync=self._sync)
            self._tip = new_tip
        if b"S" + K_CHAIN in batch:  # parameters changed at this height
            self._chain = chain_info_of(self._state)
        if deferred and (len(self._layers) >= self._tree_blocks or len(self._state.pending) >= TREE_NODES_HELD):
            self.flush_tree()

    def _write_deferred(self, height: int, batch: dict[bytes, bytes | None],
                        updates: tuple[TreeUpdate, ...]) -> None:
        """Write a block's batch, its tree changes in the journal first."""
        journal = self._journal
        if journal is None:
            self.kv.write(batch, sync=self._sync)
            return
        mark = journal.append(height, encode_tree_updates(updates), sync=self._sync)
        try:
            self.kv.write(batch, sync=self._sync)
        except BaseException:
            journal.cut(mark)  # the block is not stored: neither are its tree changes
            raise

    @staticmethod
    def _erasure_records(executed: ExecutedBlock, batch: dict[bytes, bytes | None]) -> None:
        """What a later erasure needs: where each child's transactions are, and the children
        this block erased, whose transactions are still to be purged from the blocks."""
        height = executed.height
        for i, tx in enumerate(executed.txs):
            subject = subject_of(tx)
            if subject is not None:
                batch[subject_key(subject, height, executed.position_of(i))] = b""
        for event in executed.changes.events:
            if event.kind == EVENT_ERASED:
                batch[erasure_key(child_tag(event.identity))] = event.identity

    # ---- erasure (ledger/storage/erasure.py does the purge)
    def pending_erasures(self) -> list[tuple[bytes, bytes]]:
        """(tag, identity) of each erased child whose transactions are still in the blocks."""
        return [(key[1:], identity) for key, identity in self.kv.iterate(_ERASURE + b"\x00", b"F")]

    @property
    def compaction_due(self) -> bool:
        """A purge ran and the store's files may still hold what it deleted."""
        return self.kv.get(COMPACTION_DUE) is not None

    def compaction_done(self) -> None:
        self.kv.write({COMPACTION_DUE: None}, sync=True)

    def compact_files(self) -> None:
        """Rewrite the store's files without deleted records (LevelDB only)."""
        compact = getattr(self.kv, "compact", None)
        if compact is not None:
            compact()

    def reopen_files(self) -> None:
        """Close and reopen the store's files, dropping what only the old ones held (LevelDB only).

        The caller guarantees nothing else uses the store meanwhile."""
        reopen = getattr(self.kv, "reopen", None)
        if reopen is not None:
            with self.files_lock:
                reopen()
                self._state.nodes.clear()

    # ---- accepted, not yet committed transactions (a durable mempool)
    def accept(self, records: dict[int, bytes]) -> None:
        """Durably remember accepted transactions under increasing sequence numbers."""
        self.kv.write({b"P" + _h(seq): raw for seq, raw in records.items()}, sync=True)

    def forget_accepted(self, seqs: Iterable[int]) -> None:
        self.kv.write({b"P" + _h(seq): None for seq in seqs}, sync=True)

    def accepted(self) -> Iterator[tuple[int, bytes]]:
        """Accepted transactions in the order they were accepted."""
        for key, raw in self.kv.iterate(b"P", b"Q"):
            yield int.from_bytes(key[1:], "big"), raw
