"""Hot-path metrics: plain counts in the event loop's thread, turned into Prometheus samples at scrape time.

``prometheus_client``'s ``Counter.inc`` takes a lock and ``Histogram.observe`` walks its buckets in
Python: a few microseconds per call, paid per tick. These classes keep the same call shape
(``.labels(...).inc()`` / ``.observe(v)``) but only bump integers (a C ``bisect`` picks the bucket), or read
a count something else keeps already (``FastCounter.count_from``: nothing to add per event);
their ``collect`` builds the usual ``_total`` / ``_bucket`` / ``_sum`` / ``_count`` series for the
registry. They are not thread-safe: everything that touches them runs on the server's event loop.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry


class HistogramChild:
    """One label set of a :class:`FastHistogram`: a count per bucket (its upper bound in ``bounds``) and the sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value


class _CountChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class _ReadChild:
    """A counter child whose value something else keeps (read at scrape time: nothing to add per event)."""

    __slots__ = ("read",)

    def __init__(self, read: Callable[[], float]) -> None:
        self.read = read

    @property
    def value(self) -> float:
        return self.read()


class _Family(Collector):
    def __init__(self, name: str, doc: str, labelnames: Sequence[str], registry: CollectorRegistry) -> None:
        self.name = name
        self.doc = doc
        self.labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], object] = {}
        registry.register(self)

    def describe(self) -> Iterator[Metric]:
        return iter(())


class FastHistogram(_Family):
    """A histogram with ``observe`` costing one ``bisect`` and two additions."""

    def __init__(
        self,
        name: str,
        doc: str,
        labelnames: Sequence[str] = (),
        *,
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        super().__init__(name, doc, labelnames, registry)
        self.bounds = tuple(float(b) for b in buckets)
        if not labelnames:
            self._default = self._child(())

    def _child(self, values: tuple[str, ...]) -> HistogramChild:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = HistogramChild(self.bounds)
        assert isinstance(child, HistogramChild)
        return child

    def labels(self, *values: str) -> HistogramChild:
        """The child for these label values (keep it: looking it up is the slow part)."""
        return self._child(tuple(values))

    def observe(self, value: float) -> None:
        """Observe on the unlabelled histogram."""
        self._default.observe(value)

    def collect(self) -> Iterator[Metric]:
        fam = HistogramMetricFamily(self.name, self.doc, labels=self.labelnames)
        for values, child in self._children.items():
            assert isinstance(child, HistogramChild)
            cumulative = 0
            buckets = []
            for bound, n in zip((*self.bounds, float("inf")), child.counts, strict=True):
                cumulative += n
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            fam.add_metric(list(values), buckets, child.sum)
        yield fam


class FastCounter(_Family):
    """A counter with ``inc`` costing one addition; ``name`` without ``_total`` as in prometheus_client."""

    def __init__(
        self, name: str, doc: str, labelnames: Sequence[str] = (), *, registry: CollectorRegistry
    ) -> None:
        super().__init__(name, doc, labelnames, registry)
        if not labelnames:
            self._default = self._child(())

    def _child(self, values: tuple[str, ...]) -> _CountChild:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = _CountChild()
        if not isinstance(child, _CountChild):
            raise TypeError(
                f"{self.name}{list(values)} is read from a count kept elsewhere: nothing may add to it"
            )
        return child

    def labels(self, *values: str) -> _CountChild:
        """The child for these label values."""
        return self._child(tuple(values))

    def count_from(self, read: Callable[[], float], *values: str) -> None:
        """The child for these label values reads ``read()`` at scrape time (a count kept elsewhere, monotonic)
        instead of counting by :meth:`inc` (again, for a restarted source: the read replaces the last one)."""
        counted = self._children.get(tuple(values))
        if isinstance(counted, _CountChild) and counted.value:
            raise ValueError(
                f"{self.name}{list(values)} was counted by inc() already: its count would be lost"
            )
        child = self._children[tuple(values)] = _ReadChild(read)
        if not values and self.labelnames == ():
            self._default = child  # type: ignore[assignment]  # inc() now raises: nothing may count it twice

    def inc(self, amount: float = 1.0) -> None:
        """Add to the unlabelled counter."""
        self._default.value += amount

    def collect(self) -> Iterator[Metric]:
        fam = CounterMetricFamily(self.name, self.doc, labels=self.labelnames)
        for values, child in self._children.items():
            assert isinstance(child, _CountChild | _ReadChild)
            fam.add_metric(list(values), child.value)
        yield fam
