"""The auditor's I/O: a node's data directory as a source, checkpoint and receipt files, the
worker processes and the progress bar. The audit itself (:mod:`ledger.audit`) reads no file,
clock or process of its own; the command line (:mod:`node.cli.audit`) puts the two together.
"""
