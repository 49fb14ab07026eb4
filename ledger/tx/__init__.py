"""Transactions: the signed envelope (``envelope``) and the body of each kind (``bodies``)."""

from ledger.tx.bodies import *  # noqa: F403  (the kinds and body types are the vocabulary)
from ledger.tx.envelope import (  # noqa: F401
    MAX_TX_BYTES,
    Sig,
    Transaction,
    add_signatures,
    decode_tx,
    make_tx,
)
