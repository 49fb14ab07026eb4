"""What an operator sees of running nodes: OpenMetrics on a separate listener that a strict
parser accepts, readiness that fails when the network cannot commit, one JSON log line per
committed block, the version, and the OpenAPI description.

Real node processes on 127.0.0.1; every wait bounded.
"""

from __future__ import annotations

import json
import os
import signal
import urllib.error
import urllib.request

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from node.api.access_log import AccessLogRoutes
from node.api.events import EventStreams
from node.api.identify import Identify
from node.api.openapi import openapi_document
from node.api.proofs import Proofs
from node.api.reads import Reads
from node.api.server import Api
from node.client.http import NodeClient
from node.ops.routes import OpsRoutes
from node.version import version
from tests.node.clientkit import cli
from tests.node.netkit import Net, adult_traveller, run

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    net = Net(tmp_path_factory.mktemp("ops"), validators=4, heartbeat_ms=300,
              extra_consensus={"timeout_propose_ms": 800, "rebroadcast_ms": 300})
    net.start()
    # ready once a block newer than the readiness bound commits (the genesis may be older): every
    # test starts from there, whichever of them runs first
    for node in net.nodes.values():
        net.wait_until(f"{node.name} ready", lambda n=node: fetch(n.url + "/readyz")[0] == 200, timeout_s=30)
    yield net
    for proc in net.procs.values():  # a test that failed half-way may leave one paused
        os.kill(proc.pid, signal.SIGCONT)
    net.stop()


def fetch(url: str, accept: str = "") -> tuple[int, str, str]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()


def scrape(net: Net, name: str) -> dict:
    status, ctype, body = fetch(f"http://{net.nodes[name].metrics}/metrics", OPENMETRICS)
    assert status == 200 and ctype.startswith("application/openmetrics-text")
    return {f.name: f for f in text_string_to_metric_families(body)}  # the strict OpenMetrics parser


def test_metrics_listener_serves_openmetrics_that_a_strict_parser_accepts(net):
    traveller = adult_traveller(net, "P-OPS")

    async def go():
        async with NodeClient(net.url("val-0")) as c:
            for tx in traveller.setup + [traveller.crossing(net.txs) for _ in range(5)]:
                assert (await c.submit(tx.raw, wait=True))["status"] == "committed"

    run(go())
    families = scrape(net, "val-0")
    for name in ("custos_block_interval_seconds", "custos_submit_to_commit_seconds",
                 "custos_consensus_round_seconds"):
        assert families[name].type == "histogram", name
        count = next(s.value for s in families[name].samples if s.name == name + "_count")
        assert count > 0, f"{name} observed nothing"
    for name in ("custos_height", "custos_peers", "custos_mempool_txs", "custos_last_block_time_seconds"):
        assert families[name].type == "gauge", name
    assert families["custos_peers"].samples[0].value == 3
    assert 0 <= families["custos_tree_blocks_held"].samples[0].value <= 64  # written every 64 blocks
    assert families["custos_blocks_committed"].type == "counter"
    for family in families.values():
        assert family.documentation, f"{family.name} has no HELP"
    submitted = next(s.value for s in families["custos_submit_to_commit_seconds"].samples
                     if s.name.endswith("_count"))
    assert submitted >= 9  # the four set-up transactions and five crossings went through val-0's API


def test_metrics_in_the_classic_text_format_carry_help_and_type(net):
    status, ctype, body = fetch(f"http://{net.nodes['val-1'].metrics}/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    names = {line.split()[2] for line in body.splitlines() if line.startswith("# TYPE")}
    helped = {line.split()[2] for line in body.splitlines() if line.startswith("# HELP")}
    assert names and names == helped


def test_metrics_listener_serves_nothing_of_the_api(net):
    base = f"http://{net.nodes['val-0'].metrics}"
    status, ctype, body = fetch(base + "/v1/status")
    assert status == 404 and ctype.startswith("application/problem+json")
    assert json.loads(body)["type"].endswith("/not-found")
    assert fetch(base + "/healthz")[0] == 200
    request = urllib.request.Request(base + "/metrics", method="POST", data=b"")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 405 and refused.value.headers["Content-Type"].startswith("application/problem+json")
    assert "GET" in refused.value.headers["Allow"]


def test_readyz_turns_503_when_two_of_four_validators_are_paused_and_recovers(net):
    by_stake = sorted(net.nodes.values(), key=lambda n: -n.stake)
    paused, watching = by_stake[:2], by_stake[2:]  # the two largest stakes: the rest cannot commit
    for node in watching:
        assert fetch(node.url + "/readyz")[0] == 200
    for node in paused:
        os.kill(net.procs[node.name].pid, signal.SIGSTOP)
    try:
        for node in watching:
            net.wait_until(f"{node.name} /readyz to answer 503", lambda n=node: fetch(n.url + "/readyz")[0] == 503,
                           timeout_s=20)
        status, ctype, body = fetch(watching[0].url + "/readyz")
        doc = json.loads(body)
        assert ctype.startswith("application/problem+json") and doc["type"].endswith("/not-ready")
        assert "catching up or the network does not commit" in doc["detail"]
        assert fetch(watching[0].url + "/healthz")[0] == 200  # alive all the same
        assert fetch(f"http://{watching[0].metrics}/readyz")[0] == 503  # the metrics listener says the same
    finally:
        for node in paused:
            os.kill(net.procs[node.name].pid, signal.SIGCONT)
    for node in by_stake:
        net.wait_until(f"{node.name} ready again", lambda n=node: fetch(n.url + "/readyz")[0] == 200, timeout_s=30)


def test_version_is_printed_and_in_status(net):
    proc = cli("--version", check=True)
    assert proc.stdout.strip() == f"custos {version()}"
    assert net.get("val-0", "/v1/status")["version"] == version()


def test_openapi_describes_every_route_the_node_serves(net):
    status, _, body = fetch(net.url("val-0") + "/v1/openapi.json")
    doc = json.loads(body)
    assert status == 200 and doc["openapi"].startswith("3.1") and doc == json.loads(json.dumps(openapi_document()))
    routes = (Api.__new__(Api).routes() + Reads.__new__(Reads).routes() + EventStreams.__new__(EventStreams).routes()
              + AccessLogRoutes.__new__(AccessLogRoutes).routes() + OpsRoutes.__new__(OpsRoutes).routes()
              + Identify.__new__(Identify).routes() + Proofs.__new__(Proofs).routes())
    served = {(r.method.lower(), r.path) for r in routes}
    described = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    assert served == described


def test_json_logs_write_one_line_per_committed_block(tmp_path):
    net = Net(tmp_path / "net", validators=1, heartbeat_ms=200)
    config = net.dir / "val-0" / "node.toml"
    config.write_text(config.read_text() + '\n[log]\nformat = "json"\n')
    net.start()
    try:
        net.wait_height(5, "val-0")
    finally:
        net.stop()
    lines = [json.loads(line) for line in net.log("val-0").splitlines() if line.startswith("{")]
    assert lines and len(lines) == len(net.log("val-0").strip().splitlines()), "a line that is not JSON"
    blocks = [line for line in lines if line.get("event") == "block"]
    heights = [b["height"] for b in blocks]
    assert heights == list(range(1, len(heights) + 1)) and len(heights) >= 5
    assert {"time", "level", "logger", "message", "hash", "txs", "round", "proposer"} <= set(blocks[0])
    assert any("serving" in line["message"] for line in lines)
