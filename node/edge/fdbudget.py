"""Sharing the process's file descriptors so that callers can never take the node's own.

A node needs descriptors for its store (LevelDB keeps table files open: up to its
``max_open_files``), the request index (a second LevelDB), the consensus log, its own log,
threads' pipes and the listening sockets, then one per peer connection and one per API
connection. If callers could take them all, the next consensus log segment or table file
would fail to open ("Too many open files") and the node would stop.

:func:`plan` shares the soft ``RLIMIT_NOFILE`` (raised to the hard limit first, as far as the
system allows): a fixed reserve for the node's own files and the request index's table
cache, an eighth of the rest for the chain store's table cache (within bounds), the peers'
bound (a quarter of what is left, at most as configured), and at most half of what remains
for API connections; the other half stays free as headroom. The API cap is never above what
the operator configured.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass

from ledger.storage.kv import DEFAULT_MAX_OPEN_FILES

#: descriptors for everything but tables and connections: logs, WAL, pipes, listeners, threads
RESERVED = 96
#: LevelDB stores besides the chain's (the request index), each at the default table cache
OTHER_STORES = 1
MIN_TABLE_FILES, MAX_TABLE_FILES = 32, 1000
MIN_API_CONNECTIONS = 16


@dataclass(frozen=True, slots=True)
class FdPlan:
    limit: int
    #: LevelDB ``max_open_files`` for the chain store (other stores keep the default)
    store_files: int
    #: peer connections (authenticated and in handshake) the p2p listener may hold
    p2p_connections: int
    #: API connections open at once
    api_connections: int

    def describe(self) -> str:
        return (f"open-file limit {self.limit}: store tables {self.store_files}, peers {self.p2p_connections}, "
                f"API connections {self.api_connections}")


def raise_soft_limit() -> int:
    """Raise the soft open-file limit to the hard one (if allowed); the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65_536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def plan(limit: int, *, api_wanted: int, p2p_wanted: int) -> FdPlan:
    """Share ``limit`` descriptors; raises ValueError if it cannot even hold the node itself."""
    spare = limit - RESERVED - OTHER_STORES * DEFAULT_MAX_OPEN_FILES
    if spare < MIN_TABLE_FILES + 8 + 2 * MIN_API_CONNECTIONS:
        raise ValueError(f"an open-file limit of {limit} is too low for a node (raise `ulimit -n`)")
    tables = max(MIN_TABLE_FILES, min(MAX_TABLE_FILES, spare // 8))
    spare -= tables
    peers = max(8, min(p2p_wanted, spare // 4))
    spare -= peers
    api = max(MIN_API_CONNECTIONS, min(api_wanted, spare // 2))
    return FdPlan(limit, tables, peers, api)
