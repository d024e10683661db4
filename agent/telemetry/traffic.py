"""The traffic metrics (Istio's ``istio_tcp_*``, nodemesh's L4 histograms and authorization
decisions), read at scrape time.

The proxy only counts into its connection table (``nodemesh.agent.proxy.traffic``); this
collector turns the table into metric families when Prometheus asks, on the proxy's loop (the
admin HTTP server runs it there), so it sees one consistent moment. Bytes of open connections
are read from their pipes then, so a long transfer's counters move while it runs; when the
connection closes its bytes move into its label set's totals in the same loop step, so each
counter only ever grows.
"""

from __future__ import annotations

from typing import Iterable

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from nodemesh.agent.proxy.authorizer import Authorizer
from nodemesh.agent.proxy.conntrack import ConnectionTable
from nodemesh.agent.proxy.traffic import CONNECT_LABELS, DURATION_LABELS, LABELS, Key, Totals, duration_key
from nodemesh.metrics import DURATION_BUCKETS, Buckets, Family

OPENED = Family(CounterMetricFamily, "istio_tcp_connections_opened",
                "Connections opened (once the upstream answered, or failed).", LABELS)
CLOSED = Family(CounterMetricFamily, "istio_tcp_connections_closed", "Connections closed, relayed or failed.", LABELS)
FAILED = Family(CounterMetricFamily, "istio_tcp_connections_failed",
                "Connections that failed; response_flags says why.", LABELS)
RECEIVED = Family(CounterMetricFamily, "istio_tcp_received_bytes", "Bytes received from the client.", LABELS)
SENT = Family(CounterMetricFamily, "istio_tcp_sent_bytes", "Bytes sent toward the client.", LABELS)
DURATION = Family(HistogramMetricFamily, "nodemesh_tcp_connection_duration_seconds",
                  "How long connections lived, from accept to close.", DURATION_LABELS)
CONNECT = Family(HistogramMetricFamily, "nodemesh_upstream_connect_duration_seconds",
                 "Time from accept to the upstream's answer, per destination service.", CONNECT_LABELS)
DECISIONS = Family(CounterMetricFamily, "nodemesh_authorization_decisions",
                   "Authorization decisions on connections into local pods, by the deciding policy "
                   "(none: the default), its action and the result; late rejections included.",
                   ("policy", "action", "result"))
LATE_REJECTIONS = Family(CounterMetricFamily, "nodemesh_authorization_late_rejections",
                         "Open connections reset because a policy change no longer allows them.",
                         ("policy", "action"))


class TrafficCollector(Collector):
    def __init__(self, table: ConnectionTable, authorizer: Authorizer) -> None:
        assert table.traffic is not None, "metrics are off: the table keeps no traffic totals"
        self.table = table
        self.traffic = table.traffic
        self.authorizer = authorizer

    def collect(self) -> Iterable[Metric]:
        live: dict[int, list[int]] = {}  # id of a label set's totals -> [received, sent] of open connections
        for conn in self.table.in_flight.values():
            for totals in conn.counted:  # established (before, nothing was relayed)
                pair = live.setdefault(id(totals), [0, 0])
                pair[0] += conn.received
                pair[1] += conn.sent
        totals: dict[Key, Totals] = self.traffic.totals
        yield OPENED.of({key: t.opened for key, t in totals.items()})
        yield CLOSED.of({key: t.closed for key, t in totals.items()})
        yield FAILED.of({key: t.failed for key, t in totals.items()})
        yield RECEIVED.of({key: t.received + live.get(id(t), (0, 0))[0] for key, t in totals.items()})
        yield SENT.of({key: t.sent + live.get(id(t), (0, 0))[1] for key, t in totals.items()})
        durations: dict[Key, Buckets] = {}
        for key, t in totals.items():
            durations.setdefault(duration_key(key), Buckets(DURATION_BUCKETS)).add(t.duration)
        yield DURATION.histogram(durations.items())
        yield CONNECT.histogram(self.traffic.connect.items())
        yield DECISIONS.of(self.authorizer.decisions())
        yield LATE_REJECTIONS.of(self.authorizer.late)
