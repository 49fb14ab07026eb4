"""The container, compose and systemd files under configs/deploy, checked as far as this machine
allows: Docker cannot run here, so the image is not built; the compose file is parsed, the
ceremony script it relies on is run, and the unit file goes through ``systemd-analyze verify``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from node.config import load_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "configs" / "deploy"
CUSTOS = Path(sys.executable).with_name("custos")


def test_compose_runs_four_validators_from_the_ceremony_script(tmp_path):
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert sorted(services) == ["val-0", "val-1", "val-2", "val-3"]
    assert (DEPLOY / compose["x-node"]["build"]["context"] / compose["x-node"]["build"]["dockerfile"]).exists()
    network = tmp_path / "network"
    proc = subprocess.run(["bash", str(DEPLOY / "make-compose-network.sh"), str(network)], capture_output=True,
                          text=True, timeout=240, env={**os.environ, "CUSTOS": str(CUSTOS), "KDF": "--fast-kdf"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    hashes = set(re.findall(r"genesis hash ([0-9a-f]{64})", proc.stdout))
    assert len(hashes) == 1  # every node finalized the same genesis
    for name, service in services.items():
        host_dir = service["volumes"][0].split(":")[0].replace("./network", str(network))
        config = load_config(Path(host_dir) / "node.toml")
        assert config.node.name == name and config.node.passphrase_file is None  # the secret comes from the env
        assert sorted(p.address for p in config.p2p.peers) == [f"val-{i}:8800" for i in range(4) if f"val-{i}" != name]
        assert service["environment"]["CUSTOS_PASSPHRASE_FILE"] == "/run/secrets/passphrase"
    assert (network / "passphrase").exists()


def test_dockerfile_copies_what_exists_and_serves_the_ports_the_configs_use():
    text = (DEPLOY / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (?!--from)(.+?) \S+$", text, re.M):
        for item in source.split():
            assert (ROOT / item).exists(), item
    assert "EXPOSE 8700 8800 9700" in text and "/node/node.toml" in text


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_unit_verifies(tmp_path):
    unit = tmp_path / "custos-node.service"
    unit.write_text((DEPLOY / "custos-node.service").read_text().replace("/opt/custos/bin/custos", str(CUSTOS)))
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
