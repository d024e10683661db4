"""One OTLP span per relayed connection, exported by the OpenTelemetry SDK off the event loop.

The proxy knows a connection's span only when the connection has ended, and its ids are not
ours to draw at that point: the source agent chose them when it sent ``traceparent`` in the
CONNECT request, and the destination's span is the child of the span id it received. So a
span is handed over finished, as a ``ConnectionSpan``, and ``SpanExporter`` builds the SDK's
finished-span record from it (``ReadableSpan``: the type every SDK exporter consumes) with
exactly those ids, and gives it to a ``BatchSpanProcessor``.

Why not the SDK's ``Tracer``: it draws span ids itself (an ``IdGenerator``, with no way to say
"this one"), so carrying the wire's ids through it would take a generator fed through a
side channel, and it would run the sampler, the attribute limits and the span's lock for a
span that is already over. ``ReadableSpan`` takes ids, times, kind, status and attributes as
its constructor's arguments, and ``on_end`` is the processor's public entry for ended spans,
so this uses the SDK's public API only.

Why a ``BatchSpanProcessor``: ``export`` runs on the loop thread and must never wait on the
network. ``on_end`` appends to a bounded deque and returns; the processor's own thread
encodes and sends batches over OTLP/gRPC. When the collector is down or slow, that thread
waits (each batch up to ``EXPORT_TIMEOUT``, retries included), the queue fills, and beyond
``MAX_QUEUE`` spans the oldest are dropped (the SDK logs "Queue full, dropping Span"): memory
stays bounded and the proxy never slows down for its telemetry.
"""

from __future__ import annotations

import ipaddress
import re
import threading
from dataclasses import dataclass
from typing import Literal, Mapping

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from nodemesh import __version__
from nodemesh.errors import UserError

SERVICE_NAME = "nodemesh-agent"
MAX_QUEUE = 2048  # spans waiting for the exporter thread; the SDK's default, stated so it is ours
BATCH = 512  # spans a request at most
SCHEDULE_DELAY_MS = 5000  # a batch goes out when it is full or this long after the last one
EXPORT_TIMEOUT = 10.0  # seconds the exporter thread spends on one batch, retries included

_KINDS = {"source": SpanKind.CLIENT, "destination": SpanKind.SERVER}
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NO_ERROR = Status(StatusCode.UNSET)  # OpenTelemetry's "not an error": OK is for overriding an error
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")


class EndpointError(UserError, ValueError):
    """An OTLP endpoint that is not ``HOST:PORT``; the message gives examples.

    Also a ValueError, so that ``nodemesh.flags.checked_by(check_endpoint)`` makes it click's
    usage error naming the flag.
    """


def check_endpoint(value: str) -> str:
    """``value`` if it is an OTLP/gRPC ``HOST:PORT`` (``[v6]:PORT`` for IPv6); EndpointError if not.

    Only the form is checked, at start: whether a collector answers there may change while the
    agent runs (it is often deployed after the agents), and until one does spans are dropped.
    """
    host, sep, port = value.rpartition(":")
    if not sep or not (_HOST.fullmatch(host) or _is_bracketed_ipv6(host)) \
            or not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        hint = "; give it without a scheme" if "://" in value else ""
        raise EndpointError(f"OTLP endpoint {value!r} is not HOST:PORT (e.g. "
                            f"otel-collector.observability:4317, 10.0.0.5:4317, [fd00::5]:4317){hint}")
    return value


def _is_bracketed_ipv6(host: str) -> bool:
    if not (host.startswith("[") and host.endswith("]")):
        return False
    try:
        ipaddress.IPv6Address(host[1:-1])
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class ConnectionSpan:
    """One connection as one agent saw it, once it has ended."""

    trace_id: int
    span_id: int
    parent_span_id: int  # 0: a root (the source's span); else the source's span id from traceparent
    kind: Literal["source", "destination"]  # Istio's reporter: CLIENT on the source, SERVER on the destination
    name: str  # e.g. "outbound shop/catalog", "inbound shop/catalog"
    start: float  # epoch seconds, time.time()
    end: float
    attributes: Mapping[str, str | int]
    error: str = ""  # why the connection failed; "" if it did not


class SpanExporter:
    """Sends ``ConnectionSpan``s to an OTLP/gRPC collector from a thread of its own.

    The caller exports sampled connections only: every span given here is sent.
    """

    def __init__(self, endpoint: str, node: str, insecure: bool = True) -> None:
        """``endpoint`` is the collector's ``HOST:PORT`` (EndpointError if it is not); ``node`` names
        this agent's node in the spans' resource. ``insecure`` False speaks TLS, trusting the
        system's roots or ``OTEL_EXPORTER_OTLP_CERTIFICATE``."""
        check_endpoint(endpoint)
        self._resource = Resource.create({
            "service.name": SERVICE_NAME,
            "service.version": __version__,
            "host.name": node,
            "k8s.node.name": node,
        })
        self._scope = InstrumentationScope(__name__, __version__)
        self._otlp = OTLPSpanExporter(endpoint=endpoint, insecure=insecure, timeout=EXPORT_TIMEOUT)
        self._processor = BatchSpanProcessor(self._otlp, max_queue_size=MAX_QUEUE,
                                             schedule_delay_millis=SCHEDULE_DELAY_MS,
                                             max_export_batch_size=BATCH)

    def export(self, span: ConnectionSpan) -> None:
        """Queue ``span`` for sending; returns at once, on the loop thread (drops the oldest when full)."""
        context = SpanContext(span.trace_id, span.span_id, is_remote=False, trace_flags=_SAMPLED)
        parent = (SpanContext(span.trace_id, span.parent_span_id, is_remote=True, trace_flags=_SAMPLED)
                  if span.parent_span_id else None)  # a parent is always the peer agent's span
        self._processor.on_end(ReadableSpan(
            name=span.name,
            context=context,
            parent=parent,
            resource=self._resource,
            attributes=dict(span.attributes),  # a copy: the exporter thread reads it later
            kind=_KINDS[span.kind],
            status=Status(StatusCode.ERROR, span.error) if span.error else _NO_ERROR,
            start_time=int(span.start * 1e9),
            end_time=int(span.end * 1e9),
            instrumentation_scope=self._scope,
        ))

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued, then stop; returns within ``timeout`` seconds whatever the collector does.

        The SDK's shutdown flushes, waiting up to 30 s for a collector that does not answer, so
        it runs in a thread of its own; if that is not done by ``timeout``, the OTLP
        exporter is shut down under it (its retry wait ends and its channel closes, so the
        batch in flight fails at once) and what was still queued is lost.
        """
        closing = threading.Thread(target=self._processor.shutdown, name="otlp-close", daemon=True)
        closing.start()
        closing.join(timeout)
        if closing.is_alive():
            self._otlp.shutdown()
