"""The network most node tests need: one validator for the module, and a world of keys on it.

A module that needs another network (more validators, an observer, other settings) defines
its own ``net`` fixture, which takes the place of this one there; so does one that needs more
in its ``world``.
"""

from __future__ import annotations

import pytest

from tests.node.clientkit import World
from tests.node.netkit import Net


@pytest.fixture(scope="module")
def net(tmp_path_factory, request):
    """One validator (300 ms heartbeat), running for the whole module."""
    net = Net(tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1]), validators=1, heartbeat_ms=300)
    net.start()
    yield net
    net.stop()


@pytest.fixture(scope="module")
def world(net, tmp_path_factory):
    """A council-registered enrolment authority, post and terminal on ``net``."""
    return World(net, tmp_path_factory.mktemp("keys"))
