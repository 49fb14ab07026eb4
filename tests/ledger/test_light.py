"""Following headers from genesis: set changes are certified by the set trusted before them, and
any header that does not extend the trusted chain is refused."""

from __future__ import annotations

import dataclasses

import pytest
from chainkit import Chain

from ledger.block import Commit, Header
from ledger.crypto.keys import SigningKey
from ledger.light import LightError, Step, Trusted, advance
from ledger.rules.validators import validator_set_at
from ledger.validators import Validator, ValidatorSet


def steps(chain: Chain, first: int, last: int) -> list[Step]:
    out = []
    for h in range(first, last + 1):
        header, commit = chain.store.header(h), chain.store.commit(h)
        assert header is not None and commit is not None
        nxt = (validator_set_at(chain.store.state, h + 1)
               if header.next_validators_hash != header.validators_hash else None)
        out.append(Step(header, commit, nxt))
    return out


@pytest.fixture
def changing():
    """A chain whose validator set grows from one to two validators at some height."""
    chain = Chain()
    chain.advance(1000)
    new = chain.add_validator()
    chain.commit(chain.set_validator(new.public, 1_000))
    for _ in range(4):
        chain.advance(1000)
    return chain


def test_follows_a_set_change_from_genesis_to_the_tip(changing):
    chain = changing
    start = Trusted.from_genesis(chain.genesis)
    tip = chain.store.height
    trusted, header = advance(start, steps(chain, 1, tip), target=tip)
    assert header is not None and header.hash == chain.store.header(tip).hash
    assert trusted.height == tip and len(trusted.next_validators) == 2
    # page by page arrives at the same place
    mid, _ = advance(start, steps(chain, 1, 3))
    again, header2 = advance(mid, steps(chain, 4, tip), target=tip)
    assert again == trusted and header2 == header


def test_rejects_a_made_up_validator_set(changing):
    chain = changing
    start = Trusted.from_genesis(chain.genesis)
    forger = SigningKey.generate()
    fake_set = ValidatorSet([Validator(forger.public, 10)])
    real = steps(chain, 1, chain.store.height)
    # a header naming the forger's set as next, at a height where nothing changed
    h1 = dataclasses.replace(real[0].header, next_validators_hash=fake_set.hash)
    with pytest.raises(LightError, match="header 1"):
        advance(start, [Step(h1, real[0].commit, fake_set), *real[1:]])
    # a header signed by the forger's set directly
    h2 = dataclasses.replace(real[1].header, validators_hash=fake_set.hash)
    with pytest.raises(LightError, match="validator set"):
        advance(start, [real[0], Step(h2, real[1].commit)])


def test_rejects_broken_links_wrong_heights_and_missing_certificates(changing):
    chain = changing
    start = Trusted.from_genesis(chain.genesis)
    real = steps(chain, 1, chain.store.height)
    with pytest.raises(LightError, match="expected height"):
        advance(start, real[1:])
    edited: Header = dataclasses.replace(real[1].header, time=real[1].header.time + 1)
    with pytest.raises(LightError, match=r"does not link|header 2"):
        advance(start, [real[0], Step(edited, real[1].commit), *real[2:]])
    with pytest.raises(LightError, match="certificate"):
        advance(start, [*real[:-1], Step(real[-1].header, None)])
    thin = real[-1].commit
    other = Commit(thin.height, thin.round, thin.block, thin.signatures[:0] or ())
    with pytest.raises(LightError, match="2/3"):
        advance(start, [*real[:-1], Step(real[-1].header, other)])


def test_rejects_a_certificate_without_two_thirds_of_the_stake(changing):
    chain = changing
    start = Trusted.from_genesis(chain.genesis)
    real = steps(chain, 1, chain.store.height)
    last = real[-1]
    assert len(last.commit.signatures) == 2
    half = dataclasses.replace(last.commit, signatures=last.commit.signatures[:1])
    with pytest.raises(LightError, match="2/3"):
        advance(start, [*real[:-1], Step(last.header, half)])
