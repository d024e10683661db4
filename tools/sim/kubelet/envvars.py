"""A container's environment and argv, as the kubelet makes them from the Pod and the Services.

Order and rules are the kubelet's (pkg/kubelet/kubelet_pods.go ``makeEnvironmentVariables``):
the service links of the Services visible at start time come first, then the container's
``env`` in order, each value expanded against what is defined so far (``$(VAR)``, ``$$``
escapes, unknown variables stay literal: ``tools/sim/expand.py``); then command and args are
expanded against the result. Service links: for Service ``my-svc`` with ClusterIP ``IP`` and
first port ``P``: ``MY_SVC_SERVICE_HOST``, ``MY_SVC_SERVICE_PORT``, one
``MY_SVC_SERVICE_PORT_<PORT NAME>`` per named port, and the Docker-link style ``MY_SVC_PORT``
and ``MY_SVC_PORT_<P>_<PROTO>[_PROTO|_PORT|_ADDR]``. ``default/kubernetes`` always gives its
links (the in-cluster client needs KUBERNETES_SERVICE_HOST/PORT); the pod's own namespace's
Services only with ``enableServiceLinks`` (default true).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from nodemesh.tools.sim.expand import expand
from nodemesh.tools.sim.names import SimError

Obj = Mapping[str, Any]


class PodSpecError(SimError):
    """A Pod the sim kubelet cannot run as written; the message names the pod and the field."""


def _link_name(service: str) -> str:
    return service.upper().replace("-", "_")


def service_links(services: Iterable[Obj]) -> dict[str, str]:
    """The environment a container gets from ``services`` (Service objects, camelCase dicts)."""
    env: dict[str, str] = {}
    for svc in sorted(services, key=lambda s: s["metadata"]["name"]):
        spec = svc.get("spec", {})
        ip = spec.get("clusterIP")
        ports = spec.get("ports") or []
        if not ip or ip == "None" or not ports:
            continue  # headless or portless: the kubelet gives such a Service no variables
        name = _link_name(svc["metadata"]["name"])
        env[f"{name}_SERVICE_HOST"] = ip
        env[f"{name}_SERVICE_PORT"] = str(ports[0]["port"])
        for port in ports:
            if port.get("name"):
                env[f"{name}_SERVICE_PORT_{_link_name(port['name'])}"] = str(port["port"])
        first = ports[0]
        env[f"{name}_PORT"] = f"{first.get('protocol', 'TCP').lower()}://{ip}:{first['port']}"
        for port in ports:
            proto = port.get("protocol", "TCP")
            prefix = f"{name}_PORT_{port['port']}_{proto.upper()}"
            env[prefix] = f"{proto.lower()}://{ip}:{port['port']}"
            env[f"{prefix}_PROTO"] = proto.lower()
            env[f"{prefix}_PORT"] = str(port["port"])
            env[f"{prefix}_ADDR"] = ip
    return env


def visible_services(pod: Obj, services: Iterable[Obj]) -> list[Obj]:
    """The Services whose links ``pod`` gets: its namespace's (if enabled) and default/kubernetes."""
    namespace = pod["metadata"]["namespace"]
    links = pod["spec"].get("enableServiceLinks", True)
    chosen = []
    for svc in services:
        meta = svc["metadata"]
        if meta["namespace"] == "default" and meta["name"] == "kubernetes":
            chosen.append(svc)
        elif links and meta["namespace"] == namespace:
            chosen.append(svc)
    return chosen


def field_value(pod: Obj, path: str) -> str:
    """A downward-API ``fieldRef.fieldPath`` of ``pod`` (what env and downwardAPI volumes use)."""
    meta, spec, status = pod["metadata"], pod["spec"], pod.get("status", {})
    simple = {"metadata.name": meta.get("name"), "metadata.namespace": meta.get("namespace"),
              "metadata.uid": meta.get("uid"), "spec.nodeName": spec.get("nodeName"),
              "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
              "status.podIP": status.get("podIP"), "status.hostIP": status.get("hostIP"),
              "status.podIPs": ",".join(i["ip"] for i in status.get("podIPs") or []),
              "status.hostIPs": ",".join(i["ip"] for i in status.get("hostIPs") or [])}
    if path in simple:
        return simple[path] or ""
    for kind in ("labels", "annotations"):
        if path.startswith(f"metadata.{kind}['") and path.endswith("']"):
            return (meta.get(kind) or {}).get(path[len(f"metadata.{kind}['"):-2], "")
    if path in ("metadata.labels", "metadata.annotations"):
        items = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    raise PodSpecError(f"Pod {meta.get('namespace')}/{meta.get('name')}: fieldRef {path!r} is not "
                       "supported by the sim kubelet")


def container_env(pod: Obj, container: Obj, services: Iterable[Obj],
                  base: Mapping[str, str]) -> dict[str, str]:
    """The environment of ``container``: ``base`` (PATH...), service links, then its ``env``.

    ``valueFrom`` other than ``fieldRef`` (configMapKeyRef, secretKeyRef, resourceFieldRef) is
    refused with the field named: the sim has no use for them yet.
    """
    env = {**base, **service_links(visible_services(pod, services))}
    for var in container.get("env") or []:
        if "valueFrom" in var:
            source = var["valueFrom"]
            if "fieldRef" not in source:
                raise PodSpecError(
                    f"Pod {pod['metadata']['namespace']}/{pod['metadata']['name']}: container "
                    f"{container['name']}: env {var['name']}: only valueFrom.fieldRef is supported "
                    f"by the sim kubelet (got {', '.join(source)})")
            env[var["name"]] = field_value(pod, source["fieldRef"]["fieldPath"])
        else:
            env[var["name"]] = expand(var.get("value", ""), env)
    return env


def container_argv(pod: Obj, container: Obj, env: Mapping[str, str]) -> list[str]:
    """command + args with ``$(VAR)`` expanded; the sim has no images, so command is required."""
    command = container.get("command") or []
    if not command:
        raise PodSpecError(f"Pod {pod['metadata']['namespace']}/{pod['metadata']['name']}: container "
                           f"{container['name']}: command is required in the simulated cluster "
                           "(there are no images, so nothing else says what to run)")
    return [expand(a, env) for a in [*command, *(container.get("args") or [])]]
