"""The hot-path metrics expose exactly what prometheus_client's own classes would."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from ticker.metrics.fast import FastCounter, FastHistogram
from ticker.metrics.registry import LATENCY_BUCKETS


def samples(registry: CollectorRegistry) -> list[str]:
    return [line for line in generate_latest(registry).decode().splitlines() if not line.startswith("#")]


def test_histogram_matches_prometheus_client():
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    fast = FastHistogram("x_seconds", "doc", ["feed"], buckets=LATENCY_BUCKETS, registry=ours)
    ref = Histogram("x_seconds", "doc", ["feed"], buckets=LATENCY_BUCKETS, registry=theirs)
    rng = random.Random(1)
    values = [rng.expovariate(50) for _ in range(5000)] + [0.0, 0.01, 0.02, 100.0] + list(LATENCY_BUCKETS)
    for feed in ("a", "b"):
        f, r = fast.labels(feed), ref.labels(feed)
        for v in values:
            f.observe(v)
            r.observe(v)
    assert samples(ours) == samples(theirs)


def test_unlabelled_histogram_and_counters_match():
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    FastHistogram("h_seconds", "doc", buckets=(0.1, 1.0), registry=ours).observe(0.5)
    Histogram("h_seconds", "doc", buckets=(0.1, 1.0), registry=theirs).observe(0.5)
    fc = FastCounter("c", "doc", registry=ours)
    rc = Counter("c", "doc", registry=theirs)
    fl = FastCounter("d", "doc", ["feed"], registry=ours)
    rl = Counter("d", "doc", ["feed"], registry=theirs)
    for _ in range(3):
        fc.inc()
        rc.inc()
        fl.labels("x").inc(2)
        rl.labels("x").inc(2)
    assert samples(ours) == samples(
        theirs
    )  # ticker.metrics.registry turned the *_created series off for both
