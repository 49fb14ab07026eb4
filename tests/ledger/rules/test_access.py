"""Access-log checkpoints and the oversight role: nodes commit their logs' roots; the chain
refuses a log that was rewritten instead of extended."""

from __future__ import annotations

import hashlib

from chainkit import Chain

from ledger.crypto.keys import SigningKey
from ledger.errors import AlreadyExists, InvalidValue, MissingSignature, RevokedKey, UnexpectedSignature, UnknownKey
from ledger.merkle import MemoryNodeStore, MerkleLog, leaf_hash
from ledger.state.records import ACCESS_CHECKPOINT_RECORD, k_access_checkpoint, load
from ledger.tx import bodies as k
from ledger.tx.envelope import make_tx


class Log:
    """An access log as a node keeps it: leaves appended, tree heads and proofs on demand."""

    def __init__(self) -> None:
        self.nodes = MemoryNodeStore()
        self.log = MerkleLog(self.nodes.get, 0)

    def add(self, n: int, tag: bytes = b"read") -> None:
        for _ in range(n):
            self.log.append(leaf_hash(tag + self.log.size.to_bytes(8, "big")))
        self.nodes.put_many(self.log.take_pending())

    def head(self) -> tuple[int, bytes]:
        return self.log.size, self.log.root()


def checkpoint(chain: Chain, node: SigningKey, size: int, root: bytes, proof=(), signers=None):
    body = k.AccessCheckpoint(node.public, size, root, tuple(proof))
    return make_tx(k.ACCESS_CHECKPOINT, body, 7 + size, signers or [node], chain.chain_id)


def record(chain: Chain, node: SigningKey):
    return load(chain.store.state, k_access_checkpoint(node.public), ACCESS_CHECKPOINT_RECORD)


def a_validator(chain: Chain) -> SigningKey:
    return next(iter(chain.validator_keys.values()))


def test_council_registers_an_oversight_body(chain: Chain):
    dpa = SigningKey.generate()
    chain.commit(chain.gov(k.GOV_REGISTER_OVERSIGHT, k.RegisterOversight(dpa.public, "data protection authority")))
    role = chain.role(dpa.public)
    assert (role.role, role.label) == (k.ROLE_OVERSIGHT, "data protection authority")
    chain.assert_rejected(chain.gov(k.GOV_REGISTER_AUDITOR, k.RegisterAuditor(dpa.public, "x")), AlreadyExists)


def test_node_commits_its_log_and_extends_it(chain: Chain):
    node, log = a_validator(chain), Log()
    log.add(3)
    size, root = log.head()
    first = checkpoint(chain, node, size, root)
    chain.commit(first)
    saved = record(chain, node)
    assert (saved.size, saved.root, saved.height, saved.tx) == (3, root, chain.height, first.id)
    log.add(5)
    size2, root2 = log.head()
    chain.commit(checkpoint(chain, node, size2, root2, log.log.consistency_proof(3, 8)))
    assert (record(chain, node).size, record(chain, node).root) == (8, root2)


def test_rejects_a_rewritten_log(chain: Chain):
    """The attack: an operator edits an entry the chain has a checkpoint of, rebuilds the tree and
    commits the new root. The consistency proof cannot exist, so the chain refuses it."""
    node, honest = a_validator(chain), Log()
    honest.add(4)
    chain.commit(checkpoint(chain, node, *honest.head()))
    forged = Log()
    forged.add(1)
    forged.add(1, tag=b"edited")  # entry 1 changed
    forged.add(2)
    forged.add(2)  # and two new entries, so the size grows as the rule wants
    size, root = forged.head()
    chain.assert_rejected(checkpoint(chain, node, size, root, forged.log.consistency_proof(4, size)), InvalidValue)
    honest.add(2)  # nor can the honest log's proof carry the forged root
    chain.assert_rejected(checkpoint(chain, node, size, root, honest.log.consistency_proof(4, size)), InvalidValue)
    assert record(chain, node).size == 4


def test_rejects_a_log_that_does_not_grow(chain: Chain):
    node, log = a_validator(chain), Log()
    log.add(2)
    chain.commit(checkpoint(chain, node, *log.head()))
    chain.assert_rejected(checkpoint(chain, node, *log.head(), [hashlib.sha256(b"x").digest()]), InvalidValue)


def test_rejects_a_checkpoint_of_a_key_that_is_no_node(chain: Chain):
    stranger, log = SigningKey.generate(), Log()
    log.add(1)
    chain.assert_rejected(checkpoint(chain, stranger, *log.head()), UnknownKey)


def test_rejects_a_checkpoint_signed_by_another_key(chain: Chain):
    node, log = a_validator(chain), Log()
    log.add(1)
    chain.assert_rejected(checkpoint(chain, node, *log.head(), signers=[SigningKey.generate()]), MissingSignature)
    chain.assert_rejected(checkpoint(chain, node, *log.head(), signers=[node, chain.council[0]]),
                          UnexpectedSignature)


def test_rejects_a_checkpoint_of_a_revoked_node(chain: Chain):
    validators = [a_validator(chain), chain.add_validator()]
    chain.commit(chain.set_validator(validators[1].public, 100))
    log = Log()
    log.add(1)
    chain.commit(chain.revoke(validators[1].public))
    chain.assert_rejected(checkpoint(chain, validators[1], *log.head()), RevokedKey)
