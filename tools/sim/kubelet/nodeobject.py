"""The Node and Lease objects a sim kubelet keeps (sans-IO: what to send, not sending it).

What the scheduler and the node lifecycle controller look at: labels (hostname, os, zone),
spec.podCIDR (set at registration: NodeRestriction forbids a node to change it later),
addresses, capacity and allocatable (cpu, memory, pods: the scheduler fits pods in them), the
Ready condition with a fresh heartbeat, and the Lease in kube-node-lease renewed every
``RENEW_SECONDS`` (the controller marks a node unknown after 40 s without one).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from nodemesh.tools.sim.kubelet.podstatus import timestamp

RENEW_SECONDS = 10
LEASE_SECONDS = 40
LEASE_NAMESPACE = "kube-node-lease"
KUBELET_VERSION = "v1.36.3-nodemesh-sim"

# What each sim node offers the scheduler: generous, since sim pods are processes, not VMs.
CAPACITY = {"cpu": "8", "memory": "16Gi", "pods": "110", "ephemeral-storage": "100Gi"}


@dataclass(frozen=True)
class NodeInfo:
    """A sim node as its kubelet registers it."""

    name: str
    ip: str
    pod_cidr: str
    zone: str

    def labels(self) -> dict[str, str]:
        return {"kubernetes.io/hostname": self.name, "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64", "topology.kubernetes.io/zone": self.zone}

    def node(self) -> dict[str, Any]:
        """The Node to create (status goes separately, through the status subresource)."""
        return {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.name, "labels": self.labels()},
                "spec": {"podCIDR": self.pod_cidr, "podCIDRs": [self.pod_cidr]}}

    def status(self, now: float, since: float) -> dict[str, Any]:
        """The status to patch: Ready since ``since``, heartbeat ``now``."""
        def condition(kind: str, ok: str, reason: str) -> dict[str, str]:
            return {"type": kind, "status": ok, "reason": reason,
                    "lastHeartbeatTime": timestamp(now), "lastTransitionTime": timestamp(since),
                    "message": "sim kubelet"}

        return {"status": {
            "addresses": [{"type": "InternalIP", "address": self.ip},
                          {"type": "Hostname", "address": self.name}],
            "capacity": CAPACITY, "allocatable": CAPACITY,
            "conditions": [condition("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                           condition("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                           condition("PIDPressure", "False", "KubeletHasSufficientPID"),
                           condition("Ready", "True", "KubeletReady")],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {"kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": "",
                         "operatingSystem": "linux", "architecture": "amd64",
                         "containerRuntimeVersion": "nodemesh-sim://1", "kernelVersion": "",
                         "osImage": "nodemesh sim", "machineID": "", "systemUUID": "",
                         "bootID": ""}}}

    def lease(self, now: float, node_uid: str | None) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.name, "namespace": LEASE_NAMESPACE}
        if node_uid:  # as the kubelet: the Lease goes when its Node is deleted
            meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": self.name,
                                        "uid": node_uid}]
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
                "spec": {"holderIdentity": self.name, "leaseDurationSeconds": LEASE_SECONDS,
                         "renewTime": micro_time(now)}}


def micro_time(seconds: float) -> str:
    """metav1.MicroTime, as Leases need it."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds % 1 * 1e6):06d}Z"
