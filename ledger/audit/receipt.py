"""Receipts: a self-contained proof that one transaction is in the chain, checkable offline.

A receipt holds the transaction's bytes, its index in the global log and the RFC 6962
inclusion path up to a header, that header with its commit certificate, and the validator set
(keys and stakes) in force at the header's height. Checking it needs no node::

    leaf hash of the bytes --inclusion path--> log root   == the header's log root (and size)
    header fields --tagged hash--> header hash            == what the certificate commits
    certificate: precommits of more than 2/3 of the set's stake, signatures verified
    the set's hash                                        == the header's validators_hash

and binds the transaction to its block: the header at the receipt's height (with its own
certificate and set) holds the transaction at the receipt's position under its transaction root
(an RFC 6962 path), and its log size and count place that position at the log index. For a
crossing, the receipt also carries the request's record proven at a later certified header
(``outcome``: :mod:`ledger.state.proof`), so the outcome it prints is proven, not reported.

That proves the transaction is in the chain *signed by those validator sets*. What makes the sets
the right ones is the trust anchor, named in every verdict:

* ``--genesis FILE``: the set is the genesis set, or reached from it through the receipt's
  set changes (each a header committed by the set trusted so far, naming the next set's hash);
* ``--validators-hash HEX``: the set's hash is one the verifier trusts (from an audit);
* neither: the receipt is consistent, but anchored in nothing; the verdict says so and
  ``custos audit verify-receipt`` exits 2 (pin an anchor).

The result the node reported for the transaction travels with the receipt, marked as reported;
a crossing's proven outcome is in ``outcome``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ledger.audit.findings import AuditFailure
from ledger.block import COMMIT, HEADER, Commit, Header, header_hash, is_stub
from ledger.encoding import decode
from ledger.errors import ChainError, CustosError
from ledger.genesis import Genesis
from ledger.merkle import inclusion_proof_of, leaf_hash, verify_inclusion
from ledger.rules.validators import validator_set_at
from ledger.state.proof import RecordProof, prove_record
from ledger.state.records import REQUEST, k_request, k_valset
from ledger.state.view import StateReader
from ledger.storage.chainstore import ChainStore
from ledger.tx.bodies import CROSSING
from ledger.tx.envelope import decode_tx
from ledger.validators import ValidatorSet

FORMAT = "custos-receipt/2"


class ReceiptError(CustosError):
    """The file is not a receipt at all (unreadable, not JSON, another format)."""

    code = "receipt"


@dataclass(frozen=True)
class SetChange:
    """Header ``h`` committed by the set trusted so far, naming the set of ``h + 1``."""

    header: Header
    commit: Commit
    validators: ValidatorSet


@dataclass(frozen=True)
class Certified:
    """A header, the certificate that decided it, and the set that signed it."""

    header: Header
    commit: Commit
    validators: ValidatorSet

    def to_json(self) -> dict[str, str]:
        return {"header": HEADER.encode(self.header).hex(), "commit": COMMIT.encode(self.commit).hex(),
                "validators": self.validators.encode().hex()}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Certified:
        return cls(HEADER.decode(_hex(doc["header"])), COMMIT.decode(_hex(doc["commit"])),
                   ValidatorSet.from_wire(decode(_hex(doc["validators"]))))


@dataclass(frozen=True)
class Outcome:
    """A crossing request's record, proven at a certified header at or after its block."""

    at: Certified
    proof: RecordProof


@dataclass(frozen=True)
class Receipt:
    chain_id: str
    genesis_hash: bytes
    tx: bytes
    tx_id: bytes
    height: int  # the block holding the transaction
    index: int  # its position there
    log_index: int
    log_size: int
    path: tuple[bytes, ...]
    header: Header
    commit: Commit
    validators: ValidatorSet
    block: Certified | None = None  # the header at ``height``
    tx_path: tuple[bytes, ...] = ()  # the transaction at ``index`` under the block's transaction root
    set_changes: tuple[SetChange, ...] = ()
    reported_result: dict[str, Any] | None = None
    outcome: Outcome | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "chain_id": self.chain_id,
            "genesis_hash": self.genesis_hash.hex(),
            "tx_id": self.tx_id.hex(),
            "tx": self.tx.hex(),
            "height": self.height,
            "index": self.index,
            "log": {"index": self.log_index, "size": self.log_size, "path": [p.hex() for p in self.path]},
            "header": HEADER.encode(self.header).hex(),
            "header_hash": self.header.hash.hex(),
            "commit": COMMIT.encode(self.commit).hex(),
            "validators": self.validators.encode().hex(),
            "set_changes": [
                {"header": HEADER.encode(c.header).hex(), "commit": COMMIT.encode(c.commit).hex(),
                 "validators": c.validators.encode().hex()}
                for c in self.set_changes
            ],
            "block": None if self.block is None else {**self.block.to_json(),
                                                           "tx_path": [p.hex() for p in self.tx_path]},
            "reported_result": self.reported_result,
            "outcome": None if self.outcome is None else {**self.outcome.at.to_json(),
                                                           "proof": self.outcome.proof.encode().hex()},
            "note": "header, commit and validators are canonical msgpack (hex); reported_result is what the "
                    "node said and is not covered by the proof; outcome is a proven state record",
        }


def set_change_heights(state: StateReader, up_to: int) -> list[int]:
    """Heights ``c`` (2 <= c <= up_to) at which the validator set differs from the one before."""
    heights, previous = [], None
    for key, value in state.scan(b"vset/", k_valset(up_to + 1)):
        height = int.from_bytes(key[len(b"vset/"):], "big")
        vs_hash = ValidatorSet.from_wire(decode(value)).hash
        if previous is not None and vs_hash != previous and height >= 2:
            heights.append(height)
        previous = vs_hash
    return heights


def receipt_from_store(store: ChainStore, tx_id: bytes) -> Receipt:
    """A receipt cut from a chain store, up to its tip (what ``GET /v1/txs/{id}`` serves)."""
    loc = store.tx_location(tx_id)
    if loc is None:
        raise ReceiptError(f"transaction {tx_id.hex()} is not committed in this store")
    tip = store.tip
    block, header_block, commit = store.block(loc.height), store.block(tip.height), store.commit(tip.height)
    if block is None or header_block is None or commit is None:
        raise ReceiptError("the store lacks the blocks a receipt needs")
    if is_stub(block.txs[loc.index]):
        raise ReceiptError(f"transaction {tx_id.hex()} was erased by order: its bytes are gone, so no receipt "
                           "can carry it (its inclusion proof still verifies: GET /v1/txs/ID)")
    changes = []
    block_commit = store.commit(loc.height)
    if block_commit is None:
        raise ReceiptError(f"the store lacks the certificate of block {loc.height}")
    certified_block = Certified(block.header, block_commit, validator_set_at(store.state, loc.height))
    tx_path = tuple(inclusion_proof_of([leaf_hash(t) for t in block.txs], loc.index))
    tip_validators = validator_set_at(store.state, tip.height)
    outcome = None
    key = request_key(block.txs[loc.index], tx_id)
    if key is not None:
        record = prove_record(store.state.get, store.state.tree_node, key)
        outcome = Outcome(Certified(header_block.header, commit, tip_validators), record)
    for c in set_change_heights(store.state, tip.height):
        before, before_commit = store.block(c - 1), store.commit(c - 1)
        if before is None or before_commit is None:
            raise ReceiptError(f"the store lacks block {c - 1}")
        changes.append(SetChange(before.header, before_commit, validator_set_at(store.state, c)))
    return Receipt(
        chain_id=store.chain.chain_id, genesis_hash=store.genesis.hash, tx=block.txs[loc.index], tx_id=tx_id,
        height=loc.height, index=loc.index, log_index=loc.log_index, log_size=tip.log_size,
        path=tuple(store.log().inclusion_proof(loc.log_index, tip.log_size)),
        header=header_block.header, commit=commit, validators=tip_validators,
        block=certified_block, tx_path=tx_path,
        set_changes=tuple(changes), reported_result={"status": loc.status, "ref": loc.ref.hex() if loc.ref else None},
        outcome=outcome,
    )


def request_key(raw: bytes, tx_id: bytes) -> bytes | None:
    """The state key of the crossing request a transaction made, if it is a crossing."""
    tx = decode_tx(raw)
    if tx.kind != CROSSING:
        return None
    return k_request(tx.body.identity, tx_id)


class _Bad(Exception):
    pass


def _hex(value: Any, size: int | None = None) -> bytes:
    try:
        raw = bytes.fromhex(value)
    except (TypeError, ValueError):
        raise _Bad(f"expected hex, got {str(value)[:40]!r}") from None
    if size is not None and len(raw) != size:
        raise _Bad(f"expected {size} bytes, got {len(raw)}")
    return raw


def _int(value: Any) -> int:
    if type(value) is not int or value < 0:
        raise _Bad(f"expected a non-negative integer, got {value!r}")
    return value


def receipt_from_json(doc: dict[str, Any]) -> Receipt:
    """Decode a receipt document; :class:`DecodeError`-like problems raise ``ValueError``."""
    try:
        log = doc["log"]
        changes = tuple(
            SetChange(HEADER.decode(_hex(c["header"])), COMMIT.decode(_hex(c["commit"])),
                      ValidatorSet.from_wire(decode(_hex(c["validators"]))))
            for c in doc.get("set_changes") or ()
        )
        chain_id = doc["chain_id"]
        if not isinstance(chain_id, str):
            raise _Bad("chain_id must be text")
        reported = doc.get("reported_result")
        block_doc = doc.get("block")
        if not isinstance(block_doc, dict):
            raise _Bad("the receipt does not carry its block's header (a receipt of format 1? issue it again)")
        out_doc = doc.get("outcome")
        outcome = None
        if isinstance(out_doc, dict):
            outcome = Outcome(Certified.from_json(out_doc), RecordProof.decode(_hex(out_doc["proof"])))
        return Receipt(
            chain_id=chain_id,
            genesis_hash=_hex(doc["genesis_hash"], 32),
            tx=_hex(doc["tx"]),
            tx_id=_hex(doc["tx_id"], 32),
            height=_int(doc["height"]),
            index=_int(doc["index"]),
            log_index=_int(log["index"]),
            log_size=_int(log["size"]),
            path=tuple(_hex(p, 32) for p in log["path"]),
            header=HEADER.decode(_hex(doc["header"])),
            commit=COMMIT.decode(_hex(doc["commit"])),
            validators=ValidatorSet.from_wire(decode(_hex(doc["validators"]))),
            block=Certified.from_json(block_doc),
            tx_path=tuple(_hex(p, 32) for p in block_doc["tx_path"]),
            set_changes=changes,
            reported_result=reported if isinstance(reported, dict) else None,
            outcome=outcome,
        )
    except (_Bad, CustosError, KeyError, TypeError) as exc:
        detail = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ValueError(detail) from None


@dataclass
class ReceiptVerdict:
    failure: AuditFailure | None = None
    anchor: str = "none"  # "genesis", "validators-hash" or "none"
    anchor_detail: str = ""
    checks: list[str] = field(default_factory=list)
    receipt: Receipt | None = None
    power: int = 0
    total_power: int = 0
    outcome: dict[str, Any] | None = None  # a crossing's proven record: status, height

    @property
    def ok(self) -> bool:
        return self.failure is None

    @property
    def anchored(self) -> bool:
        return self.ok and self.anchor != "none"

    def to_json(self) -> dict[str, Any]:
        r = self.receipt
        doc: dict[str, Any] = {
            "ok": self.ok,
            "anchored": self.anchored,
            "trust_anchor": {"kind": self.anchor, "detail": self.anchor_detail},
            "checks": list(self.checks),
            "failure": None if self.failure is None else self.failure.to_json(),
        }
        if r is not None:
            doc.update({
                "tx_id": r.tx_id.hex(), "chain_id": r.chain_id, "height": r.height, "log_index": r.log_index,
                "header": {"height": r.header.height, "hash": r.header.hash.hex(), "log_size": r.header.log_size,
                           "log_root": r.header.log_root.hex(), "validators_hash": r.header.validators_hash.hex()},
                "committed_power": self.power, "total_power": self.total_power,
                "set_changes": len(r.set_changes),
                "reported_result": r.reported_result,
                "index": r.index,
                "proven_outcome": self.outcome,
            })
        return doc


class _Fail(Exception):
    def __init__(self, failure: AuditFailure) -> None:
        self.failure = failure


def verify_receipt(doc: dict[str, Any], *, genesis: Genesis | None = None,
                   validators_hash: bytes | None = None) -> ReceiptVerdict:
    """Check a receipt document (as read by :func:`node.audit.receipts.read_receipt`) against an optional anchor."""
    verdict = ReceiptVerdict()
    try:
        _verify(doc, verdict, genesis, validators_hash)
    except _Fail as fail:
        verdict.failure = fail.failure
    return verdict


def _verify(doc: dict[str, Any], v: ReceiptVerdict, genesis: Genesis | None, validators_hash: bytes | None) -> None:
    def fail(check: str, message: str, *, height: int | None = None, obj: str = "receipt",
             expected: Any = None, found: Any = None) -> _Fail:
        return _Fail(AuditFailure(height, obj, check, message, expected, found))

    def did(check: str) -> None:
        v.checks.append(check)

    did("receipt-encoding")
    try:
        r = receipt_from_json(doc)
    except ValueError as exc:
        raise fail("receipt-encoding", f"the receipt does not decode: {exc}") from None
    v.receipt = r
    h = r.header
    # The header's hash the file names (for people and scripts) is the header it carries.
    did("header-hash")
    if doc.get("header_hash") != h.hash.hex():
        raise fail("header-hash", "the receipt names another header hash than the header it carries",
                   height=h.height, obj="header", expected=h.hash, found=doc.get("header_hash"))
    # The transaction: canonical, the one named, validly signed for this chain.
    did("tx-encoding")
    try:
        tx = decode_tx(r.tx)
    except CustosError as exc:
        raise fail("tx-encoding", str(exc), height=r.height, obj="transaction") from None
    did("tx-id")
    if tx.id != r.tx_id:
        raise fail("tx-id", "the bytes are not the named transaction", height=r.height, obj="transaction",
                   expected=r.tx_id, found=tx.id)
    did("header-chain-id")
    if h.chain_id != r.chain_id:
        raise fail("header-chain-id", "the header is of another chain", height=h.height, obj="header",
                   expected=r.chain_id, found=h.chain_id)
    did("tx-signature")
    bad = tx.bad_signatures(r.chain_id)
    if bad:
        raise fail("tx-signature", f"signature of {bad[0].hex()[:16]} does not verify", height=r.height,
                   obj="transaction")
    # The log: leaf -> root of the header.
    did("log-size")
    if h.log_size != r.log_size:
        raise fail("log-size", "the proof is for another log size than the header's", height=h.height,
                   obj="header", expected=h.log_size, found=r.log_size)
    did("height")
    if not 1 <= r.height <= h.height:
        raise fail("height", "the transaction's block is not at or below the header", height=h.height,
                   obj="receipt", expected=f"1..{h.height}", found=r.height)
    did("inclusion")
    if not verify_inclusion(leaf_hash(r.tx), r.log_index, r.log_size, list(r.path), h.log_root):
        raise fail("inclusion", f"the inclusion path of log entry {r.log_index} does not lead to the header's "
                                "log root", height=h.height, obj="inclusion proof", expected=h.log_root)
    # The header: committed by more than 2/3 of the stake of the set it names.
    did("validators-hash")
    if r.validators.hash != h.validators_hash:
        raise fail("validators-hash", "the receipt's validator set is not the one the header names",
                   height=h.height, obj="validator set", expected=h.validators_hash, found=r.validators.hash)
    _check_commit(r.commit, r.chain_id, r.validators, h, "commit", did, fail)
    v.power = sum(r.validators.power_of(s.validator) for s in r.commit.signatures)
    v.total_power = r.validators.total_power
    # The block: the transaction at ``index`` of the certified header at ``height``.
    block = r.block
    assert block is not None  # receipt_from_json requires it
    b = block.header
    did("block-height")
    if b.height != r.height or b.chain_id != r.chain_id or b.height > h.height:
        raise fail("block-height", "the block header is not at the receipt's height", height=r.height,
                   obj="block header", expected=r.height, found=b.height)
    did("block-position")
    if not (r.index < b.tx_count and verify_inclusion(leaf_hash(r.tx), r.index, b.tx_count, list(r.tx_path),
                                                      b.tx_root)):
        raise fail("block-position", f"the transaction is not at position {r.index} of block {r.height}",
                   height=r.height, obj="block header", expected=b.tx_root)
    did("block-log-index")
    if b.log_size - b.tx_count + r.index != r.log_index:
        raise fail("block-log-index", "the block's place in the log does not put the transaction at its log index",
                   height=r.height, obj="block header", expected=b.log_size - b.tx_count + r.index, found=r.log_index)
    if block.validators.hash != b.validators_hash:
        raise fail("validators-hash", "the block's validator set is not the one its header names", height=b.height,
                   obj="block validator set", expected=b.validators_hash, found=block.validators.hash)
    _check_commit(block.commit, r.chain_id, block.validators, b, "block commit", did, fail)
    certified = [(b, block.validators), (h, r.validators)]
    # The outcome of a crossing: its record, proven at a certified header after the block.
    wanted = request_key(r.tx, r.tx_id)
    if wanted is not None:
        did("outcome")
        out = r.outcome
        if out is None:
            raise fail("outcome", "a crossing's receipt carries its proven outcome", height=r.height, obj="outcome")
        oh = out.at.header
        if oh.chain_id != r.chain_id or oh.height < r.height or out.at.validators.hash != oh.validators_hash:
            raise fail("outcome", "the outcome is not proven at a header of this chain at or after the block",
                       height=oh.height, obj="outcome")
        _check_commit(out.at.commit, r.chain_id, out.at.validators, oh, "outcome commit", did, fail)
        if out.proof.key != wanted or out.proof.value is None:
            raise fail("outcome", "the outcome proof is not of this crossing's request record", height=oh.height,
                       obj="outcome")
        try:
            out.proof.check(oh.state_root)
        except CustosError as exc:
            raise fail("outcome", str(exc), height=oh.height, obj="outcome") from None
        record = REQUEST.decode(out.proof.value)
        v.outcome = {"status": record.status, "height": oh.height, "closed_height": record.closed_height}
        certified.append((oh, out.at.validators))
    # The anchor.
    if genesis is not None:
        v.anchor = "genesis"
        did("anchor-genesis")
        if genesis.hash != r.genesis_hash or genesis.chain_id != r.chain_id:
            raise fail("anchor-genesis", "the receipt is of another chain than the given genesis", height=0,
                       obj="genesis", expected=genesis.hash, found=r.genesis_hash)
        trusted = genesis.validator_set()
        sets = [(1, trusted)]  # (first height, set in force from there)
        last = 0
        for change in r.set_changes:
            ch = change.header
            where = f"set change at height {ch.height}"
            did("set-change")
            if ch.chain_id != r.chain_id or not last < ch.height < h.height:
                raise fail("set-change", "set changes must be of this chain, in height order, below the header",
                           height=ch.height, obj=where)
            if ch.validators_hash != trusted.hash:
                raise fail("set-change", "the header is not signed by the set trusted so far", height=ch.height,
                           obj=where, expected=trusted.hash, found=ch.validators_hash)
            _check_commit(change.commit, r.chain_id, trusted, ch, where, did, fail)
            if ch.next_validators_hash != change.validators.hash:
                raise fail("set-change", "the header does not name this next validator set", height=ch.height,
                           obj=where, expected=ch.next_validators_hash, found=change.validators.hash)
            trusted, last = change.validators, ch.height
            sets.append((ch.height + 1, trusted))
        did("anchor-validators")
        for header, signed_by in certified:
            expected = [vs for start, vs in sets if start <= header.height][-1]
            if expected.hash != signed_by.hash:
                raise fail("anchor-validators", "the genesis set (after the receipt's set changes) is not the set "
                                                f"that signed header {header.height}", height=header.height,
                           obj="validator set", expected=expected.hash, found=signed_by.hash)
        v.anchor_detail = (f"genesis {genesis.hash.hex()} of chain {genesis.chain_id}"
                           f"{f', through {len(r.set_changes)} validator-set change(s)' if r.set_changes else ''}")
    elif validators_hash is not None:
        v.anchor = "validators-hash"
        did("anchor-validators")
        for header, signed_by in certified:
            if signed_by.hash != validators_hash:
                raise fail("anchor-validators", f"the set that signed header {header.height} is not the trusted one"
                           " (a receipt spanning a validator-set change is anchored with --genesis)",
                           height=header.height, obj="validator set", expected=validators_hash, found=signed_by.hash)
        v.anchor_detail = f"validator-set hash {validators_hash.hex()} given by the verifier"
    else:
        v.anchor_detail = (f"none: the receipt is consistent, but the validator set {r.validators.hash.hex()} came "
                           "with it; pin it with --genesis or --validators-hash")


def _check_commit(commit: Commit, chain_id: str, validators: ValidatorSet, header: Header, obj: str, did, fail) -> None:
    did("commit-quorum")
    try:
        commit.check(chain_id, validators, height=header.height, block=header_hash(header))
    except ChainError as exc:
        failure = AuditFailure.from_error(exc, height=header.height, obj=obj)
        if obj != "commit":
            failure = replace(failure, obj=f"{obj}: {failure.obj}")
        raise _Fail(failure) from None
