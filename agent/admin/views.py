"""What the agent's HTTP paths show: admin views (localhost only) and readiness.

Each view reads the agent's parts on the proxy's loop (``http`` runs it there), so what it
returns is one consistent moment.
  GET /config_dump   workloads, services, nodes, enrolled pods, controller link, BPF maps and
                     the pods whose plaintext is captured into this agent's listeners
  GET /connections   connections in flight and totals since start
  GET /tunnels       live HBONE connections, both ways
  GET /certs         workload certificates and their renewal
  GET /policies      per meshed workload of this node, the authorization policies that apply
  GET /authz/check?from=NS/SA&to=NS/WORKLOAD:PORT&from_ip=IP
                     the decision for such a connection, explained policy by policy, rule by rule
  GET /healthz/ready 200 when ready, 503 with the reason otherwise (readiness port)
  GET /metrics       Prometheus metrics (metrics port; also at Istio's /stats/prometheus):
                     collected on the loop too, so counters and gauges agree with each other
"""

from __future__ import annotations

from dataclasses import dataclass, fields, is_dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Callable, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from nodemesh.agent.admin import authz
from nodemesh.agent.admin.http import Routes, Text, WithQuery
from nodemesh.agent.controlplane.subscription import ConfigClient
from nodemesh.agent.ebpf.capture import PlaintextCapture
from nodemesh.agent.ebpf.steering import Steering
from nodemesh.agent.identity.manager import CertManager
from nodemesh.agent.inpod.enroller import Enroller
from nodemesh.agent.proxy.node import NodeProxy
from nodemesh.agent.state.store import View
from nodemesh.agent.supervision import Health

Response = tuple[int, object]


@dataclass
class AgentParts:
    """The running agent's parts the views read (never write)."""

    node: str
    cgroup: Path
    view: Callable[[], View | None]
    steering: Steering
    capture: PlaintextCapture
    enroller: Enroller
    certs: CertManager
    proxy: NodeProxy
    config: ConfigClient
    health: Health
    registry: CollectorRegistry | None  # None: metrics are off


class AdminViews:
    def __init__(self, parts: AgentParts) -> None:
        self.parts = parts

    def admin_routes(self) -> Routes:
        return {"/config_dump": self.config_dump, "/connections": self.connections,
                "/tunnels": self.tunnels, "/certs": self.certs, "/policies": self.policies,
                "/authz/check": WithQuery(self.authz_check)}

    def readiness_routes(self) -> Routes:
        return {"/healthz/ready": self.ready}

    def metrics_routes(self) -> Routes:
        """Empty when metrics are off."""
        if self.parts.registry is None:
            return {}
        return {"/metrics": self.metrics, "/stats/prometheus": self.metrics}

    def readiness(self) -> dict[str, object]:
        """Whether the agent is ready (``ready``), and if not, why."""
        p = self.parts
        view = p.view()
        if view is None:
            return {"ready": False, "reason": "no config from the controller yet"}
        problems = p.health.problems()
        if problems:
            return {"ready": False, "reason": "background work is failing", "failing": problems}
        if p.enroller.pending:
            return {"ready": False, "reason": "pods not enrolled", "pending": p.enroller.pending}
        uncertified = [c.workload.ref for c in p.certs.certs.values() if not p.certs.has_valid(c.workload.uid)]
        if uncertified:
            return {"ready": False, "reason": "no workload certificate yet", "pods": uncertified}
        return {"ready": True, "version": view.version}

    async def ready(self) -> Response:
        body = self.readiness()
        return (HTTPStatus.OK if body["ready"] else HTTPStatus.SERVICE_UNAVAILABLE), body

    async def metrics(self) -> Response:
        assert self.parts.registry is not None
        return HTTPStatus.OK, Text(generate_latest(self.parts.registry), CONTENT_TYPE_LATEST)

    async def config_dump(self) -> Response:
        p = self.parts
        view = p.view()
        model = view.model if view else None
        return HTTPStatus.OK, {
            "node": p.node,
            "version": view.version if view else 0,
            "controller": p.config.status(),
            "workloads": [_json(w) for w in model.workloads.values()] if model else [],
            "services": [_json(s) for s in model.services.values()] if model else [],
            "policies": [_json(p) for p in model.policies.values()] if model else [],
            "nodes": [vars(n) for n in model.nodes.values()] if model else [],
            "bpf": {"cgroup": str(p.cgroup), "maps": p.steering.map_usage(),
                    "captured": p.capture.attached()},
            "failing": p.health.problems(),
            **p.enroller.status(),
        }

    async def connections(self) -> Response:
        return HTTPStatus.OK, self.parts.proxy.core.table.snapshot()

    async def tunnels(self) -> Response:
        return HTTPStatus.OK, self.parts.proxy.tunnels()

    async def certs(self) -> Response:
        return HTTPStatus.OK, self.parts.certs.status()

    async def policies(self) -> Response:
        p = self.parts
        return HTTPStatus.OK, authz.enforced(p.node, p.view(), p.proxy.core.authorizer.policies())

    async def authz_check(self, params: dict[str, str]) -> Response:
        p = self.parts
        return authz.check(p.node, p.view(), p.proxy.core.authorizer.policies(), params)


def _json(value: object) -> object:
    """A model value (dataclasses of tuples and label mappings) as JSON values."""
    if is_dataclass(value):
        return {f.name: _json(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, tuple):
        return [_json(v) for v in value]
    if isinstance(value, Mapping):
        return dict(value)
    return value
