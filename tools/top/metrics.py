"""What ``nodemesh top`` reads of an agent's /metrics: the traffic counters and the upstream
connect-latency buckets, kept series by series (every label), because Prometheus takes rates
and counter resets per series: summing first would let one agent's restart hide behind
another agent's traffic.

Parsing is prometheus-client's own parser, so whatever the agent's prometheus-client writes
(escaping, ``_created`` series, exemplars) reads back as it meant.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

# Sample name -> what top calls it (docs/telemetry.md; Istio's direction: the proxy receives
# from the client and sends toward it).
COUNTERS = {
    "istio_tcp_connections_opened_total": "opened",
    "istio_tcp_connections_closed_total": "closed",
    "istio_tcp_connections_failed_total": "failed",
    "istio_tcp_received_bytes_total": "bytes_to_destination",
    "istio_tcp_sent_bytes_total": "bytes_from_destination",
    # each bucket of a histogram is a counter of its own (with ``le``), as Prometheus sees it
    "nodemesh_upstream_connect_duration_seconds_bucket": "connect_latency_bucket",
}

# A series' labels, sorted: hashable, and the same however the agent ordered them.
Series = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class AgentMetrics:
    """One agent's answer, and when it came (``time.monotonic()``: rates divide by the time
    between two answers of the same agent)."""

    at: float
    counters: dict[tuple[str, Series], float]  # (what, series) -> value


@dataclass(frozen=True)
class Scrape:
    """One round over the nodes: the agents that answered, and why each other one did not."""

    agents: dict[str, AgentMetrics]
    unreachable: dict[str, str]  # node -> the reason


def parse(text: str, at: float) -> AgentMetrics:
    """The counters of exposition ``text``; ``ValueError`` when it is not exposition text."""
    counters: dict[tuple[str, Series], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            what = COUNTERS.get(sample.name)
            if what is not None:
                counters[(what, tuple(sorted(sample.labels.items())))] = sample.value
    return AgentMetrics(at, counters)
