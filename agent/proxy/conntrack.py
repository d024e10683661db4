"""Connections the proxy handles: those in flight, and totals since start.

The admin API and tests read this to see what went through the agent. Each connection costs
one object and two dict operations, nothing per byte (byte counts live on the pipes).

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

from nodemesh.agent.proxy.relay import Pipe

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
    # Istio's label: "mutual_tls" (hbone), or "none" (plaintext on the wire); "" not said
    connection_security_policy: str = ""
    source_identity: str = ""  # SPIFFE ids: from certificates (hbone) or the mesh model (local)
    destination_identity: str = ""
    started: float = field(default_factory=time.time)
    down: Pipe | None = None
    up: Pipe | None = None

    def as_dict(self) -> dict[str, object]:
        return {
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
            "age_seconds": round(time.time() - self.started, 3),
            "bytes_from_downstream": self.down.received if self.down else 0,
            "bytes_from_upstream": self.up.received if self.up else 0,
        }


class ConnectionTable:
    def __init__(self) -> None:
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

    def failed(self, conn: Connection, reason: str) -> None:
        if self.in_flight.pop(conn.id, None) is not None:
            self.totals[(conn.direction, reason)] += 1

    def established(self, conn: Connection) -> None:
        self.totals[(conn.direction, "ok")] += 1
        self.by_destination[(conn.direction, conn.destination)] += 1

    def closed(self, conn: Connection) -> None:
        if self.in_flight.pop(conn.id, None) is not None:
            self.bytes[f"{conn.direction}_from_downstream"] += conn.down.received if conn.down else 0
            self.bytes[f"{conn.direction}_from_upstream"] += conn.up.received if conn.up else 0

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
