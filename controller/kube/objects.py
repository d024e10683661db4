"""Kubernetes objects: parsing and validating them into typed values, every kind through
``parse_objects``.

Every source hands the same dict shapes, as the Kubernetes API serves them: the file source gets
them from YAML, a Kubernetes API source will get them from watches. Both call
``parse_objects``, so what is accepted, and how it is explained when it is not, is decided once.
The core kinds (v1 Namespace, Pod, Service, Node, discovery.k8s.io/v1 EndpointSlice) are read
here; AuthorizationPolicy in
``authz.py``, TrafficPolicy and TCPRoute in ``traffic.py``; all read fields through
``fields.py``.

Validation of the core kinds reads only the fields the mesh uses and ignores the rest (images,
resources, ...), as a Kubernetes manifest carries much more than we need; the mesh's own kinds
refuse unknown fields. Every problem is collected, not just the first, and each message names the
object and the field, e.g. ``Pod demo/client: spec.nodeName: required``, so that one run of the
controller lists everything there is to fix.

Each object parses on its own (``parse_object``): the file source refuses a file with any bad
object, the Kubernetes source leaves out only the bad one. What only the Kubernetes source reads
(a pod's phase and hostNetwork, a Node's addresses, EndpointSlices) is parsed here too, so that
both sources share one reading of every kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import yaml

from nodemesh.authz.policy import ROOT_NAMESPACE, AuthorizationPolicy
from nodemesh.controller.kube import authz, traffic
from nodemesh.controller.kube.fields import (
    DEFAULT_NAMESPACE,
    DNS1035_LABEL,
    DNS1123_LABEL,
    DNS1123_SUBDOMAIN,
    PORT_NAME,
    Fields,
    Namespaced,
    check_unique,
    kind_of,
    labels,
    metadata,
    namespace_of,
)
from nodemesh.controller.kube.traffic import KubeTrafficPolicy, TCPRoute
from nodemesh.controller.problems import Problems
from nodemesh.model import MESH_ENABLED, MESH_LABEL

DEFAULT_SERVICE_ACCOUNT = "default"
CLUSTER_SCOPED = ("Namespace", "Node")
# Istio's ambient label: a namespace labelled for Istio's ambient mode joins this mesh as well
AMBIENT_LABEL = "istio.io/dataplane-mode"
AMBIENT = "ambient"
# Pod phases after which a pod runs no more: its address may already be another pod's
FINISHED_PHASES = ("Succeeded", "Failed")
SERVICE_NAME_LABEL = "kubernetes.io/service-name"  # an EndpointSlice's Service
HEADLESS = "None"  # spec.clusterIP of a headless Service
PENDING = "Pending"
NODE_NAME_REQUIRED = "required (the node the pod runs on)"
EXTERNAL_NAME = "ExternalName"
# spec.trafficDistribution values the mesh implements (Kubernetes 1.31+ accepts PreferClose)
PREFER_CLOSE = traffic.PREFER_CLOSE


class ConfigError(Problems):
    """Objects that cannot be read or do not parse; ``errors`` lists every problem."""


@dataclass(frozen=True)
class Namespace:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def meshed(self) -> bool:
        """Pods of a namespace labelled ``nodemesh.io/mesh: enabled`` (or Istio's
        ``istio.io/dataplane-mode: ambient``, so that namespaces set up for Istio ambient need no
        second label) join the mesh."""
        return (self.labels.get(MESH_LABEL) == MESH_ENABLED
                or self.labels.get(AMBIENT_LABEL) == AMBIENT)


@dataclass(frozen=True)
class ContainerPort:
    container_port: int
    name: str | None = None


@dataclass(frozen=True)
class Container:
    name: str
    command: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    ports: tuple[ContainerPort, ...] = ()
    # paths of env vars given by valueFrom: the file source cannot run those, Kubernetes does
    env_value_from: tuple[str, ...] = ()


@dataclass(frozen=True)
class Owner:
    kind: str
    name: str


@dataclass(frozen=True)
class Pod(Namespaced):
    uid: str | None
    node_name: str
    service_account: str
    labels: Mapping[str, str]
    pod_ip: str | None
    containers: tuple[Container, ...]
    owner: Owner | None = None  # metadata.ownerReferences: the controller's, else the first
    host_network: bool = False  # spec.hostNetwork: the node's address, not a workload's
    phase: str | None = None  # status.phase

    @property
    def running_workload(self) -> bool:
        """Whether Kubernetes gave the pod an address of its own that it still uses: what a
        workload is when Kubernetes, not the controller, assigns addresses."""
        return (self.pod_ip is not None and not self.host_network
                and self.phase not in FINISHED_PHASES)

    def port_named(self, name: str) -> int | None:
        """The containerPort named ``name``, how a Service's named targetPort is resolved."""
        for container in self.containers:
            for port in container.ports:
                if port.name == name:
                    return port.container_port
        return None


@dataclass(frozen=True)
class ServicePortSpec:
    name: str
    port: int
    target_port: int | str  # a number, or the name of a container port of each endpoint


@dataclass(frozen=True)
class Service(Namespaced):
    selector: Mapping[str, str]
    ports: tuple[ServicePortSpec, ...]
    cluster_ip: str | None
    prefer_close: bool = False  # spec.trafficDistribution: PreferClose
    headless: bool = False  # spec.clusterIP None: no virtual IP, so no mesh service
    external_name: bool = False  # spec.type ExternalName: a DNS alias, no virtual IP either
    # "path: problem" of each port of another protocol than TCP, left out of ``ports`` (the
    # mesh carries TCP)
    other_protocols: tuple[str, ...] = ()


@dataclass(frozen=True)
class Node:
    """A v1 Node: its labels (the zone); and, as Kubernetes assigns them, its InternalIP and
    spec.podCIDR (the file source plans those itself and ignores these)."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    ip: str | None = None
    pod_cidr: str | None = None


@dataclass(frozen=True)
class EndpointSlice(Namespaced):
    """A discovery.k8s.io/v1 EndpointSlice: the Service it serves and the uids of its ready pods."""

    service: str | None
    ready_pods: tuple[str, ...] = ()


@dataclass(frozen=True)
class KubeObjects:
    """What a source holds, each kind in the order it was given."""

    namespaces: tuple[Namespace, ...] = ()
    pods: tuple[Pod, ...] = ()
    services: tuple[Service, ...] = ()
    authorization_policies: tuple[AuthorizationPolicy, ...] = ()
    traffic_policies: tuple[KubeTrafficPolicy, ...] = ()
    tcp_routes: tuple[TCPRoute, ...] = ()
    nodes: tuple[Node, ...] = ()
    endpoint_slices: tuple[EndpointSlice, ...] = ()


def _object_label(kind: str, meta: Any, where: str) -> str:
    """How messages name an object: ``Pod demo/client``; by position when it has no name."""
    meta = meta if isinstance(meta, dict) else {}
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        return f"{kind} ({where})"
    if kind in CLUSTER_SCOPED:
        return f"{kind} {name}"
    namespace = meta.get("namespace") or DEFAULT_NAMESPACE
    return f"{kind} {namespace}/{name}"


def parse_objects(documents: Iterable[Any], source: str) -> KubeObjects:
    """Validated objects from Kubernetes-shaped dicts (``None`` entries, empty documents, are skipped).

    ``kind: List`` documents are expanded. Raises ConfigError with every problem found.
    """
    errors: list[str] = []
    parsed: list[tuple[str, Any]] = []
    seen: dict[str, str] = {}  # object label -> where it was first defined

    for where, doc in _flatten(documents, source, errors):
        found = _parse_one(doc, where, errors)
        if found is None:
            continue
        kind, label, obj = found
        if label in seen:
            errors.append(f"{label}: metadata.name: defined twice ({seen[label]} and {where})")
            continue
        seen[label] = where
        parsed.append((kind, obj))

    objects = collect(parsed)
    _check_references(objects, errors)
    _check_runnable_locally(objects, errors)
    if errors:
        raise ConfigError(errors)
    return objects


def parse_object(doc: Any, where: str) -> tuple[str, Any]:
    """(kind, value) of one object on its own; ConfigError with its problems, each naming it."""
    errors: list[str] = []
    if not isinstance(doc, dict):
        raise ConfigError([f"{where}: expected a Kubernetes object, got {kind_of(doc)}"])
    found = _parse_one(doc, where, errors)
    if errors or found is None:
        raise ConfigError(errors)
    kind, _, obj = found
    return kind, obj


def collect(parsed: Iterable[tuple[str, Any]]) -> KubeObjects:
    """The objects of (kind, value) pairs, each kind in the order given."""
    by_kind: dict[str, list[Any]] = {kind: [] for kind in _KINDS}
    for kind, obj in parsed:
        by_kind[kind].append(obj)
    return KubeObjects(
        namespaces=tuple(by_kind["Namespace"]), pods=tuple(by_kind["Pod"]),
        services=tuple(by_kind["Service"]),
        authorization_policies=tuple(by_kind[authz.KIND]),
        traffic_policies=tuple(by_kind[traffic.TRAFFIC_POLICY]),
        tcp_routes=tuple(by_kind[traffic.TCP_ROUTE]), nodes=tuple(by_kind["Node"]),
        endpoint_slices=tuple(by_kind[ENDPOINT_SLICE]))


def _parse_one(doc: dict, where: str, errors: list[str]) -> tuple[str, str, Any] | None:
    """(kind, label, value) of one object, its problems added to ``errors``; None for an
    object of no kind nodemesh reads."""
    kind = doc.get("kind")
    if not isinstance(kind, str) or not kind:
        errors.append(f"{where}: kind: required (one of {', '.join(_KINDS)})")
        return None
    label = _object_label(kind, doc.get("metadata"), where)
    fields = Fields(label, errors)
    if kind not in _KINDS:
        fields.error("kind", f"unsupported kind {kind!r} (nodemesh reads "
                             f"{', '.join(_KINDS)})")
        return None
    versions, parse = _KINDS[kind]
    if doc.get("apiVersion") not in versions:
        fields.error("apiVersion", f"must be {' or '.join(versions)} for {_a(kind)}, "
                                   f"got {doc.get('apiVersion')!r}")
    return kind, label, parse(doc, fields)


def _a(kind: str) -> str:
    return f"an {kind}" if kind[0] in "AEIOU" else f"a {kind}"


def _flatten(documents: Iterable[Any], source: str, errors: list[str]) -> Iterable[tuple[str, dict]]:
    """(where, object) for each object, with ``kind: List`` items in place of their list."""
    for number, doc in enumerate(documents, start=1):
        where = f"{source} document {number}"
        if doc is None:
            continue
        if not isinstance(doc, dict):
            errors.append(f"{where}: expected a Kubernetes object (a mapping with apiVersion and "
                          f"kind), got {kind_of(doc)}")
            continue
        if doc.get("kind") != "List":
            yield where, doc
            continue
        items = Fields(f"List ({where})", errors).items(doc.get("items"), "items")
        for i, item in enumerate(items):
            if isinstance(item, dict):
                yield f"{where} items[{i}]", item
            else:
                errors.append(f"List ({where}): items[{i}]: expected a Kubernetes object, "
                              f"got {kind_of(item)}")


def _parse_namespace(doc: dict, fields: Fields) -> Namespace:
    name, meta = metadata(doc, fields, DNS1123_LABEL, 63, "namespace name")
    return Namespace(name=name, labels=labels(meta, fields))


def _parse_pod(doc: dict, fields: Fields) -> Pod:
    name, meta = metadata(doc, fields, DNS1123_SUBDOMAIN, 253, "pod name")
    spec = fields.mapping(doc.get("spec"), "spec")
    status = fields.mapping(doc.get("status"), "status")
    node_name = fields.name(spec.get("nodeName"), "spec.nodeName", DNS1123_SUBDOMAIN, 253,
                            "node name")
    phase = fields.string(status.get("phase"), "status.phase")
    if node_name is None and phase != PENDING:  # a Pending pod may wait for the scheduler
        fields.error("spec.nodeName", NODE_NAME_REQUIRED)
    if spec.get("containers") in (None, []):
        fields.error("spec.containers", "required (at least one container)")
    containers = tuple(_parse_container(c, f"spec.containers[{i}]", fields)
                       for i, c in enumerate(fields.items(spec.get("containers"), "spec.containers")))
    return Pod(
        namespace=namespace_of(meta, fields),
        name=name,
        uid=fields.string(meta.get("uid"), "metadata.uid"),
        node_name=node_name or "",
        service_account=fields.name(spec.get("serviceAccountName"), "spec.serviceAccountName",
                                    DNS1123_SUBDOMAIN, 253, "service account name")
        or DEFAULT_SERVICE_ACCOUNT,
        labels=labels(meta, fields),
        pod_ip=fields.ipv4(status.get("podIP"), "status.podIP"),
        containers=containers,
        owner=_owner(meta, fields),
        host_network=spec.get("hostNetwork") is True,
        phase=phase,
    )


def _owner(meta: dict[str, Any], fields: Fields) -> Owner | None:
    """The pod's controller (``controller: true``), else its first owner: what names its workload."""
    owners = []
    for i, ref in enumerate(fields.items(meta.get("ownerReferences"), "metadata.ownerReferences")):
        path = f"metadata.ownerReferences[{i}]"
        ref = fields.mapping(ref, path)
        kind, name = fields.string(ref.get("kind"), f"{path}.kind"), fields.string(ref.get("name"), f"{path}.name")
        if not kind or not name:
            fields.error(path, "kind and name are required")
            continue
        owners.append((ref.get("controller") is True, Owner(kind, name)))
    controllers = [owner for is_controller, owner in owners if is_controller]
    return (controllers or [owner for _, owner in owners] or [None])[0]


def _parse_container(value: Any, path: str, fields: Fields) -> Container:
    spec = fields.mapping(value, path)
    name = fields.name(spec.get("name"), f"{path}.name", DNS1123_LABEL, 63, "container name")
    if name is None:
        fields.error(f"{path}.name", "required")
    env = {}
    value_from = []
    for i, var in enumerate(fields.items(spec.get("env"), f"{path}.env")):
        var = fields.mapping(var, f"{path}.env[{i}]")
        if "valueFrom" in var:
            value_from.append(f"{path}.env[{i}].valueFrom")
            continue
        var_name = fields.string(var.get("name"), f"{path}.env[{i}].name")
        if var_name is None:
            fields.error(f"{path}.env[{i}].name", "required")
            continue
        env[var_name] = fields.string(var.get("value"), f"{path}.env[{i}].value", default="")
    ports = []
    for i, port in enumerate(fields.items(spec.get("ports"), f"{path}.ports")):
        port = fields.mapping(port, f"{path}.ports[{i}]")
        number = fields.port(port.get("containerPort"), f"{path}.ports[{i}].containerPort")
        port_name = fields.name(port.get("name"), f"{path}.ports[{i}].name", PORT_NAME, 15,
                                "port name")
        # Other protocols are the pod's own business: the mesh carries TCP and leaves them out.
        if number is not None and port.get("protocol", "TCP") == "TCP":
            ports.append(ContainerPort(container_port=number, name=port_name))
    return Container(
        name=name or "",
        command=fields.strings(spec.get("command"), f"{path}.command"),
        args=fields.strings(spec.get("args"), f"{path}.args"),
        env=env,
        ports=tuple(ports),
        env_value_from=tuple(value_from),
    )


def _parse_service(doc: dict, fields: Fields) -> Service:
    name, meta = metadata(doc, fields, DNS1035_LABEL, 63, "service name")
    spec = fields.mapping(doc.get("spec"), "spec")
    cluster_ip = spec.get("clusterIP")
    headless = cluster_ip == HEADLESS
    if headless:
        cluster_ip = None
    external_name = spec.get("type") == EXTERNAL_NAME
    raw_ports = fields.items(spec.get("ports"), "spec.ports")
    if not raw_ports and not (headless or external_name):  # those need no ports
        fields.error("spec.ports", "required (at least one port)")
    other = {i: raw["protocol"] for i, raw in enumerate(raw_ports)
             if isinstance(raw, dict) and raw.get("protocol") not in (None, "TCP")}
    parsed = [_parse_service_port(raw, i, len(raw_ports), fields) for i, raw in enumerate(raw_ports)
              if i not in other]
    ports = tuple(p for p in parsed if p is not None)
    check_unique(fields, "spec.ports", "port", [p.port for p in ports])
    check_unique(fields, "spec.ports", "name", [p.name for p in ports if p.name])
    return Service(
        namespace=namespace_of(meta, fields),
        name=name,
        selector=fields.string_map(spec.get("selector"), "spec.selector"),
        ports=ports,
        cluster_ip=fields.ipv4(cluster_ip, "spec.clusterIP"),
        prefer_close=_traffic_distribution(spec, fields),
        headless=headless,
        external_name=external_name,
        other_protocols=tuple(f"spec.ports[{i}].protocol: only TCP is supported, got {protocol!r}"
                              for i, protocol in other.items()),
    )


def _traffic_distribution(spec: dict[str, Any], fields: Fields) -> bool:
    value = fields.string(spec.get("trafficDistribution"), "spec.trafficDistribution")
    if value is not None and value != PREFER_CLOSE:
        fields.error("spec.trafficDistribution", f"{value!r} is not supported ({PREFER_CLOSE}, "
                                                 "or leave it out)")
    return value == PREFER_CLOSE


def _parse_node(doc: dict, fields: Fields) -> Node:
    name, meta = metadata(doc, fields, DNS1123_SUBDOMAIN, 253, "node name")
    spec = fields.mapping(doc.get("spec"), "spec")
    status = fields.mapping(doc.get("status"), "status")
    addresses = [fields.mapping(a, f"status.addresses[{i}]")
                 for i, a in enumerate(fields.items(status.get("addresses"), "status.addresses"))]
    # the first IPv4 InternalIP: a dual-stack node lists an IPv6 one as well, which the mesh
    # (IPv4 only) does not use
    ip = next((fields.ipv4(a.get("address"), f"status.addresses[{i}].address")
               for i, a in enumerate(addresses) if a.get("type") == "InternalIP"
               and ":" not in str(a.get("address"))), None)
    return Node(name=name, labels=labels(meta, fields), ip=ip,
                pod_cidr=fields.cidr(spec.get("podCIDR"), "spec.podCIDR"))


def _parse_endpoint_slice(doc: dict, fields: Fields) -> EndpointSlice:
    """Only what the mesh uses: the Service label and each endpoint's pod and readiness
    (``conditions.ready`` absent means ready, as the API documents)."""
    name, meta = metadata(doc, fields, DNS1123_SUBDOMAIN, 253, "EndpointSlice name")
    ready = []
    for i, endpoint in enumerate(fields.items(doc.get("endpoints"), "endpoints")):
        endpoint = fields.mapping(endpoint, f"endpoints[{i}]")
        conditions = fields.mapping(endpoint.get("conditions"), f"endpoints[{i}].conditions")
        target = fields.mapping(endpoint.get("targetRef"), f"endpoints[{i}].targetRef")
        uid = fields.string(target.get("uid"), f"endpoints[{i}].targetRef.uid")
        if target.get("kind") == "Pod" and uid and conditions.get("ready") is not False:
            ready.append(uid)
    return EndpointSlice(namespace=namespace_of(meta, fields), name=name,
                         service=labels(meta, fields).get(SERVICE_NAME_LABEL),
                         ready_pods=tuple(ready))


def _parse_service_port(value: Any, i: int, count: int, fields: Fields) -> ServicePortSpec | None:
    path = f"spec.ports[{i}]"
    spec = fields.mapping(value, path)
    name = fields.name(spec.get("name"), f"{path}.name", PORT_NAME, 15, "port name")
    if name is None and count > 1:
        fields.error(f"{path}.name", "required when a service has more than one port")
    port = fields.port(spec.get("port"), f"{path}.port")
    target: Any = spec.get("targetPort")
    if target is None:
        target = port
    elif isinstance(target, str):
        if target.isdigit() or not PORT_NAME.fullmatch(target) or len(target) > 15:
            fields.error(f"{path}.targetPort", f"must be a number or a container port name, "
                                               f"got {target!r}")
            return None
    else:
        target = fields.port(target, f"{path}.targetPort")
    if port is None or target is None:
        return None
    return ServicePortSpec(name=name or "", port=port, target_port=target)


def _check_runnable_locally(objects: KubeObjects, errors: list[str]) -> None:
    """What the file source cannot do, that Kubernetes does: schedule a pod, fill env vars from
    other fields, give a headless or ExternalName Service its DNS records, carry other protocols
    than TCP (locally the mesh is the only network path of a Service); the Kubernetes source
    takes such objects as they are (an unscheduled pod is no workload yet).
    """
    for svc in objects.services:
        if svc.headless:
            errors.append(f"Service {svc.ref}: spec.clusterIP: headless services (None) are not "
                          "supported; leave it out to get a virtual IP")
        if svc.external_name:
            errors.append(f"Service {svc.ref}: spec.type: ExternalName services are not supported "
                          "(the mesh serves virtual IPs); leave it out")
        errors.extend(f"Service {svc.ref}: {problem}" for problem in svc.other_protocols)
    for pod in objects.pods:
        if not pod.node_name and pod.phase == PENDING:  # the others were refused when parsed
            errors.append(f"Pod {pod.ref}: spec.nodeName: {NODE_NAME_REQUIRED}")
        errors.extend(f"Pod {pod.ref}: {path}: not supported (give a value)"
                      for c in pod.containers for path in c.env_value_from)


def _check_references(objects: KubeObjects, errors: list[str]) -> None:
    """Namespaced objects must live in a defined namespace, as the Kubernetes API insists.

    ``default`` always exists in Kubernetes, so it needs no Namespace object; the mesh's root
    namespace does, like any other.
    """
    defined = {ns.name for ns in objects.namespaces} | {DEFAULT_NAMESPACE}
    namespaced: tuple[tuple[str, tuple[Any, ...]], ...] = (
        ("Pod", objects.pods), ("Service", objects.services),
        (authz.KIND, objects.authorization_policies),
        (traffic.TRAFFIC_POLICY, objects.traffic_policies), (traffic.TCP_ROUTE, objects.tcp_routes))
    for kind, objs in namespaced:
        for obj in objs:
            if obj.namespace in defined:
                continue
            root = (f" ({ROOT_NAMESPACE} is the mesh's root namespace: its policies apply to "
                    "every workload, and it needs its Namespace object too)"
                    if obj.namespace == ROOT_NAMESPACE else "")
            errors.append(f"{kind} {obj.namespace}/{obj.name}: metadata.namespace: namespace "
                          f"{obj.namespace!r} is not defined (add a Namespace object named "
                          f"{obj.namespace}){root}")
    uids: dict[str, str] = {}
    for pod in objects.pods:
        if pod.uid is None:
            continue
        if pod.uid in uids:
            errors.append(f"Pod {pod.ref}: metadata.uid: {pod.uid!r} is also the uid of "
                          f"Pod {uids[pod.uid]}")
        uids.setdefault(pod.uid, pod.ref)


def parse_documents(text: str, source: str) -> KubeObjects:
    """Objects from YAML text (one or many documents); ``source`` names it in messages."""
    try:
        documents = list(yaml.load_all(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_message(exc, source)]) from None
    return parse_objects(documents, source)


def _yaml_message(exc: yaml.YAMLError, source: str) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    detail = f"{context}, {problem}" if context else problem
    if mark is None:
        return f"{source}: invalid YAML: {detail}"
    return f"{source}: line {mark.line + 1}, column {mark.column + 1}: invalid YAML: {detail}"


def load_file(path: str | Path) -> KubeObjects:
    """Read and parse a YAML file; an unreadable file is a ConfigError too, with the reason."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError([f"{path}: cannot read: {reason}"]) from None
    return parse_documents(text, str(path))


ENDPOINT_SLICE = "EndpointSlice"

# kind -> (accepted apiVersions, parser)
_KINDS: dict[str, tuple[tuple[str, ...], Callable[[dict, Fields], Any]]] = {
    "Namespace": (("v1",), _parse_namespace),
    "Pod": (("v1",), _parse_pod),
    "Service": (("v1",), _parse_service),
    "Node": (("v1",), _parse_node),
    ENDPOINT_SLICE: (("discovery.k8s.io/v1",), _parse_endpoint_slice),
    authz.KIND: (authz.API_VERSIONS, authz.parse_authorization_policy),
    traffic.TRAFFIC_POLICY: (traffic.TRAFFIC_POLICY_API_VERSIONS, traffic.parse_traffic_policy),
    traffic.TCP_ROUTE: (traffic.TCP_ROUTE_API_VERSIONS, traffic.parse_tcp_route),
}
