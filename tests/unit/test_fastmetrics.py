"""The hot-path metrics expose exactly what prometheus_client's own classes would."""

from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from ticker.metrics.fast import FastCounter, FastHistogram
from ticker.metrics.registry import LATENCY_BUCKETS, Metrics
from ticker.quote import Quote


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


def test_a_counter_read_from_a_count_kept_elsewhere_shows_its_value_at_each_scrape():
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    kept = {"hub": 0, "feed": 0}
    hub = FastCounter("u", "doc", registry=ours)
    hub.count_from(lambda: float(kept["hub"]))
    feeds = FastCounter("f", "doc", ["feed"], registry=ours)
    feeds.count_from(lambda: float(kept["feed"]), "sim")
    ref_hub = Counter("u", "doc", registry=theirs)
    ref_feed = Counter("f", "doc", ["feed"], registry=theirs).labels("sim")
    for n in (3, 7):
        kept["hub"] += n
        kept["feed"] += 2 * n
        ref_hub.inc(n)
        ref_feed.inc(2 * n)
        assert samples(ours) == samples(theirs)
    with pytest.raises(AttributeError):  # counted elsewhere: nothing may add to it as well
        hub.inc()


def test_the_feed_count_is_the_number_of_lags_observed():
    m = Metrics()
    got: list[Quote] = []
    emit = m.count_feed("sim", got.append)
    for ts in (1_000, 2_000, 10**15):  # the last one from the future: a lag of 0
        emit(Quote("A", 1.0, ts))
    text = generate_latest(m.registry).decode()
    assert 'ticker_feed_updates_total{feed="sim"} 3.0' in text
    assert 'ticker_feed_lag_seconds_count{feed="sim"} 3.0' in text
    assert 'ticker_feed_lag_seconds_bucket{feed="sim",le="0.001"} 1.0' in text
    assert len(got) == 3


def test_several_quotes_at_once_are_counted_as_each_would_be_into_the_same_series():
    one_by_one, at_once = Metrics(), Metrics()
    quotes = [Quote("A", 1.0, ts) for ts in (1_000, 2_000, 10**15)]
    got: list[list[Quote]] = []
    emit = one_by_one.count_feed("sim", lambda q: None)
    for q in quotes:
        emit(q)
    at_once.count_feed_many("sim", got.append)(quotes)
    at_once.count_feed("sim", lambda q: None)(quotes[-1])  # a feed emitting one alone: the same series
    emit(quotes[-1])

    def feed_series(m: Metrics) -> list[str]:  # the lag's sum aside: two readings of the clock
        return [
            s
            for s in samples(m.registry)
            if s.startswith(("ticker_feed_lag", "ticker_feed_updates")) and "_sum" not in s
        ]

    lines = feed_series(at_once)
    assert lines == feed_series(one_by_one)
    assert 'ticker_feed_updates_total{feed="sim"} 4.0' in lines and got == [quotes]


def test_a_read_counter_refuses_to_be_added_to_and_to_replace_a_count_already_made():
    registry = CollectorRegistry()
    c = FastCounter("f", "doc", ["feed"], registry=registry)
    c.count_from(lambda: 1.0, "a")
    with pytest.raises(TypeError, match="kept elsewhere"):
        c.labels("a").inc()
    c.labels("b").inc()
    with pytest.raises(ValueError, match="counted by inc"):
        c.count_from(lambda: 1.0, "b")
    c.count_from(lambda: 2.0, "a")  # a restarted source: its read replaces the last
    assert samples(registry) == ['f_total{feed="a"} 2.0', 'f_total{feed="b"} 1.0']
