"""The controller's metrics (docs/telemetry.md, "Controller"), made when Prometheus scrapes.

The stream and the CA only count (``StreamStats``, ``CaStats``); this collector names and shapes
their counts on the metrics endpoint's thread. What it reads without a lock is one read each:
the number of open streams and the current version.
"""

from __future__ import annotations

from typing import Iterator, Mapping

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from nodemesh.controller.ca.service import CaServicer
from nodemesh.controller.stream.service import ConfigServicer
from nodemesh.metrics import histogram_family, new_registry


def _counts(name: str, documentation: str, label: str, counts: Mapping[str, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=[label])
    for value, count in counts.items():
        family.add_metric([value], count)
    return family


class ControllerCollector(Collector):
    def __init__(self, config: ConfigServicer, ca: CaServicer) -> None:
        self.config = config
        self.ca = ca

    def collect(self) -> Iterator[Metric]:
        stream, ca = self.config.stats.read(), self.ca.stats.read()
        yield GaugeMetricFamily("nodemesh_controller_connected_agents",
                                "Agents with a config stream open.", value=len(self.config.sessions))
        yield GaugeMetricFamily("nodemesh_controller_config_version",
                                "The version of the mesh model being served.",
                                value=self.config.feed.current.version)
        yield _counts("nodemesh_controller_pushes_total", "Config updates sent to agents.",
                      "type", stream.pushes)
        yield histogram_family("nodemesh_controller_push_duration_seconds",
                               "From when an agent should have a model version (its making, or the "
                               "agent's connecting if later) to the agent's answer.",
                               (), [((), stream.push_seconds)])
        yield _counts("nodemesh_controller_acks_total", "Agents' answers to config updates.",
                      "result", stream.acks)
        yield CounterMetricFamily("nodemesh_controller_certificates_signed_total",
                                  "Workload certificates the CA issued.", value=ca.signed)
        yield _counts("nodemesh_controller_certificate_refusals_total",
                      "Certificate requests the CA refused.", "reason", ca.refusals)


def controller_registry(config: ConfigServicer, ca: CaServicer) -> CollectorRegistry:
    """Everything ``/metrics`` shows: the process, ``istio_build`` and the collector above."""
    registry = new_registry("controller")
    registry.register(ControllerCollector(config, ca))
    return registry
