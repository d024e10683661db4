"""Pod IPs of one node: .10 to .254 of its podCIDR, remembered per pod UID across restarts.

A kubelet restarted while its pods run must give each the address it already has (the pod's
netns still holds it, and the API server's status says it), so the assignment is a small JSON
file ``{uid: ip}`` the kubelet rewrites (atomically) on every change. The allocator itself is
sans-IO.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

from nodemesh.controller.files import write_atomically
from nodemesh.tools.sim.names import SimError

FIRST_HOST = 10
LAST_HOST = 254


class PodCidrFull(SimError):
    """No address is left in the node's podCIDR."""


class PodAddresses:
    """The pod IPs of one node, by pod UID."""

    def __init__(self, pod_cidr: str, assigned: dict[str, str] | None = None) -> None:
        self.network = ipaddress.ip_network(pod_cidr)
        self.assigned = dict(assigned or {})

    def assign(self, uid: str) -> str:
        """The pod's address: the one it has, else the lowest free one."""
        if uid in self.assigned:
            return self.assigned[uid]
        taken = set(self.assigned.values())
        for offset in range(FIRST_HOST, min(LAST_HOST, self.network.num_addresses - 2) + 1):
            ip = str(self.network.network_address + offset)
            if ip not in taken:
                self.assigned[uid] = ip
                return ip
        raise PodCidrFull(f"podCIDR {self.network} has no free address for another pod "
                          f"({len(taken)} assigned)")

    def release(self, uid: str) -> None:
        self.assigned.pop(uid, None)


def load(path: Path, pod_cidr: str) -> PodAddresses:
    try:
        return PodAddresses(pod_cidr, json.loads(path.read_text()))
    except FileNotFoundError:
        return PodAddresses(pod_cidr)


def save(path: Path, addresses: PodAddresses) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, json.dumps(addresses.assigned, indent=1, sort_keys=True).encode(), 0o644)
