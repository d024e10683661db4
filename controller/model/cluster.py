"""Kube mode: what Kubernetes decides, that the controller plans itself in local mode.

On a cluster Kubernetes assigns every address (a pod's ``status.podIP``, a Service's
``spec.clusterIP``, a Node's InternalIP and ``spec.podCIDR``) and the controller assigns none, so
there is no address plan to keep (no ``ipam.json``). What is a workload follows from that: a pod
with an address of its own that it still uses (``Pod.running_workload``), on a Node that has
appeared with its address (until then its pods wait: the agent of a node the mesh does not know
could not be told where it is). Headless and ExternalName Services have no virtual IP, so they are
not mesh services; they are left out quietly, as ordinary Kubernetes objects. A Service's
endpoints are the ready pods of its EndpointSlices, as kube-proxy's are.
"""

from __future__ import annotations

from dataclasses import replace

from nodemesh.controller.kube import objects as kube
from nodemesh.controller.kube.objects import KubeObjects


class GivenAddresses:
    """The addresses the objects carry, read the way ``ipam.Plan`` hands out planned ones."""

    def __init__(self, objects: KubeObjects) -> None:
        self._nodes = {node.name: node for node in objects.nodes}
        self._pods = {pod.ref: pod.pod_ip for pod in objects.pods}
        self._services = {svc.ref: svc.cluster_ip for svc in objects.services}

    def node_ip(self, node: str) -> str:
        return self._nodes[node].ip or ""

    def node_pod_cidr(self, node: str) -> str:
        return self._nodes[node].pod_cidr or ""  # CNIs that do not use spec.podCIDR leave it out

    def pod_ip(self, ref: str) -> str:
        return self._pods[ref] or ""

    def service_vip(self, ref: str) -> str:
        return self._services[ref] or ""


def in_cluster(objects: KubeObjects) -> KubeObjects:
    """The objects that take part in the mesh when Kubernetes assigns addresses."""
    nodes = tuple(node for node in objects.nodes if node.ip)
    known = {node.name for node in nodes}
    return replace(
        objects, nodes=nodes,
        pods=tuple(pod for pod in objects.pods if pod.running_workload and pod.node_name in known),
        services=tuple(svc for svc in objects.services if svc.cluster_ip))


class SliceEndpoints:
    """Each Service's endpoints: the workloads its EndpointSlices list as ready, by pod name.

    Indexed once per build (slices by Service, pods by uid), so that a build stays linear in the
    objects rather than Services times pods."""

    def __init__(self, objects: KubeObjects) -> None:
        pods = {pod.uid: pod for pod in objects.pods if pod.uid}
        self._ready: dict[tuple[str, str], dict[str, kube.Pod]] = {}
        for s in objects.endpoint_slices:
            if s.service is not None:
                ready = self._ready.setdefault((s.namespace, s.service), {})
                ready.update((uid, pods[uid]) for uid in s.ready_pods if uid in pods)

    def __call__(self, svc: kube.Service) -> list[kube.Pod]:
        ready = self._ready.get((svc.namespace, svc.name), {})
        return sorted(ready.values(), key=lambda pod: pod.name)
