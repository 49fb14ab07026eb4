"""Chains for the audit tests, built in memory with the chain kit.

``multi``: four validators of equal stake; a fifth joins with double stake, one leaves, one is
slashed and jailed for a double vote. Certificates are checked against the set and stakes in
force at each height, so each change matters to them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from chainkit import SECOND, Chain, Child, Terminal

from ledger.crypto.keys import SigningKey
from ledger.storage.kv import MemoryKV
from node.audit.pool import start_pool


def copy_kv(kv) -> MemoryKV:
    out = MemoryKV()
    out.write(dict(kv.iterate(b"", b"\xff" * 64)))
    return out


@dataclass
class MultiChain:
    chain: Chain
    validators: list[SigningKey]  # the four genesis validators, by key order
    newcomer: SigningKey
    heights: dict[str, int] = field(default_factory=dict)
    terminal: Terminal | None = None
    adult: Child | None = None


def build_multi() -> MultiChain:
    c = Chain(validators=4)
    validators = sorted(c.validator_keys.values(), key=lambda k: k.public)
    m = MultiChain(c, validators, c.add_validator())
    authority, m.terminal = c.open_border()
    m.adult = c.enrol_child(authority, minor=False)
    c.commit(c.set_validator(m.newcomer.public, 2_000))
    m.heights["newcomer_bonded"] = c.height
    m.heights["newcomer_in_force"] = c.height + c.genesis.params.validator_delay
    c.advance(SECOND)
    c.advance(SECOND)
    c.commit(c.set_validator(validators[0].public, 0))
    m.heights["leaver_unbonded"] = c.height
    m.heights["leaver_out"] = c.height + c.genesis.params.validator_delay
    c.commit(c.crossing(m.terminal, m.adult))
    c.commit(evidence=[c.double_vote(validators[1], 3)])
    m.heights["slashed"] = c.height
    m.heights["jailed_out"] = c.height + c.genesis.params.validator_delay
    c.advance(SECOND)
    c.advance(SECOND)
    c.commit(*[c.crossing(m.terminal, m.adult) for _ in range(6)])
    c.advance(SECOND)
    return m


@pytest.fixture(scope="session")
def multi() -> MultiChain:
    return build_multi()


@pytest.fixture(scope="session")
def pool():
    """One worker process for the parallel runs (this process replays: two processes in all)."""
    p = start_pool(1)
    yield p
    p.shutdown(wait=True, cancel_futures=True)
