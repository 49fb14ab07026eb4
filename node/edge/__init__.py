"""What one caller can cost a node at its listeners, bounded.

* :mod:`node.edge.connections`: open connections capped below the open-file limit, the oldest
  idle one evicted for a newcomer, idle and header timeouts, parser errors answered as problem
  documents and logged without a traceback.
* :mod:`node.edge.bodies`: request bodies read with a per-route size limit, a deadline, and a
  node-wide budget of bytes being received at once.
* :mod:`node.edge.errorlog`: error logging that cannot be turned into a log flood.
* :mod:`node.edge.fdbudget`: how the process's file descriptors are shared between the store,
  the consensus log, the peers and the API.
"""
