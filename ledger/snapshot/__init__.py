"""State-sync snapshots: their format (format.py), making one (make.py), checking one (verify.py).

See docs/adr/0007-state-sync.md.
"""
