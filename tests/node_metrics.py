"""Scraping the agent's node metrics in tests, as Prometheus would: rendered by prometheus-client,
parsed back by its parser, so a test reads only what a scrape really carries."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from nodemesh.agent.controlplane.channel import ControllerAccess
from nodemesh.agent.controlplane.subscription import ConfigClient
from nodemesh.api import mesh_pb2 as pb


class Scrape:
    """One scrape's samples, by name and labels."""

    def __init__(self, collector: Collector) -> None:
        registry = CollectorRegistry()
        registry.register(collector)
        self.text = generate_latest(registry).decode()
        self.families = {family.name: family for family in text_string_to_metric_families(self.text)}
        self.samples = [s for family in self.families.values() for s in family.samples]

    def value(self, name: str, **labels: str) -> float | None:
        """The sample ``name`` with exactly ``labels``; None when the scrape has none."""
        found = [s.value for s in self.samples if s.name == name and s.labels == labels]
        assert len(found) <= 1, f"{name}{labels} appears {len(found)} times"
        return found[0] if found else None

    def labels(self, name: str) -> list[dict[str, str]]:
        """The label sets of every sample ``name``."""
        return [s.labels for s in self.samples if s.name == name]


async def _never(update: pb.ConfigUpdate) -> str | None:
    raise AssertionError("an idle config client applies nothing")


def idle_config(node: str) -> ConfigClient:
    """A real config client that is never started: a test sets what its thread would count."""
    return ConfigClient(ControllerAccess("127.0.0.1:1", b"", lambda: ""), node, _never, asyncio.get_running_loop())
