"""Two scrapes to the rows of ``nodemesh top``: per second rates, active connections, latency.

A row is a source workload -> destination (the service, or the workload when the connection
was not to a service) and the connection security policy, summed over the nodes. The rules,
and why:

- Rates are per series first, then summed, each series over its own agent's time between the
  two answers, as Prometheus' ``rate()`` does. A counter that dropped was reset (its agent
  restarted): all of its new value counts as the increase, never a negative rate. A series new
  in the second scrape started from zero in between.
- Only agents that answered both scrapes give rates: an agent seen for the first time has no
  earlier value, and taking its totals since start for one interval's worth would be a spike.
- Active connections are opened minus closed in the second scrape, from every agent that
  answered it (a gauge needs no earlier value).
- Connect latency is the destination service's: its histogram has no source labels, so every
  row to a service shows the latency of all of that reporter's connections to it. The
  quantiles are of the interval's observations only (bucket increases), as
  ``histogram_quantile`` over ``rate()``; with none in the interval there is none to show
  (``None``), rather than the cumulative figure since the agent started, which would pass old
  latency off as live.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Mapping

from nodemesh.tools.top.metrics import Scrape
from nodemesh.tools.top.quantile import histogram_quantile

UNKNOWN = "unknown"  # the agents' value for a label they do not know
QUANTILES = {"p50": 0.5, "p99": 0.99}
# what (metrics.COUNTERS) -> the Row field its rate adds to
_RATES = {"opened": "connections_per_second", "bytes_to_destination": "bytes_to_destination_per_second",
          "bytes_from_destination": "bytes_from_destination_per_second"}


@dataclass(frozen=True, order=True)
class RowKey:
    source: str  # "namespace/workload", or "unknown" (outside the mesh)
    destination: str  # the service's name (Istio's FQDN), or "namespace/workload"
    destination_kind: str  # "service" or "workload"
    connection_security_policy: str  # "mutual_tls", "none"


@dataclass
class Row:
    key: RowKey
    connections_per_second: float = 0.0
    active_connections: int = 0
    bytes_to_destination_per_second: float = 0.0
    bytes_from_destination_per_second: float = 0.0
    failures_per_second: dict[str, float] = field(default_factory=dict)  # response flag -> rate
    connect_latency_seconds: dict[str, float | None] = field(
        default_factory=lambda: dict.fromkeys(QUANTILES))


def increase(before: float | None, after: float) -> float:
    """How much a counter grew: a drop is a reset to zero (Prometheus' rule), no value before
    is a series that began in between."""
    if before is None or after < before:
        return after
    return after - before


def _workload(labels: Mapping[str, str], side: str) -> str:
    namespace = labels.get(f"{side}_workload_namespace", UNKNOWN)
    name = labels.get(f"{side}_workload", UNKNOWN)
    return UNKNOWN if namespace == name == UNKNOWN else f"{namespace}/{name}"


def row_key(labels: Mapping[str, str]) -> RowKey:
    service = labels.get("destination_service", UNKNOWN)
    destination, kind = (service, "service") if service != UNKNOWN else (_workload(labels, "destination"),
                                                                          "workload")
    return RowKey(_workload(labels, "source"), destination, kind,
                  labels.get("connection_security_policy", UNKNOWN))


def rows(before: Scrape, after: Scrape, reporter: str) -> list[Row]:
    """The table between two scrapes, for one reporter's series; busiest rows first."""
    table: dict[RowKey, Row] = {}
    latency: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))  # service -> le -> n
    for node, now in after.agents.items():
        then = before.agents.get(node)
        seconds = now.at - then.at if then is not None else 0.0
        for (what, series), value in now.counters.items():
            labels = dict(series)
            if labels.get("reporter") != reporter:
                continue
            grew = increase(then.counters.get((what, series)), value) if then and seconds > 0 else 0.0
            if what == "connect_latency_bucket":
                latency[labels.get("destination_service", UNKNOWN)][float(labels["le"])] += grew
                continue
            key = row_key(labels)
            row = table.get(key)
            if row is None:
                row = table[key] = Row(key)
            if what in ("opened", "closed"):
                row.active_connections += int(value) if what == "opened" else -int(value)
            if grew:
                _add_rate(row, what, labels, grew / seconds)
    for row in table.values():
        row.active_connections = max(row.active_connections, 0)  # two counters, not read at once
        if row.key.destination_kind == "service" and row.key.destination in latency:
            buckets = latency[row.key.destination]
            row.connect_latency_seconds = {name: histogram_quantile(q, buckets) for name, q in QUANTILES.items()}
    return sorted(table.values(), key=lambda r: (-r.connections_per_second, -r.active_connections, r.key))


def _add_rate(row: Row, what: str, labels: Mapping[str, str], per_second: float) -> None:
    if what == "failed":
        flag = labels.get("response_flags", UNKNOWN)
        row.failures_per_second[flag] = row.failures_per_second.get(flag, 0.0) + per_second
    elif what in _RATES:
        setattr(row, _RATES[what], getattr(row, _RATES[what]) + per_second)
