"""Connections the proxy handles: those in flight, and totals since start.

The admin API, the metrics and tests read this to see what went through the agent. Each
connection costs one object, a few dict operations and, with metrics on, one label tuple
(``traffic``); nothing per byte (byte counts live on the pipes). Observers (the access log, the
span exporter) are called once per connection, when it ends.

Every total is keyed by something the mesh model bounds (a direction, an outcome name, a
workload), never by an address from outside the mesh: connections passed through to such
addresses all count under ``PASSTHROUGH``, so an agent relaying to the whole internet keeps
a table of the same size.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from nodemesh.agent.proxy import traffic
from nodemesh.agent.proxy.balance.balancer import Lease
from nodemesh.agent.proxy.relay import Pipe
from nodemesh.agent.proxy.traffic import Traffic
from nodemesh.authz.evaluate import Decision
from nodemesh.model import Workload

OUTBOUND = "outbound"
INBOUND = "inbound"

# The destination of a connection to an address the mesh does not know (its ``upstream``
# says which): what all of them count under.
PASSTHROUGH = "passthrough"


@dataclass(eq=False)
class Connection:
    id: int
    direction: str
    source: str  # workload "namespace/name", or an address outside the mesh
    original_dst: str  # what the client asked for, "ip:port"
    destination: str = ""  # workload "namespace/name" that was chosen, or PASSTHROUGH
    upstream: str = ""  # "ip:port" actually connected to
    # "hbone" (mutual TLS between nodes), "local" (both pods on this node), "direct" (not
    # meshed), "plaintext" (captured from outside the mesh)
    via: str = ""
    # Istio's label: "mutual_tls" (hbone, and local: both identities checked, nothing crosses a
    # link in the clear), or "none" (plaintext from outside the mesh, or to it); "" not said
    connection_security_policy: str = ""
    source_identity: str = ""  # SPIFFE ids: from certificates (hbone) or the mesh model (local)
    destination_identity: str = ""
    # The two sides as the mesh model knows them (None: outside the mesh), and the service the
    # client asked for ("namespace/name", "" if it dialled an address): telemetry's labels.
    source_workload: Workload | None = None
    destination_workload: Workload | None = None
    service: str = ""
    # Authorization, on connections this agent delivers into a local pod (inbound, and the
    # same-node outbound ones): what deciding took, so that a policy change can decide again,
    # the decision (its policy, rule) and the authorizer's policy generation it was made with.
    source_ip: str = ""
    app_port: int = 0  # the destination pod's port
    authorization: Decision | None = None
    authorized_in: int = 0
    started: float = field(default_factory=time.time)
    opened_at: float = field(default_factory=time.monotonic)
    ended: float = 0.0  # time.time() once closed or failed
    outcome: str = ""  # "ok" once established, or why it failed
    failure: str = ""  # the failure's detail, for the access log
    # W3C trace context: this side's span, and the other side's (0: none), for traces
    trace_id: int = 0
    span_id: int = 0
    parent_span_id: int = 0
    down: Pipe | None = None
    up: Pipe | None = None
    # Its label sets' totals once established (metrics on): the reporter's, and on the same-node
    # path, where this one agent is both sides, the destination reporter's too.
    counted: tuple[traffic.Totals, ...] = ()
    # Not set by ``open`` (class defaults: nothing to pay per connection that has none of them).
    # Through a service VIP: the traffic policy's hold and record of its decisions (why this
    # endpoint, the attempts that failed), released when the connection ends.
    lease: Lease | None = field(default=None, init=False)
    closed_by: str = field(default="", init=False)  # why the proxy closed it ("idle_timeout"), "" if it did not
    # The idle timeout (0: none) and what the idle sweep last saw (``balance.idle``)
    idle_timeout: float = field(default=0.0, init=False)
    idle_bytes: int = field(default=0, init=False)
    idle_since: float = field(default=0.0, init=False)

    @property
    def received(self) -> int:
        """Bytes from the client so far."""
        return self.down.received if self.down else 0

    @property
    def sent(self) -> int:
        """Bytes from the upstream so far, that is toward the client."""
        return self.up.received if self.up else 0

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "id": self.id,
            "direction": self.direction,
            "source": self.source,
            "original_dst": self.original_dst,
            "destination": self.destination,
            "upstream": self.upstream,
            "via": self.via,
            "connection_security_policy": self.connection_security_policy,
            "source_identity": self.source_identity,
            "destination_identity": self.destination_identity,
            "service": self.service,
            "policy": self.authorization.policy if self.authorization is not None else "",
            "age_seconds": round(time.time() - self.started, 3),
            "bytes_from_downstream": self.received,
            "bytes_from_upstream": self.sent,
        }
        if self.lease is not None:
            out.update(self.lease.as_dict())
        return out


Observer = Callable[[Connection], None]


class ConnectionTable:
    def __init__(self, metrics: bool = True) -> None:
        """``metrics``: keep ``traffic`` (per label set totals); off, only the counts below."""
        self.traffic = Traffic() if metrics else None
        self.observers: list[Observer] = []  # called with each connection once it ended
        self._ids = itertools.count(1)
        self.in_flight: dict[int, Connection] = {}
        # (direction, outcome) -> count; outcome is "ok" or a short failure reason
        self.totals: Counter[tuple[str, str]] = Counter()
        # (direction, destination workload or PASSTHROUGH) -> established connections
        self.by_destination: Counter[tuple[str, str]] = Counter()
        self.bytes: Counter[str] = Counter()

    def open(self, direction: str, source: str, original_dst: str) -> Connection:
        conn = Connection(next(self._ids), direction, source, original_dst)
        self.in_flight[conn.id] = conn
        return conn

    def refused(self, direction: str, outcome: str) -> None:
        """Count a connection refused before it had a table entry (not steered, bad TLS peer)."""
        self.totals[(direction, outcome)] += 1

    def failed(self, conn: Connection, reason: str, detail: object = "") -> None:
        if self.in_flight.pop(conn.id, None) is None:
            return
        if conn.lease is not None:
            conn.lease.release()
        self.totals[(conn.direction, reason)] += 1
        conn.outcome, conn.failure, conn.ended = reason, str(detail), time.time()
        if self.traffic is not None:
            for key in self._keys(conn, traffic.response_flag(reason)):
                totals = self.traffic.entry(key)
                totals.opened += 1
                totals.failed += 1
                totals.closed += 1
                totals.received += conn.received
                totals.sent += conn.sent
                totals.duration.observe(conn.ended - conn.started)
        for observer in self.observers:
            observer(conn)

    def established(self, conn: Connection) -> None:
        self.totals[(conn.direction, "ok")] += 1
        self.by_destination[(conn.direction, conn.destination)] += 1
        conn.outcome = "ok"
        if self.traffic is not None:
            conn.counted = tuple(self.traffic.entry(key) for key in self._keys(conn, traffic.OK_FLAG))
            for totals in conn.counted:
                totals.opened += 1
            self.traffic.connected((traffic.REPORTER[conn.direction], traffic.service_labels(conn.service)[0],
                                    conn.via), time.monotonic() - conn.opened_at)

    def closed(self, conn: Connection) -> None:
        if self.in_flight.pop(conn.id, None) is None:
            return
        if conn.lease is not None:
            conn.lease.release()
        received, sent = conn.received, conn.sent
        conn.ended = time.time()
        self.bytes[f"{conn.direction}_from_downstream"] += received
        self.bytes[f"{conn.direction}_from_upstream"] += sent
        for totals in conn.counted:
            totals.closed += 1
            totals.received += received
            totals.sent += sent
            totals.duration.observe(conn.ended - conn.started)
        for observer in self.observers:
            observer(conn)

    @staticmethod
    def _keys(conn: Connection, flag: str) -> tuple[traffic.Key, ...]:
        """The label sets the connection counts under: its reporter's, and on the same-node path
        the destination's as well, as ztunnel reports it (a workload's inbound view must
        include clients on its own node)."""
        labels = (*traffic.peer_labels(conn.source_workload, conn.source_identity),
                  *traffic.peer_labels(conn.destination_workload, conn.destination_identity),
                  *traffic.service_labels(conn.service), traffic.PROTOCOL, flag,
                  conn.connection_security_policy or traffic.UNKNOWN)
        if conn.via == "local":
            return (("source", *labels), ("destination", *labels))
        return ((traffic.REPORTER[conn.direction], *labels),)

    def snapshot(self) -> dict[str, object]:
        return {
            "in_flight": [c.as_dict() for c in self.in_flight.values()],
            "totals": [{"direction": d, "outcome": o, "count": n} for (d, o), n in sorted(self.totals.items())],
            "by_destination": [
                {"direction": d, "destination": dest, "count": n}
                for (d, dest), n in sorted(self.by_destination.items())
            ],
            "bytes": dict(self.bytes),
        }
