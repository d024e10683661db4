"""Where a steered connection goes: service VIP -> one endpoint (round robin), pod IP -> that pod.

Sans-IO: reads the agent's current ``View`` and returns a ``Target``; the proxy does the I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from nodemesh.agent.proxy.conntrack import PASSTHROUGH
from nodemesh.agent.state.store import View
from nodemesh.model import Workload


class NoRoute(Exception):
    """The destination is known to the mesh but cannot be served (no such port, no endpoint)."""


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    workload: Workload | None  # None: an address the mesh does not know, passed through
    service: str = ""  # "namespace/name" when reached through a service VIP

    @property
    def meshed(self) -> bool:
        """Reached through the destination pod's agent (the hop), rather than directly."""
        return self.workload is not None and self.workload.meshed

    @property
    def name(self) -> str:
        """The workload, or PASSTHROUGH: never an outside address (the table's keys stay bounded)."""
        return self.workload.ref if self.workload else PASSTHROUGH


class Router:
    def __init__(self) -> None:
        self._next: dict[str, int] = {}

    def route(self, view: View, host: str, port: int) -> Target:
        service = view.by_vip.get(host)
        if service is not None:
            target_port = service.target_port(port)
            if target_port is None:
                raise NoRoute(f"service {service.key} has no port {port}")
            endpoints = view.endpoints(service)
            if not endpoints:
                raise NoRoute(f"service {service.key} has no endpoints")
            n = self._next.get(service.key, 0)
            self._next[service.key] = n + 1
            chosen = endpoints[n % len(endpoints)]
            return Target(chosen.ip, target_port, chosen, service.key)
        workload = view.by_ip.get(host)
        # An address unknown to the view (the programs' map and the view differ for an
        # instant during an update) goes where the client asked: never worse than no mesh.
        return Target(host, port, workload)
