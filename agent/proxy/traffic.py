"""Per-workload-pair traffic totals, with Istio's L4 metric labels: what the metrics report.

Sans-IO: the connection table calls ``Traffic`` when a connection is established, fails or
closes, and the telemetry collector reads it at scrape time. Each call costs one tuple of label
values and one dict lookup per connection, nothing per byte: bytes of a closed connection are
added once, and those of open ones are read from their pipes when Prometheus scrapes.

Labels are per workload pair (and service, security policy, response flag), never per pod IP
or per connection, so the number of series is bounded by the mesh model, whatever the traffic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from nodemesh.agent.proxy.balance.balancer import NO_HEALTHY, OVERFLOW, RATE_LIMITED, RETRIES_EXHAUSTED
from nodemesh.metrics import DURATION_BUCKETS, LATENCY_BUCKETS, Buckets
from nodemesh.model import Workload

UNKNOWN = "unknown"
CLUSTER = "Kubernetes"  # Istio's default cluster id: one cluster
CLUSTER_DOMAIN = "svc.cluster.local"
PROTOCOL = "tcp"

REPORTER = {"outbound": "source", "inbound": "destination"}

# Istio's response flags for what conntrack counts, so that users' queries carry over; "-" is a
# connection that was relayed. The set is closed: an outcome not listed here is CONNECT.
OK_FLAG = "-"
RESPONSE_FLAGS = {
    "denied": "DENY",
    "denied_late": "DENY",  # relayed, then closed by a policy change
    "upstream_401": "DENY",
    "refused_plaintext": "DENY",  # STRICT: Istio shows it as a (synthetic) policy's denial
    "tls_handshake_failed": "TLS_FAILURE",
    "identity_mismatch": "IDENTITY_ERROR",
    "no_certificate": "IDENTITY_ERROR",
    "no_route": "NR",  # Envoy's flag: no route (the service has no such port, or no endpoint)
    "downstream_closed": "DC",  # Envoy's: the client went away before the upstream answered
    # Envoy's for what a service's traffic policy refused (docs/traffic.md)
    OVERFLOW: "UO",  # the circuit breaker: too many connections or pending connects
    RATE_LIMITED: "RL",
    NO_HEALTHY: "UH",  # no endpoint that is not ejected (or a split's backend without any)
    RETRIES_EXHAUSTED: "URX",  # every attempt failed, the retries with them
}
CONNECT_FLAG = "CONNECT"  # the upstream could not be reached (refused, timed out, reset, 503)


def response_flag(outcome: str) -> str:
    return RESPONSE_FLAGS.get(outcome, CONNECT_FLAG)


# Label names in the order of ``Traffic`` keys (Istio's CommonTrafficLabels).
_PEER = ("workload", "canonical_service", "canonical_revision", "workload_namespace", "principal",
         "app", "version", "cluster")
LABELS = ("reporter", *(f"source_{n}" for n in _PEER), *(f"destination_{n}" for n in _PEER),
          "destination_service", "destination_service_name", "destination_service_namespace",
          "request_protocol", "response_flags", "connection_security_policy")
# The connection-duration histogram's labels: the workload pair, coarser than the counters'.
DURATION_LABELS = ("reporter", "source_workload", "source_workload_namespace", "destination_workload",
                   "destination_workload_namespace", "destination_service", "connection_security_policy")
_DURATION_INDEX = tuple(LABELS.index(n) for n in DURATION_LABELS)
CONNECT_LABELS = ("reporter", "destination_service", "via")
# (reporter, destination service, via)
ConnectKey = tuple[str, str, str]


def peer_labels(workload: Workload | None, principal: str) -> tuple[str, ...]:
    """A side's eight labels; a side outside the mesh model is ``unknown`` but its principal."""
    principal = principal or UNKNOWN
    if workload is None:
        return (UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, principal, UNKNOWN, UNKNOWN, UNKNOWN)
    name = workload.workload_name or workload.name
    service = workload.canonical_service or name
    revision = workload.canonical_revision or UNKNOWN
    return (name, service, revision, workload.namespace, principal, service, revision, CLUSTER)


@lru_cache(maxsize=4096)  # services are few (the model's): each connection reads its labels, not makes them
def service_labels(service: str) -> tuple[str, str, str]:
    """(``name.namespace.svc.cluster.local``, name, namespace) of a ``namespace/name`` service."""
    if not service:
        return (UNKNOWN, UNKNOWN, UNKNOWN)
    namespace, _, name = service.partition("/")
    return (f"{name}.{namespace}.{CLUSTER_DOMAIN}", name, namespace)


@dataclass(slots=True)
class Totals:
    """One label set's counts. ``received`` is from the client, ``sent`` toward it (Istio's)."""

    opened: int = 0
    closed: int = 0
    failed: int = 0
    received: int = 0
    sent: int = 0
    duration: Buckets = field(default_factory=lambda: Buckets(DURATION_BUCKETS))


Key = tuple[str, ...]


class Traffic:
    """Totals by label set, and upstream connect latency by destination service."""

    def __init__(self) -> None:
        self.totals: dict[Key, Totals] = {}
        self.connect: dict[ConnectKey, Buckets] = {}

    def entry(self, key: Key) -> Totals:
        totals = self.totals.get(key)
        if totals is None:
            totals = self.totals[key] = Totals()
        return totals

    def connected(self, key: ConnectKey, seconds: float) -> None:
        buckets = self.connect.get(key)
        if buckets is None:
            buckets = self.connect[key] = Buckets(LATENCY_BUCKETS)
        buckets.observe(seconds)


def duration_key(key: Key) -> Key:
    """The duration histogram's labels out of a counters' key."""
    return tuple(key[i] for i in _DURATION_INDEX)
