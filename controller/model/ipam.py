"""Address assignment for local mode (the file source and the simulated cluster).

On a real cluster Kubernetes assigns pod IPs and service VIPs; locally nobody does, so the
controller hands them out. Addresses must survive restarts (agents, the simulated network and
users' notes all hold them), so an object keeps its address for as long as it exists; the
source persists every assignment (``sources/addresses.py``). Given addresses (``status.podIP``,
``spec.clusterIP``) are honoured once checked.

The ranges (fixed, the simulated cluster wires them):
- node i (0-based, in order of first sight): 172.30.0.<i+1> on the bridge, pod CIDR 10.10.<i+1>.0/24;
- pods: .10 to .254 of their node's pod CIDR (below .10 is left to the node);
- service VIPs: 10.96.0.10 to 10.96.255.254.

Assignment is a pure plan from (the assignments so far, objects), without IO, that the caller
persists only when the whole model built, so a rejected reload changes nothing. The plan is
deterministic (new objects are served in name order), so two processes with the same state and
input agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Iterable

from nodemesh.controller.kube.objects import KubeObjects

MAX_NODES = 253  # 172.30.0.254 is the controller's host on the simulated bridge
_SERVICE_RANGE = (IPv4Address("10.96.0.10"), IPv4Address("10.96.255.254"))


def node_ip(index: int) -> str:
    return f"172.30.0.{index + 1}"


def node_pod_cidr(index: int) -> str:
    return f"10.10.{index + 1}.0/24"


def _pod_range(index: int) -> tuple[IPv4Address, IPv4Address]:
    return IPv4Address(f"10.10.{index + 1}.10"), IPv4Address(f"10.10.{index + 1}.254")


@dataclass(frozen=True)
class Assignments:
    """What is persisted: node indexes, pod IPs and service VIPs, keyed by name (``ns/name``)."""

    nodes: dict[str, int] = field(default_factory=dict)
    pods: dict[str, str] = field(default_factory=dict)
    services: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    """The addresses for one set of objects; ``errors`` non-empty means it must not be persisted."""

    state: Assignments
    errors: list[str]

    def node_ip(self, node: str) -> str:
        return node_ip(self.state.nodes[node])

    def node_pod_cidr(self, node: str) -> str:
        return node_pod_cidr(self.state.nodes[node])

    def pod_ip(self, ref: str) -> str:
        return self.state.pods[ref]

    def service_vip(self, ref: str) -> str:
        return self.state.services[ref]


@dataclass(frozen=True)
class _Claim:
    """One object asking for an address, with the words to name it in a message."""

    key: str
    obj: str  # e.g. "Pod demo/client"
    field: str  # e.g. "status.podIP"
    requested: IPv4Address | None
    first: IPv4Address
    last: IPv4Address
    range_name: str


def plan_addresses(assigned: Assignments, objects: KubeObjects) -> Plan:
    """The addresses of ``objects``, given what was ``assigned`` before."""
    errors: list[str] = []
    nodes = _assign_nodes(assigned.nodes, {pod.node_name for pod in objects.pods}, errors)
    pod_claims = []
    for pod in objects.pods:
        if pod.node_name not in nodes:
            continue  # no room for its node: already reported
        first, last = _pod_range(nodes[pod.node_name])
        pod_claims.append(_Claim(
            key=pod.ref, obj=f"Pod {pod.ref}", field="status.podIP",
            requested=IPv4Address(pod.pod_ip) if pod.pod_ip else None,
            first=first, last=last, range_name=f"node {pod.node_name}'s pod range"))
    service_claims = [
        _Claim(key=svc.ref, obj=f"Service {svc.ref}", field="spec.clusterIP",
               requested=IPv4Address(svc.cluster_ip) if svc.cluster_ip else None,
               first=_SERVICE_RANGE[0], last=_SERVICE_RANGE[1], range_name="the service range")
        for svc in objects.services
    ]
    state = Assignments(
        nodes=nodes,
        pods=_assign(assigned.pods, pod_claims, errors),
        services=_assign(assigned.services, service_claims, errors),
    )
    return Plan(state=state, errors=errors)


def _assign_nodes(old: dict[str, int], names: set[str], errors: list[str]) -> dict[str, int]:
    """Node indexes: a node keeps its index forever (its address is wired into the simulated
    network, and 253 slots make releasing pointless); new nodes take the lowest free index."""
    nodes = dict(old)
    used = set(old.values())
    free = (i for i in range(MAX_NODES) if i not in used)
    for name in sorted(names - old.keys()):
        index = next(free, None)
        if index is None:
            errors.append(f"Node {name}: no address left: at most {MAX_NODES} nodes")
            continue
        nodes[name] = index
    return nodes


def _assign(old: dict[str, str], claims: list[_Claim], errors: list[str]) -> dict[str, str]:
    """Addresses for ``claims``; objects absent from ``claims`` release theirs.

    Order of precedence: an object keeps the address it has (stability first), then given
    addresses are honoured if free, then the rest take the lowest free address of their range.
    """
    assigned: dict[str, IPv4Address] = {}
    owner: dict[IPv4Address, str] = {}

    def take(claim: _Claim, address: IPv4Address) -> None:
        assigned[claim.key] = address
        owner[address] = claim.obj

    for claim in claims:
        kept = old.get(claim.key)
        if claim.requested is None and kept and claim.first <= IPv4Address(kept) <= claim.last:
            take(claim, IPv4Address(kept))
    for claim in claims:
        address = claim.requested
        if address is None:
            continue
        if not claim.first <= address <= claim.last:
            errors.append(f"{claim.obj}: {claim.field}: {address} is outside {claim.range_name} "
                          f"{claim.first}-{claim.last}")
        elif address in owner:
            errors.append(f"{claim.obj}: {claim.field}: {address} is already the address of {owner[address]}")
        else:
            take(claim, address)
    for claim in sorted(claims, key=lambda c: c.key):
        if claim.key in assigned or claim.requested is not None:
            continue
        address = _lowest_free(claim.first, claim.last, owner)
        if address is None:
            errors.append(f"{claim.obj}: {claim.field}: no free address left in {claim.range_name} "
                          f"{claim.first}-{claim.last}")
            continue
        take(claim, address)
    return {key: str(address) for key, address in sorted(assigned.items())}


def _lowest_free(first: IPv4Address, last: IPv4Address, used: Iterable[IPv4Address]) -> IPv4Address | None:
    taken = set(used)
    return next((IPv4Address(n) for n in range(int(first), int(last) + 1)
                 if IPv4Address(n) not in taken), None)
