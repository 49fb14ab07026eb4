"""Data minimisation: the keyed tags and salted hashes that stand on the chain for personal data.

See docs/PRIVACY.md for every field on the chain and off it, who may read it and for how long.
"""
