"""Who reads a child's records, for what, and the proof that it was written down.

Shared by the node (which checks and records) and the clients (which sign and verify):

* :mod:`node.access.signature`: the signed-request scheme (what a signature binds);
* :mod:`node.access.purpose`: the purposes a read may state, and who may state which;
* :mod:`node.access.entry`: one access-log entry, its canonical bytes and its leaf;
* :mod:`node.access.log`: the node's tamper-evident access log (its own LevelDB);
* :mod:`node.access.checkpoints`: committing the log's tree head to the chain;
* :mod:`node.access.verify`: checking an access-log answer against the chain (clients).

Design and threat model: ``docs/ACCESS-LOG.md`` and ``docs/TRANSPORT.md``.
"""
