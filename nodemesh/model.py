"""The mesh model: what the controller knows and what agents receive, as plain values.

The controller builds these from Kubernetes objects; ``nodemesh.api.convert`` turns them into
the wire messages and back, so both sides speak of the same types.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from nodemesh.authz.policy import AuthorizationPolicy

MESH_LABEL = "nodemesh.io/mesh"
MESH_ENABLED = "enabled"
MTLS_MODE_LABEL = "nodemesh.io/mtls-mode"
ZONE_LABEL = "topology.kubernetes.io/zone"
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


# Load balancers a Service can choose (TrafficPolicy ``spec.loadBalancer``).
ROUND_ROBIN = "RoundRobin"
LEAST_CONNECTIONS = "LeastConnections"
# Linkerd's choice: of two endpoints picked at random, the one with the lower moving average of
# connect latency times active connections.
POWER_OF_TWO_CHOICES = "PowerOfTwoChoices"
LOAD_BALANCERS = (ROUND_ROBIN, LEAST_CONNECTIONS, POWER_OF_TWO_CHOICES)


@dataclass(frozen=True)
class OutlierDetection:
    """Eject an endpoint after ``consecutive_failures`` connect failures in a row, for
    ``base_ejection`` seconds times 2^(ejections before), at most ``max_ejection``; never more
    than ``max_ejected_percent`` of the service's endpoints at once. 0 failures: off."""

    consecutive_failures: int = 5
    base_ejection: float = 10.0
    max_ejection: float = 300.0
    max_ejected_percent: int = 50


@dataclass(frozen=True)
class TrafficPolicy:
    """How the source's agent treats new connections to a Service (our TrafficPolicy resource,
    and the Service's own ``spec.trafficDistribution``). Zero means "not set" where said."""

    load_balancer: str = ROUND_ROBIN
    # Same node, then same zone (the Node's topology.kubernetes.io/zone), then any; falling over
    # to the next tier when the closer one has no healthy endpoint.
    prefer_close: bool = False
    connect_timeout: float = 0.0  # seconds; 0: the agent's --connect-timeout
    # Further endpoints to try when a connect fails before any byte was sent.
    connect_retries: int = 1
    outlier_detection: OutlierDetection = OutlierDetection()
    max_connections: int = 0  # concurrent, per agent; 0: unlimited
    max_pending: int = 0  # connects in progress, per agent; 0: unlimited
    idle_timeout: float = 0.0  # seconds without a byte either way; 0: never
    # New connections per second from one source workload (token bucket of ``rate_burst``); 0: off
    rate_limit: float = 0.0
    rate_burst: int = 0

    def bucket_size(self) -> int:
        """The rate limit's bucket: ``rate_burst``, else one second's worth (at least one)."""
        return self.rate_burst or max(1, math.ceil(self.rate_limit))


DEFAULT_TRAFFIC = TrafficPolicy()


@dataclass(frozen=True)
class Backend:
    """One weighted backend of a split (a TCPRoute's ``backendRefs``)."""

    service: str  # "namespace/name"
    port: int  # the backend service's port to use
    weight: int
    parent_port: int = 0  # the port of the split service it applies to; 0: every port


@dataclass(frozen=True)
class Service:
    name: str
    namespace: str
    vip: str
    ports: tuple[ServicePort, ...]
    endpoints: tuple[str, ...]  # workload uids, stable order
    traffic: TrafficPolicy = DEFAULT_TRAFFIC
    # A TCPRoute's split: connections to this service go to these backends by weight (each then
    # balanced among its own endpoints); empty: to this service's endpoints.
    backends: tuple[Backend, ...] = ()

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
    zone: str = ""  # the Node object's topology.kubernetes.io/zone label, "" if none

    @property
    def key(self) -> str:
        return self.name


@dataclass(frozen=True)
class MeshModel:
    """One consistent version of the whole mesh."""

    workloads: Mapping[str, Workload]  # by uid
    services: Mapping[str, Service]  # by namespace/name
    nodes: Mapping[str, Node]  # by name
    policies: Mapping[str, AuthorizationPolicy] = field(default_factory=dict)  # by namespace/name

    @classmethod
    def empty(cls) -> "MeshModel":
        return cls(workloads={}, services={}, nodes={})
