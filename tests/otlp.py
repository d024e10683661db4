"""A real OTLP/gRPC trace receiver for tests: what a collector would get, over loopback.

It implements opentelemetry-proto's ``TraceService`` (the same service a collector serves on
4317), so a test sees the exporter's requests as they travel, decoded by the proto's own
classes rather than by the SDK that sent them. ``Receiver.spans`` flattens what arrived into
one ``Received`` per span, with the resource and scope it came under.
"""

from __future__ import annotations

import threading
from concurrent import futures
from dataclasses import dataclass
from typing import Iterator

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from eventually import eventually  # tests/: the one wait for a condition


def value(any_value: AnyValue) -> object:
    """The Python value of an OTLP attribute value (string, int, bool or double)."""
    return getattr(any_value, any_value.WhichOneof("value"))


@dataclass(frozen=True)
class Received:
    """One span as the receiver got it."""

    resource: dict[str, object]
    scope: str
    span: Span

    @property
    def attributes(self) -> dict[str, object]:
        return {kv.key: value(kv.value) for kv in self.span.attributes}


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP trace receiver on 127.0.0.1 and a free port (``endpoint``); use it as a context manager."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self._server)
        self.endpoint = f"127.0.0.1:{self._server.add_insecure_port('127.0.0.1:0')}"

    def Export(self, request: trace_service_pb2.ExportTraceServiceRequest,  # noqa: N802 (the proto's name)
               context: grpc.ServicerContext) -> trace_service_pb2.ExportTraceServiceResponse:
        with self._lock:
            self._requests.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()

    def spans(self) -> list[Received]:
        """Every span received so far, in arrival order."""
        with self._lock:
            requests = list(self._requests)
        return list(self._flatten(requests))

    @staticmethod
    def _flatten(requests: list[trace_service_pb2.ExportTraceServiceRequest]) -> Iterator[Received]:
        for request in requests:
            for resource_spans in request.resource_spans:
                resource = {kv.key: value(kv.value) for kv in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        yield Received(resource, scope_spans.scope.name, span)

    def wait_for_spans(self, count: int, timeout: float = 15.0) -> list[Received]:
        """The spans once at least ``count`` arrived; AssertionError saying how many did otherwise."""
        def enough() -> list[Received]:
            spans = self.spans()
            assert len(spans) >= count, f"{len(spans)} of {count} spans received"
            return spans

        return eventually(enough, timeout=timeout, what=f"{count} spans at {self.endpoint}")

    def __enter__(self) -> Receiver:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop(grace=None).wait()
