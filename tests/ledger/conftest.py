"""Fixtures for the ledger tests; the chain kit itself lives in ``chainkit.py``."""

from __future__ import annotations

import pytest
from chainkit import Chain


@pytest.fixture
def chain() -> Chain:
    """A fresh in-memory chain: council of three (two must sign), one validator."""
    return Chain()


@pytest.fixture
def border(chain: Chain):
    """An enrolment authority and a terminal at a registered border post."""
    return chain.open_border()


@pytest.fixture
def authority(border):
    return border[0]


@pytest.fixture
def terminal(border):
    return border[1]
