"""Test beds that put real nodes in harder places than 127.0.0.1: a wide-area network with
latency, jitter, loss and partitions (``wanproxy``, ``wan``). Used by scripts and slow tests,
never by a production node."""
