"""What each node's agent needs from the model, what changed in it, and the update messages.

Pure functions (sans-IO): the stream handling in ``service`` only moves their results.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, TypeVar

from nodemesh.api import mesh_pb2 as pb
from nodemesh.api.convert import node_to_pb, policy_to_pb, service_to_pb, workload_to_pb
from nodemesh.authz.policy import AuthorizationPolicy
from nodemesh.model import MeshModel, Node, Service, Workload

T = TypeVar("T")


def node_view(model: MeshModel, node: str) -> MeshModel:
    """The part of the model that the agent of ``node`` needs.

    Workloads: every meshed one (it may be a destination anywhere), every one on this node (the
    agent enrols or at least knows its local pods) and every service endpoint (a meshed client
    may reach an unmeshed backend through a VIP). All services and all nodes: they are few, and
    any local client may use any of them. All policies: they are few too, and which apply to a
    workload is the agent's to work out (from labels it has anyway).
    """
    endpoints = {uid for svc in model.services.values() for uid in svc.endpoints}
    workloads = {uid: w for uid, w in model.workloads.items()
                 if w.meshed or w.node == node or uid in endpoints}
    return MeshModel(workloads=workloads, services=dict(model.services), nodes=dict(model.nodes),
                     policies=dict(model.policies))


@dataclass(frozen=True)
class Delta:
    """Upserts (new or changed items) and removals (keys), per kind, in key order."""

    workloads: tuple[Workload, ...] = ()
    removed_workloads: tuple[str, ...] = ()
    services: tuple[Service, ...] = ()
    removed_services: tuple[str, ...] = ()
    nodes: tuple[Node, ...] = ()
    removed_nodes: tuple[str, ...] = ()
    policies: tuple[AuthorizationPolicy, ...] = ()
    removed_policies: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return any((self.workloads, self.removed_workloads, self.services, self.removed_services,
                    self.nodes, self.removed_nodes, self.policies, self.removed_policies))


def _diff_items(old: Mapping[str, T], new: Mapping[str, T]) -> tuple[tuple[T, ...], tuple[str, ...]]:
    changed = tuple(new[key] for key in sorted(new) if old.get(key) != new[key])
    removed = tuple(sorted(key for key in old if key not in new))
    return changed, removed


def diff(old: MeshModel, new: MeshModel) -> Delta:
    """What turns ``old`` into ``new``; from ``MeshModel.empty()`` it is the whole of ``new``."""
    workloads, removed_workloads = _diff_items(old.workloads, new.workloads)
    services, removed_services = _diff_items(old.services, new.services)
    nodes, removed_nodes = _diff_items(old.nodes, new.nodes)
    policies, removed_policies = _diff_items(old.policies, new.policies)
    return Delta(workloads, removed_workloads, services, removed_services, nodes, removed_nodes,
                 policies, removed_policies)


def to_update(delta: Delta, version: int, snapshot: bool, trust_bundle: bytes = b"") -> pb.ConfigUpdate:
    """``trust_bundle`` empty: unchanged (in a delta), so a snapshot must always carry it."""
    return pb.ConfigUpdate(
        version=version,
        snapshot=snapshot,
        trust_bundle_pem=trust_bundle,
        workloads=[workload_to_pb(w) for w in delta.workloads],
        removed_workloads=delta.removed_workloads,
        services=[service_to_pb(s) for s in delta.services],
        removed_services=delta.removed_services,
        nodes=[node_to_pb(n) for n in delta.nodes],
        removed_nodes=delta.removed_nodes,
        policies=[policy_to_pb(p) for p in delta.policies],
        removed_policies=delta.removed_policies,
    )
