"""TLS on the client API, through a real node process (docs/TRANSPORT.md).

A node whose config names a certificate and key serves its API over TLS only: a client that
trusts the devnet's CA reads over HTTPS (urllib and the aiohttp client every command uses, by IP
address and by ``localhost``); a plain-HTTP request on the same port is never answered; a client
that does not trust the CA refuses the node; and nothing in the node's files is readable by
another user of the machine.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import stat
import urllib.error
import urllib.request

import pytest

from node.client.http import NodeClient
from node.client.tls import urlopen
from node.config import ConfigError, load_config
from tests.node.clientkit import World, cli, signed_get
from tests.node.netkit import Net, run


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    net = Net(tmp_path_factory.mktemp("tls"), validators=1, heartbeat_ms=300, tls=True)
    net.start()
    net.wait_height(2)
    yield net
    net.stop()


@pytest.fixture(scope="module")
def world(net, tmp_path_factory):
    return World(net, tmp_path_factory.mktemp("tls-world"))  # outside the devnet: keys of their own


def _port(net: Net) -> int:
    return int(net.nodes["val-0"].api.rpartition(":")[2])


def test_node_serves_https_to_a_client_that_trusts_the_devnet_ca(net):
    url = net.url()
    assert url.startswith("https://127.0.0.1:")
    with urlopen(url + "/v1/status", timeout=5) as r:
        assert r.status == 200 and json.loads(r.read())["height"] >= 2
    with urlopen(f"https://localhost:{_port(net)}/healthz", timeout=5) as r:  # the other name it holds
        assert r.status == 200

    async def status() -> dict:
        async with NodeClient([url], timeout_s=5) as client:
            return await client.status()

    assert run(status())["height"] >= 2


def test_signed_read_over_tls(net, world):
    status, doc, _ = signed_get(net.url(), "/v1/access/whoami", world.authority, net.chain_id)
    assert status == 200 and doc["role"] == "enrolment-authority"


def test_rejects_plain_http_on_the_api_port(net):
    with (pytest.raises((OSError, http.client.HTTPException)) as caught,
          urllib.request.urlopen(f"http://127.0.0.1:{_port(net)}/v1/status", timeout=5) as r):
        r.read()
    assert not isinstance(caught.value, urllib.error.HTTPError)  # no HTTP answer at all
    assert net.height() >= 2  # and the node goes on serving TLS


def test_rejects_node_whose_certificate_the_client_does_not_trust(net):
    stranger = ssl.create_default_context()  # the system's CAs only
    with pytest.raises(urllib.error.URLError) as caught:
        urllib.request.urlopen(net.url() + "/v1/status", timeout=5, context=stranger)
    assert isinstance(caught.value.reason, ssl.SSLCertVerificationError)


def test_node_files_are_private(net):
    """Data directory 0700; keys, stores, logs and config 0600; only certificates are public."""
    node_dir = net.dir / "val-0"
    public = {"cert.pem"}
    checked = 0
    for root, dirs, files in os.walk(node_dir):
        for d in dirs:
            assert stat.S_IMODE(os.stat(os.path.join(root, d)).st_mode) == 0o700, os.path.join(root, d)
        for f in files:
            path = os.path.join(root, f)
            mode = stat.S_IMODE(os.stat(path).st_mode)
            if f in public:
                assert mode & 0o022 == 0, path
            else:
                assert mode == 0o600, f"{path} has mode {mode:o}"
            checked += 1
    assert stat.S_IMODE(os.stat(node_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(net.dir / "passphrase").st_mode) == 0o600
    assert checked > 10  # LevelDB's files, the consensus log, the access log, keys were all seen


def test_rejects_config_naming_a_certificate_without_its_key(tmp_path):
    config = tmp_path / "node.toml"
    config.write_text('[node]\nname = "n"\ndata_dir = "d"\ngenesis = "g.toml"\nkey_file = "k"\n'
                      '[api]\ntls_cert = "cert.pem"\n')
    with pytest.raises(ConfigError, match="tls_cert and tls_key"):
        load_config(config)


def test_rejects_node_start_with_an_unusable_tls_key(tmp_path):
    from node import devnet

    devnet.create(tmp_path / "net", 1, tls=True)
    config = tmp_path / "net" / "val-0" / "node.toml"
    config.write_text(config.read_text().replace('tls_key = "tls/key.pem"', 'tls_key = "tls/missing.pem"'))
    proc = cli("node", "start", "--config", str(config), timeout_s=30)
    assert proc.returncode == 2
    assert "cannot use the API's TLS certificate" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_terminal_keeps_trusting_the_ca_it_was_set_up_with(net, world):
    """``terminal init --devnet DIR`` records the devnet's CA in the terminal's config, so its
    later commands, which name no node, still verify the nodes' certificates."""
    terminal_dir = world.dir / "terminal"
    cli("terminal", "init", "--dir", str(terminal_dir), "--key", str(world.terminal_file), "--post", world.post,
        "--card-key", str(world.card_key_file), "--devnet", str(net.dir), check=True)
    config = json.loads((terminal_dir / "terminal.json").read_text())
    assert config["nodes"] == [net.url()] and config["ca"] == [str((net.dir / "tls" / "ca.pem").resolve())]
    proc = cli("terminal", "status", "00" * 32, "--dir", str(terminal_dir))
    assert proc.returncode == 0 and "not committed (unknown)" in proc.stdout, proc.stderr  # reached over TLS
