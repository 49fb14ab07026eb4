"""The node's configuration file: the commented example loads, and test-only behaviour has no
switch in it (a production node cannot be configured to misbehave)."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.config import ConfigError, load_config

EXAMPLE = Path(__file__).resolve().parents[2] / "configs" / "node.example.toml"


def test_the_example_config_loads():
    assert load_config(EXAMPLE).consensus.heartbeat_ms > 0


def test_rejects_a_switch_that_makes_a_validator_equivocate(tmp_path):
    text = EXAMPLE.read_text().replace("[consensus]\n", "[consensus]\nbyzantine_equivocate = true\n", 1)
    (tmp_path / "node.toml").write_text(text)
    with pytest.raises(ConfigError, match="byzantine_equivocate"):
        load_config(tmp_path / "node.toml")


@pytest.mark.parametrize("value", ["-1", "5000", '"soon"'])
def test_refuses_a_gossip_interval_out_of_range_and_names_it(tmp_path, value):
    assert load_config(EXAMPLE).consensus.tx_gossip_ms == 25
    text = EXAMPLE.read_text().replace("tx_gossip_ms = 25 ", f"tx_gossip_ms = {value} ", 1)
    assert f"tx_gossip_ms = {value} " in text
    (tmp_path / "node.toml").write_text(text)
    with pytest.raises(ConfigError, match="tx_gossip_ms"):
        load_config(tmp_path / "node.toml")
