"""Prometheus samples of running dataflow processes, summed over processes."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(urls: Iterable[str]) -> Samples:
    """Every sample of every process, summed over processes."""
    totals: Samples = {}
    for url in urls:
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                key = (s.name, tuple(sorted(s.labels.items())))
                totals[key] = totals.get(key, 0.0) + s.value
    return totals


def metric(samples: dict[Any, float], name: str, **labels: str) -> float:
    return sum(
        v for (n, lbls), v in samples.items()
        if n == name and all(dict(lbls).get(k) == val for k, val in labels.items())
    )
