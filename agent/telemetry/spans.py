"""Connections as spans: the connection table's observer that hands ended connections to tracing.

Each agent exports its side of a connection: the source agent a CLIENT span (the trace's root,
whose id it sent in ``traceparent``), the destination agent a SERVER span, its child. The
same-node path has one agent for both sides, so it exports both spans.
"""

from __future__ import annotations

from nodemesh.agent.proxy.conntrack import Connection
from nodemesh.agent.proxy.tracecontext import new_ids
from nodemesh.agent.proxy.traffic import REPORTER, response_flag
from nodemesh.agent.telemetry.tracing import ConnectionSpan, SpanExporter


def attributes(conn: Connection) -> dict[str, str | int]:
    """What a span says about its connection (a few: each costs the exporter's thread ~2 us)."""
    out: dict[str, str | int] = {
        "nodemesh.direction": conn.direction, "nodemesh.via": conn.via,
        "source.workload": conn.source_workload.ref if conn.source_workload else conn.source,
        "destination.workload": conn.destination,
        "server.address": conn.upstream or conn.original_dst,
        "nodemesh.bytes_received": conn.received, "nodemesh.bytes_sent": conn.sent,
        "nodemesh.connection_security_policy": conn.connection_security_policy or "unknown",
    }
    if conn.source_identity:
        out["source.principal"] = conn.source_identity
    if conn.destination_identity:
        out["destination.principal"] = conn.destination_identity
    if conn.service:
        out["destination.service"] = conn.service
    if conn.outcome != "ok":
        out["nodemesh.response_flags"] = response_flag(conn.outcome)
    return out


def spans_of(conn: Connection) -> list[ConnectionSpan]:
    error = "" if conn.outcome == "ok" else f"{conn.outcome}: {conn.failure}"
    name = f"{conn.direction} {conn.service or conn.destination or conn.original_dst}"
    attrs = attributes(conn)
    kind = REPORTER[conn.direction]
    spans = [ConnectionSpan(conn.trace_id, conn.span_id, conn.parent_span_id, kind,  # type: ignore[arg-type]
                            name, conn.started, conn.ended, attrs, error)]
    if conn.via == "local":  # this agent is the destination's too
        spans.append(ConnectionSpan(conn.trace_id, new_ids()[1], conn.span_id, "destination",
                                    f"inbound {conn.service or conn.destination}", conn.started, conn.ended,
                                    attrs, error))
    return spans


class Tracer:
    """Observer of the connection table: each ended connection becomes its spans."""

    def __init__(self, exporter: SpanExporter) -> None:
        self.exporter = exporter

    def __call__(self, conn: Connection) -> None:
        if conn.trace_id:
            for span in spans_of(conn):
                self.exporter.export(span)
