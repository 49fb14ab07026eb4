"""Reading a node's metrics page the way a scraper does: for tests, benchmarks and operators'
scripts that want one number without a Prometheus server."""

from __future__ import annotations

import urllib.request


def parse_samples(text: str) -> dict[str, float]:
    """The samples of a metrics page in the classic text format: ``name`` (with its ``{labels}``
    when it has some) -> value. Comment lines and lines that do not parse are skipped."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        cut = line.rfind("}") + 1 or line.find(" ")  # a label's value may hold spaces
        if cut <= 0:
            continue
        name, rest = line[:cut], line[cut:].split()  # value, then a timestamp if there is one
        try:
            out[name] = float(rest[0])
        except (IndexError, ValueError):
            continue
    return out


def first_sample(samples: dict[str, float], family: str) -> float | None:
    """The value of ``family`` unlabelled, else of its first labelled sample, else None."""
    if family in samples:
        return samples[family]
    return next((v for k, v in samples.items() if k.startswith(family + "{")), None)


def read_metrics(url: str, timeout_s: float = 5.0) -> dict[str, float] | None:
    """The samples of the metrics page at ``url`` (a node's API or metrics listener, ending in
    ``/metrics``); None when it does not answer."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            return parse_samples(r.read().decode())
    except OSError:
        return None
