"""What the agent's and the controller's metrics have in common: the registry and histograms.

Both sides expose Prometheus text with prometheus-client. Each process builds one registry
(``new_registry``) holding the process metrics every exporter has (CPU, RSS, open fds),
Istio's ``istio_build{component,tag}``, and the process's own collectors, which declare their
families once each (``Family``) and make them from what they read at scrape time.

``Buckets`` is a histogram for code that runs on one thread (the proxy's loop): observing is a
bisect and two additions, with no lock and no label lookup, because the collector that owns it
turns it into a metric family only when Prometheus scrapes. prometheus-client's own
``Histogram`` takes a lock per observation, which is right for threads but not needed there.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from nodemesh import __version__

# Seconds: from a local connect (~100 us) to the connect timeout (seconds).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Seconds a connection lived: a request (ms) to a long-lived stream (hours).
DURATION_BUCKETS = (0.001, 0.01, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0)


class Buckets:
    """A histogram's state: counts per upper bound (the last is +Inf) and the sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def add(self, other: "Buckets") -> None:
        """Merge ``other`` (same bounds) into this one: a coarser label set's histogram."""
        self.counts = [a + b for a, b in zip(self.counts, other.counts)]
        self.sum += other.sum

    def cumulative(self) -> list[tuple[str, float]]:
        """Prometheus' ``le`` buckets: counts of observations at or below each bound."""
        out, total = [], 0
        for bound, count in zip((*map(floatToGoString, self.bounds), "+Inf"), self.counts):
            total += count
            out.append((bound, total))
        return out


_Kind = type[GaugeMetricFamily] | type[CounterMetricFamily] | type[HistogramMetricFamily]


@dataclass(frozen=True)
class Family:
    """A metric family's type, name, help and labels, declared once: a collector's ``describe``
    (``new``) and its ``collect`` (``of``, ``histogram``) make their families from it."""

    kind: _Kind
    name: str
    documentation: str
    labels: tuple[str, ...] = ()

    def new(self) -> Metric:
        return self.kind(self.name, self.documentation, labels=list(self.labels))

    def of(self, samples: Mapping[tuple[str, ...], float]) -> Metric:
        """The gauge or counter with a sample per label values."""
        family = self.new()
        for values, value in samples.items():
            family.add_metric(list(values), value)  # type: ignore[attr-defined]
        return family

    def histogram(self, series: Iterable[tuple[Sequence[str], Buckets]]) -> Metric:
        """The histogram with a series per ``(label values, buckets)`` pair."""
        family = HistogramMetricFamily(self.name, self.documentation, labels=list(self.labels))
        for values, buckets in series:
            family.add_metric(list(values), buckets.cumulative(), buckets.sum)
        return family


class _BuildInfo(Collector):
    """``istio_build``: Istio's name, so that its dashboards' version panels work unchanged."""

    def __init__(self, component: str) -> None:
        self.component = component

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily("istio_build", "The nodemesh component and version that runs.",
                                   labels=["component", "tag"])
        family.add_metric([self.component, __version__], 1)
        yield family


def new_registry(component: str) -> CollectorRegistry:
    """A registry with the process metrics and ``istio_build{component,tag}``."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    registry.register(_BuildInfo(component))
    return registry
