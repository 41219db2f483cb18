"""The per-request metric updates (observe/metrics.py) take a short path for kept,
lock-free series: what they expose must be exactly what prometheus_client's own
methods make of the same values, checks and errors included."""

from __future__ import annotations

import math

import prometheus_client
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from llmgw.observe.metrics import Counter, Gauge, Histogram, _unlocked

BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01)
# On a bound, between bounds, above them all, zero, negative, NaN and infinities.
VALUES = [0.0001, 0.00025, 0.0003, 0.001, 0.01, 0.0100001, 5.0, 0.0, -1.0, math.nan, math.inf]


def _exposed(registry: CollectorRegistry) -> list[bytes]:
    """The exposition without the series' creation times."""
    return [line for line in generate_latest(registry).splitlines() if b"_created" not in line]


def _pair(
    kind: type, library: type, **kwargs: object
) -> tuple[object, object, CollectorRegistry, CollectorRegistry]:
    ours_registry, theirs_registry = CollectorRegistry(), CollectorRegistry()
    ours = kind("m", "doc", ["endpoint"], registry=ours_registry, **kwargs)
    theirs = library("m", "doc", ["endpoint"], registry=theirs_registry, **kwargs)
    return ours, theirs, ours_registry, theirs_registry


def test_histogram_children_fill_the_buckets_the_library_fills() -> None:
    ours, theirs, ours_registry, theirs_registry = _pair(
        Histogram, prometheus_client.Histogram, buckets=BUCKETS
    )
    for value in VALUES:
        ours.labels("chat").observe(value)  # type: ignore[attr-defined]
        theirs.labels("chat").observe(value)  # type: ignore[attr-defined]
    lines = _exposed(ours_registry)
    assert lines == _exposed(theirs_registry)
    assert (
        b'm_bucket{endpoint="chat",le="0.0001"} 3.0' in lines
    )  # -1, 0 and the bound itself  # -1, 0 and the bound itself


def test_counter_and_gauge_children_count_as_the_library_does() -> None:
    ours, theirs, ours_registry, theirs_registry = _pair(Counter, prometheus_client.Counter)
    for amount in (1, 2.5, 0):
        ours.labels("chat").inc(amount)  # type: ignore[attr-defined]
        theirs.labels("chat").inc(amount)  # type: ignore[attr-defined]
    with pytest.raises(ValueError):
        ours.labels("chat").inc(-1)  # type: ignore[attr-defined]
    with pytest.raises(ValueError):  # a parent with labels is no series
        ours.inc()  # type: ignore[attr-defined]
    assert _exposed(ours_registry) == _exposed(theirs_registry)

    registry = CollectorRegistry()
    gauge = _unlocked(Gauge("g", "doc", registry=registry))
    gauge.inc()
    gauge.inc(2)
    gauge.dec()
    assert b"g 2.0" in generate_latest(registry)
    with pytest.raises(ValueError):
        Gauge("h", "doc", ["x"], registry=registry).inc()
