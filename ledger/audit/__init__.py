"""Auditing a Custos chain without trusting any node.

* :mod:`ledger.audit.auditor`: the audit itself (:class:`Auditor`), from genesis or a checkpoint;
* :mod:`ledger.audit.source`: what blocks come from (a node's data directory and API, which are
  I/O, are read by :mod:`node.audit.datadir` and ``node/cli/audit.py``);
* :mod:`ledger.audit.signatures`: the parallel signature pass ahead of the serial replay;
* :mod:`ledger.audit.replay`: the auditor's own state, log and indexes;
* :mod:`ledger.audit.records`: checks of what only a node's store holds;
* :mod:`ledger.audit.checkpoint`: checkpoints for incremental audits (their files:
  :mod:`node.audit.checkpoints`);
* :mod:`ledger.audit.receipt`: one transaction's inclusion, checkable offline;
* :mod:`ledger.audit.findings` and :mod:`ledger.audit.text`: reports, for scripts and people.
"""

from ledger.audit.auditor import Auditor, CheckpointAnchor
from ledger.audit.findings import AuditFailure, AuditReport, NotChecked
from ledger.audit.source import BlockSource, SourceError, StoreSource

__all__ = [
    "AuditFailure",
    "AuditReport",
    "Auditor",
    "BlockSource",
    "CheckpointAnchor",
    "NotChecked",
    "SourceError",
    "StoreSource",
]
