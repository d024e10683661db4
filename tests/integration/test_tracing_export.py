"""Connection spans over real OTLP/gRPC on loopback: what a collector receives, and a collector
that is down or silent never holding up the caller nor growing its memory."""

from __future__ import annotations

import socket
import time
import tracemalloc
from typing import Iterator

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from otlp import Receiver  # tests/: the OTLP trace receiver

from nodemesh.agent.proxy.tracecontext import new_ids  # noqa: E402
from nodemesh.agent.telemetry.tracing import (  # noqa: E402
    MAX_QUEUE,
    SERVICE_NAME,
    ConnectionSpan,
    SpanExporter,
)

NODE = "node-a"


def connection(kind: str = "source", parent: int = 0, error: str = "", trace_id: int = 0,
               span_id: int = 0) -> ConnectionSpan:
    new_trace, new_span = new_ids()
    start = time.time()
    return ConnectionSpan(trace_id or new_trace, span_id or new_span, parent, kind,  # type: ignore[arg-type]
                          f"{'outbound' if kind == 'source' else 'inbound'} shop/catalog", start, start + 0.25,
                          {"destination_service": "catalog.shop.svc.cluster.local", "bytes_sent": 1234},
                          error)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


@pytest.fixture
def refusing_endpoint() -> Iterator[str]:
    """An address that refuses connections: a port bound, so no one else takes it, but not listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """An address that accepts TCP (the kernel's backlog) and never says a word: a hung collector."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"127.0.0.1:{sock.getsockname()[1]}"


def test_both_agents_spans_arrive_as_one_trace_parent_and_child(receiver: Receiver) -> None:
    exporter = SpanExporter(receiver.endpoint, NODE)
    source = connection("source")
    destination = connection("destination", parent=source.span_id, trace_id=source.trace_id)
    exporter.export(source)
    exporter.export(destination)
    exporter.close()  # flushes

    by_kind = {received.span.kind: received for received in receiver.wait_for_spans(2)}
    client, server = by_kind[Span.SPAN_KIND_CLIENT], by_kind[Span.SPAN_KIND_SERVER]
    assert client.span.trace_id == server.span.trace_id == source.trace_id.to_bytes(16, "big")
    assert client.span.span_id == source.span_id.to_bytes(8, "big")
    assert client.span.parent_span_id == b""  # the root
    assert server.span.span_id == destination.span_id.to_bytes(8, "big")
    assert server.span.parent_span_id == client.span.span_id
    assert server.span.flags & 0x200, "a parent from the wire is marked remote"
    assert client.span.name == "outbound shop/catalog" and server.span.name == "inbound shop/catalog"
    assert client.span.start_time_unix_nano == int(source.start * 1e9)
    assert client.span.end_time_unix_nano - client.span.start_time_unix_nano == pytest.approx(0.25e9, abs=1e3)
    assert client.attributes == {"destination_service": "catalog.shop.svc.cluster.local", "bytes_sent": 1234}
    assert client.span.status.code == Status.STATUS_CODE_UNSET
    assert client.resource["service.name"] == SERVICE_NAME
    assert client.resource["host.name"] == client.resource["k8s.node.name"] == NODE
    assert client.scope == "nodemesh.agent.telemetry.tracing"


def test_a_failed_connection_is_an_error_span_with_its_reason(receiver: Receiver) -> None:
    exporter = SpanExporter(receiver.endpoint, NODE)
    exporter.export(connection(error="upstream connect timeout"))
    exporter.close()
    [received] = receiver.wait_for_spans(1)
    assert received.span.status.code == Status.STATUS_CODE_ERROR
    assert received.span.status.message == "upstream connect timeout"


def test_spans_go_out_while_the_exporter_runs_not_only_at_close(receiver: Receiver) -> None:
    exporter = SpanExporter(receiver.endpoint, NODE)
    try:
        exporter.export(connection())
        receiver.wait_for_spans(1)  # within the processor's schedule delay (5 s)
    finally:
        exporter.close()


@pytest.mark.parametrize("endpoint", ["refusing_endpoint", "silent_endpoint"])
def test_a_collector_that_is_down_never_holds_up_export_or_close(endpoint: str,
                                                                  request: pytest.FixtureRequest) -> None:
    exporter = SpanExporter(request.getfixturevalue(endpoint), NODE)
    span = connection()
    slowest = 0.0
    for _ in range(3 * MAX_QUEUE):  # past the queue's bound: the oldest are dropped, nothing waits
        began = time.perf_counter()
        exporter.export(span)
        slowest = max(slowest, time.perf_counter() - began)
    # An export() that waited on the collector would take at least the OTLP exporter's first
    # retry backoff (0.8 s at least) or its timeout (EXPORT_TIMEOUT); below that, only the interpreter's own
    # pauses: the exporter thread encodes a full batch (512 spans, ~25 ms) holding the GIL, and on
    # a loaded 2-core VM the process may wait for a CPU too (a 50 ms bound once failed at 59 ms).
    assert slowest < 0.5, f"an export() took {slowest * 1e3:.1f} ms"
    began = time.monotonic()
    exporter.close(timeout=1.0)
    assert time.monotonic() - began < 1.5


def test_a_full_queue_drops_spans_rather_than_growing(refusing_endpoint: str) -> None:
    exporter = SpanExporter(refusing_endpoint, NODE)
    span = connection()
    try:
        tracemalloc.start()
        for _ in range(2 * MAX_QUEUE):  # the queue is full from here on
            exporter.export(span)
        full, _ = tracemalloc.get_traced_memory()
        for _ in range(10 * MAX_QUEUE):
            exporter.export(span)
        later, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        exporter.close(timeout=0.5)
    assert later - full < (full / 2), f"{full} bytes with a full queue, {later} after ten times as many more"
