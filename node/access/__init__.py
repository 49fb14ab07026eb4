"""Who reads a child's records, and for what: shared by the node (which checks) and the
clients (which sign).

* :mod:`node.access.signature`: the signed-request scheme (what a signature binds);
* :mod:`node.access.purpose`: the purposes a read may state, and who may state which.

Design: ``docs/TRANSPORT.md``.
"""
