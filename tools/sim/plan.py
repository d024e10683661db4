"""What a simulated cluster consists of: nodes and pods with their addresses and processes.

The plan joins two views of the same YAML: the controller's mesh model (addresses from its IPAM,
which pods are meshed) and the Kubernetes objects (what each container runs). Addresses come
from the controller's own code, with the state directory the controller will use, so the sim
and the controller agree on every IP without talking to each other.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from nodemesh.model import MeshModel
from nodemesh.tools.sim.expand import container_env, expand
from nodemesh.tools.sim.names import SimError

if TYPE_CHECKING:
    from nodemesh.controller.kube.objects import KubeObjects


@dataclass(frozen=True)
class ContainerPlan:
    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)  # what the pod declares, plus POD_* vars


@dataclass(frozen=True)
class PodPlan:
    namespace: str
    name: str
    node: str
    ip: str
    meshed: bool
    containers: tuple[ContainerPlan, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def env(self) -> dict[str, str]:
        """What every process in the pod sees, as the downward API would give it."""
        return {"POD_NAME": self.name, "POD_NAMESPACE": self.namespace, "POD_IP": self.ip,
                "NODE_NAME": self.node}


@dataclass(frozen=True)
class NodePlan:
    name: str
    ip: str  # on the bridge, without prefix length
    pod_cidr: str

    @property
    def gateway(self) -> str:
        """The address pods of this node route through: the first of the node's pod CIDR."""
        return str(next(ipaddress.ip_network(self.pod_cidr).hosts()))


@dataclass(frozen=True)
class ServicePlan:
    """A service as users reach it; the sim routes nothing to its VIP (only the mesh does)."""

    namespace: str
    name: str
    vip: str
    ports: Mapping[int, int]  # port -> target port

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class ClusterPlan:
    nodes: tuple[NodePlan, ...]
    pods: tuple[PodPlan, ...]
    services: tuple[ServicePlan, ...] = ()

    def node(self, name: str) -> NodePlan:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)


def plan_cluster(objects: "KubeObjects", model: MeshModel) -> ClusterPlan:
    """The plan for ``objects``, with the addresses and mesh membership ``model`` gives them."""
    workloads = {(w.namespace, w.name): w for w in model.workloads.values()}
    nodes = tuple(NodePlan(name=n.name, ip=str(ipaddress.ip_interface(n.ip).ip), pod_cidr=n.pod_cidr)
                  for n in sorted(model.nodes.values(), key=lambda n: n.name))
    pods = []
    for pod in objects.pods:
        workload = workloads.get((pod.namespace, pod.name))
        if workload is None:
            raise SimError(f"Pod {pod.ref}: the controller's model has no workload for it")
        plan = PodPlan(namespace=pod.namespace, name=pod.name, node=workload.node, ip=workload.ip,
                       meshed=workload.meshed)
        containers = tuple(_container(plan, c.name, c.command, c.args, c.env) for c in pod.containers)
        pods.append(replace(plan, containers=containers))
    services = tuple(ServicePlan(namespace=s.namespace, name=s.name, vip=s.vip,
                                 ports={p.port: p.target_port for p in s.ports})
                     for s in sorted(model.services.values(), key=lambda s: s.key))
    return ClusterPlan(nodes=nodes, pods=tuple(pods), services=services)


def _container(pod: PodPlan, name: str, command: list[str], args: list[str],
               declared: Mapping[str, str]) -> ContainerPlan:
    if not command:
        raise SimError(f"Pod {pod.ref}: container {name}: command is required in the simulated "
                       "cluster (there are no images, so nothing else says what to run)")
    env = container_env(pod.env, declared)
    return ContainerPlan(name=name, argv=tuple(expand(a, env) for a in [*command, *args]), env=env)


def plan_from_file(path: Path, controller_state_dir: Path) -> ClusterPlan:
    """Parse ``path`` and assign addresses exactly as the controller started on it will.

    The file is refused as a whole, whether a field is wrong (parsing) or the objects do not fit
    together (building the model: an unknown mTLS mode, a clusterIP taken twice, a targetPort
    name no endpoint declares): the controller would refuse to start on it.
    """
    from nodemesh.controller.kube.objects import load_file
    from nodemesh.controller.problems import Problems
    from nodemesh.controller.sources.addresses import AddressStore

    controller_state_dir.mkdir(parents=True, exist_ok=True)
    try:
        objects = load_file(path)
        model = AddressStore(controller_state_dir).model_for(objects)
    except Problems as exc:
        raise SimError("the cluster file has problems:\n  " + "\n  ".join(exc.errors)) from None
    return plan_cluster(objects, model)
