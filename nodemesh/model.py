"""The mesh model: what the controller knows and what agents receive, as plain values.

The controller builds these from Kubernetes objects; ``nodemesh.api.convert`` turns them into
the wire messages and back, so both sides speak of the same types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

MESH_LABEL = "nodemesh.io/mesh"
MESH_ENABLED = "enabled"
MTLS_MODE_LABEL = "nodemesh.io/mtls-mode"
STRICT = "STRICT"
PERMISSIVE = "PERMISSIVE"


def frozen_labels(labels: Mapping[str, str] | None) -> Mapping[str, str]:
    """A read-only copy, so that model values can be shared between tasks without copies."""
    return MappingProxyType(dict(labels or {}))


@dataclass(frozen=True)
class Workload:
    """A pod."""

    uid: str
    name: str
    namespace: str
    service_account: str
    node: str
    ip: str
    labels: Mapping[str, str] = field(default_factory=lambda: frozen_labels(None))
    meshed: bool = False
    identity: str = ""  # SPIFFE id (nodemesh.identity), set for every workload
    mtls_mode: str = PERMISSIVE
    # Telemetry's names for the pod (controller/model/workloads.py derives them as Istio does);
    # "" in values made without them, which telemetry shows as "unknown".
    workload_name: str = ""
    canonical_service: str = ""
    canonical_revision: str = ""

    @property
    def key(self) -> str:
        return self.uid

    @property
    def ref(self) -> str:
        """``namespace/name``, how users name a pod."""
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class ServicePort:
    name: str
    port: int
    target_port: int


@dataclass(frozen=True)
class Service:
    name: str
    namespace: str
    vip: str
    ports: tuple[ServicePort, ...]
    endpoints: tuple[str, ...]  # workload uids, stable order

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def target_port(self, port: int) -> int | None:
        """The endpoint port for a connection to ``vip:port``, None if the service has no such port."""
        for p in self.ports:
            if p.port == port:
                return p.target_port
        return None


@dataclass(frozen=True)
class Node:
    name: str
    ip: str
    pod_cidr: str

    @property
    def key(self) -> str:
        return self.name


@dataclass(frozen=True)
class MeshModel:
    """One consistent version of the whole mesh."""

    workloads: Mapping[str, Workload]  # by uid
    services: Mapping[str, Service]  # by namespace/name
    nodes: Mapping[str, Node]  # by name

    @classmethod
    def empty(cls) -> "MeshModel":
        return cls(workloads={}, services={}, nodes={})
