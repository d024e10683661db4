"""The agent's view of the mesh: applies the controller's versioned snapshots and deltas.

Sans-IO: ``apply_update`` takes the current view and a ``ConfigUpdate`` message and returns
the next view, or raises ``Rejected``: the caller keeps the last good view and serves with it. Lookups used per connection (by IP, by VIP) are plain dicts rebuilt
once per version, never per connection.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nodemesh.api import mesh_pb2 as pb
from nodemesh.api.convert import node_from_pb, policy_from_pb, service_from_pb, workload_from_pb
from nodemesh.authz.policy import AuthorizationPolicy
from nodemesh.model import MeshModel, Node, Service, Workload


class Rejected(ValueError):
    """An update the agent refuses; the message is sent back to the controller as the reason."""


@dataclass(frozen=True)
class View:
    """One applied version, with the indexes the proxy needs."""

    version: int
    model: MeshModel
    trust_bundle: bytes = b""  # PEM roots workload certificates chain to
    by_ip: dict[str, Workload] = field(default_factory=dict)
    by_vip: dict[str, Service] = field(default_factory=dict)
    services_of: dict[str, tuple[str, ...]] = field(default_factory=dict)  # workload uid -> its services

    @classmethod
    def build(cls, version: int, model: MeshModel, trust_bundle: bytes = b"") -> "View":
        by_ip: dict[str, Workload] = {}
        for w in model.workloads.values():
            if not w.ip:
                continue
            other = by_ip.get(w.ip)
            if other is not None:
                raise Rejected(f"workloads {other.ref} and {w.ref} both have IP {w.ip}")
            by_ip[w.ip] = w
        by_vip: dict[str, Service] = {}
        for s in model.services.values():
            if not s.vip:
                continue
            other_s = by_vip.get(s.vip)
            if other_s is not None:
                raise Rejected(f"services {other_s.key} and {s.key} both have VIP {s.vip}")
            if s.vip in by_ip:
                raise Rejected(f"service {s.key} VIP {s.vip} is also the IP of pod {by_ip[s.vip].ref}")
            by_vip[s.vip] = s
        services_of: dict[str, list[str]] = {}
        for s in model.services.values():
            for uid in s.endpoints:
                services_of.setdefault(uid, []).append(s.key)
        return cls(version=version, model=model, trust_bundle=trust_bundle, by_ip=by_ip, by_vip=by_vip,
                   services_of={uid: tuple(keys) for uid, keys in services_of.items()})

    def inbound_service(self, workload: Workload, claimed: str | None) -> str:
        """The service a connection into ``workload`` was made to, for telemetry.

        ``claimed`` is what the client's agent said (None: nothing said, e.g. plaintext): kept
        when the workload is one of that service's endpoints ("" means the client dialled the
        pod itself), so that both agents report the same service; with nothing said, the
        workload's only service if it has exactly one. "" when unknown.
        """
        services = self.services_of.get(workload.uid, ())
        if claimed is not None:
            return claimed if claimed in services else ""
        return services[0] if len(services) == 1 else ""

    def endpoints(self, service: Service) -> list[Workload]:
        """The service's endpoints that this agent knows, in the controller's order."""
        out = []
        for uid in service.endpoints:
            w = self.model.workloads.get(uid)
            if w is not None and w.ip:
                out.append(w)
        return out

    def local_meshed(self, node: str) -> list[Workload]:
        return [w for w in self.model.workloads.values() if w.node == node and w.meshed and w.ip]

    def mesh_destinations(self) -> dict[str, str]:
        """IPs whose connections the programs steer: service VIPs and meshed pod IPs."""
        out = {s.vip: "service" for s in self.model.services.values() if s.vip}
        out.update({w.ip: "pod" for w in self.model.workloads.values() if w.meshed and w.ip})
        return out


def apply_update(current: View | None, update: pb.ConfigUpdate) -> View:
    """The view after ``update``; raises ``Rejected`` (and changes nothing) if it can't apply."""
    if update.snapshot:
        workloads: dict[str, Workload] = {}
        services: dict[str, Service] = {}
        nodes: dict[str, Node] = {}
        policies: dict[str, AuthorizationPolicy] = {}
    else:
        if current is None:
            raise Rejected(f"delta version {update.version} arrived before any snapshot")
        if update.version <= current.version:
            raise Rejected(f"version {update.version} is not newer than applied {current.version}")
        workloads = dict(current.model.workloads)
        services = dict(current.model.services)
        nodes = dict(current.model.nodes)
        policies = dict(current.model.policies)
    for uid in update.removed_workloads:
        workloads.pop(uid, None)
    for key in update.removed_services:
        services.pop(key, None)
    for name in update.removed_nodes:
        nodes.pop(name, None)
    for key in update.removed_policies:
        policies.pop(key, None)
    for m in update.workloads:
        if not m.uid:
            raise Rejected(f"workload {m.namespace}/{m.name} has no uid")
        workloads[m.uid] = workload_from_pb(m)
    for m in update.services:
        s = service_from_pb(m)
        services[s.key] = s
    for m in update.nodes:
        nodes[m.name] = node_from_pb(m)
    for m in update.policies:
        p = policy_from_pb(m)
        policies[p.key] = p
    bundle = update.trust_bundle_pem or (current.trust_bundle if current and not update.snapshot else b"")
    return View.build(update.version, MeshModel(workloads=workloads, services=services, nodes=nodes,
                                                policies=policies), bundle)
