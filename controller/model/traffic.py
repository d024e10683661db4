"""A Service's traffic settings and split, from the objects that refer to it: the TrafficPolicy
that targets it (and its own ``spec.trafficDistribution``), the TCPRoute attached to it.

Objects are checked one by one when parsed (``controller/kube/traffic.py``); here, with every
object at hand, what they refer to: the Services must exist and have the ports named, and no
Service (or port of one) may be claimed by two objects, since nothing would say which one wins.
"""

from __future__ import annotations

from dataclasses import replace

from nodemesh.controller.kube.objects import KubeObjects
from nodemesh.controller.kube.traffic import PREFER_CLOSE, KubeTrafficPolicy, ServiceRef, TCPRoute
from nodemesh.model import DEFAULT_TRAFFIC, Backend, TrafficPolicy


def traffic_settings(objects: KubeObjects, errors: list[str]) -> dict[str, TrafficPolicy]:
    """Each Service's settings, by ``namespace/name``: its TrafficPolicy's, else the defaults.

    The TrafficPolicy's ``locality``, when given, wins over the Service's
    ``trafficDistribution``: it is the more specific of the two.
    """
    services = {svc.ref: svc for svc in objects.services}
    claimed: dict[str, KubeTrafficPolicy] = {}
    for policy in objects.traffic_policies:
        for target in policy.targets:
            key = f"{policy.namespace}/{target.name}"
            where = f"TrafficPolicy {policy.ref}: {target.path}"
            if key not in services:
                errors.append(f"{where}: Service {key} is not defined")
                continue
            other = claimed.setdefault(key, policy)
            if other is not policy:
                errors.append(f"{where}: Service {key} is also the target of TrafficPolicy "
                              f"{other.ref} (a Service takes one TrafficPolicy: merge them)")
    settings = {}
    for key, svc in services.items():
        policy = claimed.get(key)
        locality = policy.locality if policy else None
        prefer_close = svc.prefer_close if locality is None else locality == PREFER_CLOSE
        settings[key] = replace(policy.settings if policy else DEFAULT_TRAFFIC,
                                prefer_close=prefer_close)
    return settings


def split_backends(objects: KubeObjects, errors: list[str]) -> dict[str, tuple[Backend, ...]]:
    """Each split Service's backends, by ``namespace/name``, from the TCPRoutes attached to it."""
    ports = {svc.ref: sorted(p.port for p in svc.ports) for svc in objects.services}
    attached: dict[str, list[tuple[int, TCPRoute]]] = {}  # service -> (parent port, route)
    backends: dict[str, list[Backend]] = {}
    for route in objects.tcp_routes:
        routed = [Backend(service=f"{route.namespace}/{ref.name}", port=ref.port, weight=ref.weight)
                  for ref in route.backends if _has_port(route, ref, ports, errors)]
        for parent in route.parents:
            key = f"{route.namespace}/{parent.name}"
            if not _has_port(route, parent, ports, errors):
                continue
            clash = next((other for port, other in attached.get(key, ())
                          if 0 in (port, parent.port) or port == parent.port), None)
            if clash is not None:
                errors.append(f"TCPRoute {route.ref}: {parent.path}: Service {key} "
                              f"({_ports(parent.port)}) is also split by TCPRoute {clash.ref} "
                              "(a service port takes one route: merge them)")
                continue
            attached.setdefault(key, []).append((parent.port, route))
            backends.setdefault(key, []).extend(replace(b, parent_port=parent.port) for b in routed)
    return {key: tuple(found) for key, found in backends.items()}


def _has_port(route: TCPRoute, ref: ServiceRef, ports: dict[str, list[int]],
              errors: list[str]) -> bool:
    """Whether the referred Service exists with the port the reference gives (0: any)."""
    key = f"{route.namespace}/{ref.name}"
    where = f"TCPRoute {route.ref}: {ref.path}"
    if key not in ports:
        errors.append(f"{where}: Service {key} is not defined")
        return False
    if ref.port and ref.port not in ports[key]:
        errors.append(f"{where}.port: Service {key} has no port {ref.port} (its ports: "
                      f"{', '.join(map(str, ports[key]))})")
        return False
    return True


def _ports(port: int) -> str:
    return f"port {port}" if port else "every port"
