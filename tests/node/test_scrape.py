"""Reading a metrics page as a scraper does (``node/ops/scrape.py``): the helper the process
tests and benchmarks read node counters with. Through a real node: ``faultkit.peers_connected``
and the network tests."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Info, generate_latest

from node.ops.scrape import first_sample, parse_samples


def test_a_page_prometheus_client_renders_reads_back_sample_by_sample():
    registry = CollectorRegistry()
    Counter("custos_tx_rejected", "refused", registry=registry).inc(3)
    Gauge("custos_height", "height", registry=registry).set(42)
    Info("custos_build", "build", registry=registry).info({"version": "1.2 (dev)"})
    samples = parse_samples(generate_latest(registry).decode())
    assert samples["custos_tx_rejected_total"] == 3.0
    assert samples["custos_height"] == 42.0
    assert samples['custos_build_info{version="1.2 (dev)"}'] == 1.0  # a label's value may hold spaces
    assert first_sample(samples, "custos_build_info") == 1.0
    assert first_sample(samples, "custos_height") == 42.0
    assert first_sample(samples, "custos_missing") is None
    assert not any(name.startswith("#") for name in samples)


def test_timestamps_are_not_taken_for_values_and_lines_that_do_not_parse_are_skipped():
    page = "a 1.5 1700000000000\nb{x=\"y\"} 2 1700000000000\nno-value\nc not-a-number\nd\n\n# HELP e x\ne 7\n"
    assert parse_samples(page) == {"a": 1.5, 'b{x="y"}': 2.0, "e": 7.0}
