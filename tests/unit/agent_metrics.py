"""An agent's /metrics as prometheus-client renders it, for the ``nodemesh top`` tests.

``FakeAgent`` holds prometheus-client's own Counters and Histogram under the catalog's names
and labels (docs/telemetry.md), so the tests read real exposition text (``_created`` series,
``le`` buckets, label escaping), not text written by hand to suit the parser.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from nodemesh.metrics import LATENCY_BUCKETS

SERVICE = "catalog.shop.svc.cluster.local"
LABELS = ("reporter", "source_workload", "source_workload_namespace", "source_principal",
          "destination_workload", "destination_workload_namespace", "destination_service",
          "response_flags", "connection_security_policy")
COUNTERS = {
    "opened": "istio_tcp_connections_opened",
    "closed": "istio_tcp_connections_closed",
    "failed": "istio_tcp_connections_failed",
    "received": "istio_tcp_received_bytes",
    "sent": "istio_tcp_sent_bytes",
}


class FakeAgent:
    """One agent's counters; a new one is an agent that restarted (everything from zero)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.counters = {what: Counter(name, f"{what} (test)", LABELS, registry=self.registry)
                         for what, name in COUNTERS.items()}
        self.latency = Histogram("nodemesh_upstream_connect_duration_seconds", "connect (test)",
                                 ("reporter", "destination_service", "via"), buckets=LATENCY_BUCKETS,
                                 registry=self.registry)
        # what every agent exports besides: top must pass over it
        Counter("nodemesh_xds_updates", "updates (test)", ("result",), registry=self.registry
                ).labels("accepted").inc()

    def connections(self, count: int, source: str = "shop/client", service: str = SERVICE,
                    workload: str = "shop/catalog-a", policy: str = "mutual_tls",
                    reporter: str = "source", flag: str = "-", received: int = 0, sent: int = 0,
                    open_: int = 0, connect_seconds: float | None = None, via: str = "hbone",
                    principal: str = "spiffe://cluster.local/ns/shop/sa/default") -> None:
        """``count`` connections of one label set, ``open_`` of them still open; each moved
        ``received`` bytes from the client and ``sent`` toward it; a ``flag`` other than "-"
        makes them failures."""
        source_ns, source_name = source.split("/")
        dest_ns, dest_name = workload.split("/")
        labels = dict(reporter=reporter, source_workload=source_name, source_workload_namespace=source_ns,
                      source_principal=principal, destination_workload=dest_name,
                      destination_workload_namespace=dest_ns, destination_service=service,
                      response_flags=flag, connection_security_policy=policy)
        counts = {"opened": count, "closed": count - open_, "failed": count if flag != "-" else 0,
                  "received": count * received, "sent": count * sent}
        for what, n in counts.items():
            self.counters[what].labels(**labels).inc(n)
        if connect_seconds is not None:
            for _ in range(count):
                self.latency.labels(reporter, service, via).observe(connect_seconds)

    def text(self) -> str:
        return generate_latest(self.registry).decode()
