"""The state the chain's transactions build: typed records over an ordered key-value view."""
