"""The traffic metrics (Istio's ``istio_tcp_*``, and nodemesh's L4 histograms), read at scrape time.

The proxy only counts into its connection table (``nodemesh.agent.proxy.traffic``); this
collector turns the table into metric families when Prometheus asks, on the proxy's loop (the
admin HTTP server runs it there), so it sees one consistent moment. Bytes of open connections
are read from their pipes then, so a long transfer's counters move while it runs; when the
connection closes its bytes move into its label set's totals in the same loop step, so each
counter only ever grows.
"""

from __future__ import annotations

from typing import Iterable

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from nodemesh.agent.proxy.conntrack import ConnectionTable
from nodemesh.agent.proxy.traffic import CONNECT_LABELS, DURATION_LABELS, LABELS, Key, duration_key
from nodemesh.metrics import DURATION_BUCKETS, Buckets, histogram_family


class TrafficCollector(Collector):
    def __init__(self, table: ConnectionTable) -> None:
        assert table.traffic is not None, "metrics are off: the table keeps no traffic totals"
        self.table = table
        self.traffic = table.traffic

    def collect(self) -> Iterable[Metric]:
        live: dict[int, list[int]] = {}  # id of a label set's totals -> [received, sent] of open connections
        for conn in self.table.in_flight.values():
            for totals in conn.counted:  # established (before, nothing was relayed)
                pair = live.setdefault(id(totals), [0, 0])
                pair[0] += conn.received
                pair[1] += conn.sent
        families = {name: CounterMetricFamily(name, doc, labels=LABELS) for name, doc in (
            ("istio_tcp_connections_opened", "Connections opened (once the upstream answered, or failed)."),
            ("istio_tcp_connections_closed", "Connections closed, relayed or failed."),
            ("istio_tcp_connections_failed", "Connections that failed; response_flags says why."),
            ("istio_tcp_received_bytes", "Bytes received from the client."),
            ("istio_tcp_sent_bytes", "Bytes sent toward the client."),
        )}
        durations: dict[Key, Buckets] = {}
        for key, t in self.traffic.totals.items():
            values = list(key)
            received, sent = live.get(id(t), (0, 0))
            families["istio_tcp_connections_opened"].add_metric(values, t.opened)
            families["istio_tcp_connections_closed"].add_metric(values, t.closed)
            families["istio_tcp_connections_failed"].add_metric(values, t.failed)
            families["istio_tcp_received_bytes"].add_metric(values, t.received + received)
            families["istio_tcp_sent_bytes"].add_metric(values, t.sent + sent)
            merged = durations.setdefault(duration_key(key), Buckets(DURATION_BUCKETS))
            merged.add(t.duration)
        yield from families.values()
        yield histogram_family("nodemesh_tcp_connection_duration_seconds",
                               "How long connections lived, from accept to close.", DURATION_LABELS,
                               durations.items())
        yield histogram_family("nodemesh_upstream_connect_duration_seconds",
                               "Time from accept to the upstream's answer, per destination service.",
                               CONNECT_LABELS, self.traffic.connect.items())
