"""The controller's metrics (docs/telemetry.md, "Controller"), made when Prometheus scrapes.

The stream and the CA only count (``StreamStats``, ``CaStats``); this collector names and shapes
their counts on the metrics endpoint's thread. What it reads without a lock is one read each:
the number of open streams and the current version.
"""

from __future__ import annotations

from typing import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from nodemesh.controller.ca.service import CaServicer
from nodemesh.controller.stream.service import ConfigServicer
from nodemesh.metrics import Family, new_registry

AGENTS = Family(GaugeMetricFamily, "nodemesh_controller_connected_agents", "Agents with a config stream open.")
VERSION = Family(GaugeMetricFamily, "nodemesh_controller_config_version", "The version of the mesh model being served.")
PUSHES = Family(CounterMetricFamily, "nodemesh_controller_pushes_total", "Config updates sent to agents.", ("type",))
PUSH_SECONDS = Family(HistogramMetricFamily, "nodemesh_controller_push_duration_seconds",
                      "From when an agent should have a model version (its making, or the agent's connecting "
                      "if later) to the agent's answer.")
ACKS = Family(CounterMetricFamily, "nodemesh_controller_acks_total", "Agents' answers to config updates.", ("result",))
SIGNED = Family(CounterMetricFamily, "nodemesh_controller_certificates_signed_total",
                "Workload certificates the CA issued.")
REFUSALS = Family(CounterMetricFamily, "nodemesh_controller_certificate_refusals_total",
                  "Certificate requests the CA refused.", ("reason",))
REJECTED = Family(GaugeMetricFamily, "nodemesh_controller_rejected_objects",
                  "Objects left out of the mesh model for their problems (the log names them).", ("kind",))


class ControllerCollector(Collector):
    def __init__(self, config: ConfigServicer, ca: CaServicer,
                 rejected: Callable[[], Mapping[str, int]]) -> None:
        self.config = config
        self.ca = ca
        self.rejected = rejected

    def collect(self) -> Iterator[Metric]:
        stream, ca = self.config.stats.read(), self.ca.stats.read()
        yield AGENTS.of({(): len(self.config.sessions)})
        yield VERSION.of({(): self.config.feed.current.version})
        yield PUSHES.of({(kind,): n for kind, n in stream.pushes.items()})
        yield PUSH_SECONDS.histogram([((), stream.push_seconds)])
        yield ACKS.of({(result,): n for result, n in stream.acks.items()})
        yield SIGNED.of({(): ca.signed})
        yield REFUSALS.of({(reason,): n for reason, n in ca.refusals.items()})
        yield REJECTED.of({(kind,): n for kind, n in self.rejected().items()})


def controller_registry(config: ConfigServicer, ca: CaServicer,
                        rejected: Callable[[], Mapping[str, int]] = dict) -> CollectorRegistry:
    """Everything ``/metrics`` shows: the process, ``istio_build`` and the collector above;
    ``rejected`` says how many objects the source leaves out now, by kind."""
    registry = new_registry("controller")
    registry.register(ControllerCollector(config, ca, rejected))
    return registry
