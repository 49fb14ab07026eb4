"""Fuzz a live node against its own OpenAPI description (schemathesis): no request, valid or not,
gets a server error; every answer has a status code and content type the description names;
every error is an RFC 9457 problem document.

The default run is short (a few examples per operation, about 20 s); ``--run-slow`` runs the
long one.
"""

from __future__ import annotations

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from node.api.openapi import openapi_document
from tests.node.netkit import Net

schemathesis.serializer.alias("application/msgpack", "application/octet-stream")  # bodies are raw bytes
schema = schemathesis.openapi.from_dict(json.loads(json.dumps(openapi_document())))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def node_url(tmp_path_factory):
    net = Net(tmp_path_factory.mktemp("openapi"), validators=1, heartbeat_ms=500)
    net.start()
    yield net.url("val-0")
    net.stop()


def check(case, node_url: str) -> None:
    response = case.call(base_url=node_url, timeout=10)
    case.validate_response(response, checks=CHECKS)
    if response.status_code >= 400:
        content_type = (response.headers.get("content-type") or [""])[0]  # header names lowercased, values listed
        assert content_type.startswith("application/problem+json"), response.text
        doc = response.json()
        assert doc["status"] == response.status_code and doc["type"].startswith("https://") and doc["title"]


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_request_gets_a_server_error_or_an_undocumented_answer(case, node_url):
    check(case, node_url)


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_gets_a_server_error_in_a_long_run(case, node_url):
    check(case, node_url)
