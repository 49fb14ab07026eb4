"""State sync: a new node joins from a recent snapshot its peers offer instead of replaying every
block (join.py, start.py), and every node offers snapshots to those that join (server.py); the
messages between them are in messages.py. See docs/adr/0007-state-sync.md.
"""
