"""Kubernetes objects (v1 Namespace, Pod, Service): parsing and validating them into typed values.

Every source hands the same dict shapes, as the Kubernetes API serves them: the file source gets
them from YAML, a Kubernetes API source will get them from watches. Both call
``parse_objects``, so what is accepted, and how it is explained when it is not, is decided once.

Validation reads only the fields the mesh uses and ignores the rest (images, resources, ...), as
a Kubernetes manifest carries much more than we need. Every problem is collected, not just the
first, and each message names the object and the field, e.g. ``Pod demo/client: spec.nodeName:
required``, so that one run of the controller lists everything there is to fix.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from nodemesh.controller.problems import Problems
from nodemesh.model import MESH_ENABLED, MESH_LABEL

DEFAULT_NAMESPACE = "default"
DEFAULT_SERVICE_ACCOUNT = "default"
SUPPORTED_KINDS = ("Namespace", "Pod", "Service")

# Kubernetes' own name rules: namespaces are DNS-1123 labels, pods and node names DNS-1123
# subdomains, services DNS-1035 labels, port names IANA service names. The simulated cluster builds
# netns and cgroup names from them, so they must not hold slashes, spaces or the like.
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_PORT_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


class ConfigError(Problems):
    """Objects that cannot be read or do not parse; ``errors`` lists every problem."""


@dataclass(frozen=True)
class Namespace:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def meshed(self) -> bool:
        """Pods of a namespace labelled ``nodemesh.io/mesh: enabled`` join the mesh."""
        return self.labels.get(MESH_LABEL) == MESH_ENABLED


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


@dataclass(frozen=True)
class Owner:
    kind: str
    name: str


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    uid: str | None
    node_name: str
    service_account: str
    labels: Mapping[str, str]
    pod_ip: str | None
    containers: tuple[Container, ...]
    owner: Owner | None = None  # metadata.ownerReferences: the controller's, else the first

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

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
class Service:
    namespace: str
    name: str
    selector: Mapping[str, str]
    ports: tuple[ServicePortSpec, ...]
    cluster_ip: str | None

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class KubeObjects:
    """What a source holds, in the order it was given."""

    namespaces: tuple[Namespace, ...] = ()
    pods: tuple[Pod, ...] = ()
    services: tuple[Service, ...] = ()


class _Fields:
    """Typed reads of one object's fields that record, rather than raise, what is wrong.

    Each reader returns a usable default when the value is bad, so that parsing goes on and finds
    the next problem too.
    """

    def __init__(self, label: str, errors: list[str]) -> None:
        self.label = label
        self.errors = errors

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{self.label}: {path}: {message}")

    def mapping(self, value: Any, path: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(path, f"must be a mapping, got {_kind_of(value)}")
            return {}
        return value

    def items(self, value: Any, path: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(path, f"must be a list, got {_kind_of(value)}")
            return []
        return value

    def string(self, value: Any, path: str, default: str | None = None) -> str | None:
        if value is None or value == "":
            return default
        if not isinstance(value, str):
            self.error(path, f"must be a string, got {value!r} (quote it)")
            return default
        return value

    def name(self, value: Any, path: str, rule: re.Pattern[str], limit: int, what: str) -> str | None:
        text = self.string(value, path)
        if text is None:
            return None
        if len(text) > limit or not rule.fullmatch(text):
            self.error(path, f"{text!r} is not a valid {what} (at most {limit} characters: "
                             "lowercase letters, digits and '-')")
        return text

    def strings(self, value: Any, path: str) -> list[str]:
        result = []
        for i, item in enumerate(self.items(value, path)):
            text = self.string(item, f"{path}[{i}]", default="")
            result.append(text)
        return result

    def string_map(self, value: Any, path: str) -> dict[str, str]:
        result = {}
        for key, item in self.mapping(value, path).items():
            text = self.string(item, f"{path}.{key}", default="")
            result[str(key)] = text
        return result

    def port(self, value: Any, path: str) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(path, f"must be a number between 1 and 65535, got {value!r}")
            return None
        if not 1 <= value <= 65535:
            self.error(path, f"port {value} is out of range (1-65535)")
            return None
        return value

    def ipv4(self, value: Any, path: str) -> str | None:
        text = self.string(value, path)
        if text is None:
            return None
        try:
            return str(ipaddress.IPv4Address(text))
        except ValueError:
            self.error(path, f"{text!r} is not an IPv4 address")
            return None


def _kind_of(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string"}.get(type(value), repr(value))


def _object_label(kind: str, meta: Any, where: str) -> str:
    """How messages name an object: ``Pod demo/client``; by position when it has no name."""
    meta = meta if isinstance(meta, dict) else {}
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        return f"{kind} ({where})"
    if kind == "Namespace":
        return f"Namespace {name}"
    namespace = meta.get("namespace") or DEFAULT_NAMESPACE
    return f"{kind} {namespace}/{name}"


def parse_objects(documents: Iterable[Any], source: str) -> KubeObjects:
    """Validated objects from Kubernetes-shaped dicts (``None`` entries, empty documents, are skipped).

    ``kind: List`` documents are expanded. Raises ConfigError with every problem found.
    """
    errors: list[str] = []
    namespaces: list[Namespace] = []
    pods: list[Pod] = []
    services: list[Service] = []
    seen: dict[str, str] = {}  # object label -> where it was first defined

    for where, doc in _flatten(documents, source, errors):
        kind = doc.get("kind")
        if not isinstance(kind, str) or not kind:
            errors.append(f"{where}: kind: required (one of {', '.join(SUPPORTED_KINDS)})")
            continue
        label = _object_label(kind, doc.get("metadata"), where)
        fields = _Fields(label, errors)
        if kind not in SUPPORTED_KINDS:
            fields.error("kind", f"unsupported kind {kind!r} (nodemesh reads "
                                 f"{', '.join(SUPPORTED_KINDS)})")
            continue
        if doc.get("apiVersion") != "v1":
            fields.error("apiVersion", f"must be v1 for a {kind}, got {doc.get('apiVersion')!r}")
        if label in seen:
            fields.error("metadata.name", f"defined twice ({seen[label]} and {where})")
            continue
        seen[label] = where
        if kind == "Namespace":
            namespaces.append(_parse_namespace(doc, fields))
        elif kind == "Pod":
            pods.append(_parse_pod(doc, fields))
        else:
            services.append(_parse_service(doc, fields))

    _check_references(namespaces, pods, services, errors)
    if errors:
        raise ConfigError(errors)
    return KubeObjects(tuple(namespaces), tuple(pods), tuple(services))


def _flatten(documents: Iterable[Any], source: str, errors: list[str]) -> Iterable[tuple[str, dict]]:
    """(where, object) for each object, with ``kind: List`` items in place of their list."""
    for number, doc in enumerate(documents, start=1):
        where = f"{source} document {number}"
        if doc is None:
            continue
        if not isinstance(doc, dict):
            errors.append(f"{where}: expected a Kubernetes object (a mapping with apiVersion and "
                          f"kind), got {_kind_of(doc)}")
            continue
        if doc.get("kind") != "List":
            yield where, doc
            continue
        items = _Fields(f"List ({where})", errors).items(doc.get("items"), "items")
        for i, item in enumerate(items):
            if isinstance(item, dict):
                yield f"{where} items[{i}]", item
            else:
                errors.append(f"List ({where}): items[{i}]: expected a Kubernetes object, "
                              f"got {_kind_of(item)}")


def _metadata(doc: dict, fields: _Fields, name_rule: re.Pattern[str], limit: int,
              what: str) -> tuple[str, dict[str, Any]]:
    meta = fields.mapping(doc.get("metadata"), "metadata")
    name = fields.name(meta.get("name"), "metadata.name", name_rule, limit, what)
    if name is None:
        fields.error("metadata.name", "required")
    return name or "", meta


def _labels(meta: dict[str, Any], fields: _Fields) -> dict[str, str]:
    return fields.string_map(meta.get("labels"), "metadata.labels")


def _namespace_of(meta: dict[str, Any], fields: _Fields) -> str:
    return fields.name(meta.get("namespace"), "metadata.namespace", _DNS1123_LABEL, 63,
                       "namespace name") or DEFAULT_NAMESPACE


def _parse_namespace(doc: dict, fields: _Fields) -> Namespace:
    name, meta = _metadata(doc, fields, _DNS1123_LABEL, 63, "namespace name")
    return Namespace(name=name, labels=_labels(meta, fields))


def _parse_pod(doc: dict, fields: _Fields) -> Pod:
    name, meta = _metadata(doc, fields, _DNS1123_SUBDOMAIN, 253, "pod name")
    spec = fields.mapping(doc.get("spec"), "spec")
    status = fields.mapping(doc.get("status"), "status")
    node_name = fields.name(spec.get("nodeName"), "spec.nodeName", _DNS1123_SUBDOMAIN, 253,
                            "node name")
    if node_name is None:
        fields.error("spec.nodeName", "required (the node the pod runs on)")
    if spec.get("containers") in (None, []):
        fields.error("spec.containers", "required (at least one container)")
    containers = tuple(_parse_container(c, f"spec.containers[{i}]", fields)
                       for i, c in enumerate(fields.items(spec.get("containers"), "spec.containers")))
    return Pod(
        namespace=_namespace_of(meta, fields),
        name=name,
        uid=fields.string(meta.get("uid"), "metadata.uid"),
        node_name=node_name or "",
        service_account=fields.name(spec.get("serviceAccountName"), "spec.serviceAccountName",
                                    _DNS1123_SUBDOMAIN, 253, "service account name")
        or DEFAULT_SERVICE_ACCOUNT,
        labels=_labels(meta, fields),
        pod_ip=fields.ipv4(status.get("podIP"), "status.podIP"),
        containers=containers,
        owner=_owner(meta, fields),
    )


def _owner(meta: dict[str, Any], fields: _Fields) -> Owner | None:
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


def _parse_container(value: Any, path: str, fields: _Fields) -> Container:
    spec = fields.mapping(value, path)
    name = fields.name(spec.get("name"), f"{path}.name", _DNS1123_LABEL, 63, "container name")
    if name is None:
        fields.error(f"{path}.name", "required")
    env = {}
    for i, var in enumerate(fields.items(spec.get("env"), f"{path}.env")):
        var = fields.mapping(var, f"{path}.env[{i}]")
        if "valueFrom" in var:
            fields.error(f"{path}.env[{i}].valueFrom", "not supported (give a value)")
        var_name = fields.string(var.get("name"), f"{path}.env[{i}].name")
        if var_name is None:
            fields.error(f"{path}.env[{i}].name", "required")
            continue
        env[var_name] = fields.string(var.get("value"), f"{path}.env[{i}].value", default="")
    ports = []
    for i, port in enumerate(fields.items(spec.get("ports"), f"{path}.ports")):
        port = fields.mapping(port, f"{path}.ports[{i}]")
        number = fields.port(port.get("containerPort"), f"{path}.ports[{i}].containerPort")
        port_name = fields.name(port.get("name"), f"{path}.ports[{i}].name", _PORT_NAME, 15,
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
    )


def _parse_service(doc: dict, fields: _Fields) -> Service:
    name, meta = _metadata(doc, fields, _DNS1035_LABEL, 63, "service name")
    spec = fields.mapping(doc.get("spec"), "spec")
    cluster_ip = spec.get("clusterIP")
    if cluster_ip == "None":
        fields.error("spec.clusterIP", "headless services (None) are not supported; "
                                       "leave it out to get a virtual IP")
        cluster_ip = None
    raw_ports = fields.items(spec.get("ports"), "spec.ports")
    if not raw_ports:
        fields.error("spec.ports", "required (at least one port)")
    parsed = [_parse_service_port(raw, i, len(raw_ports), fields) for i, raw in enumerate(raw_ports)]
    ports = tuple(p for p in parsed if p is not None)
    _check_unique(fields, "spec.ports", "port", [p.port for p in ports])
    _check_unique(fields, "spec.ports", "name", [p.name for p in ports if p.name])
    return Service(
        namespace=_namespace_of(meta, fields),
        name=name,
        selector=fields.string_map(spec.get("selector"), "spec.selector"),
        ports=ports,
        cluster_ip=fields.ipv4(cluster_ip, "spec.clusterIP"),
    )


def _parse_service_port(value: Any, i: int, count: int, fields: _Fields) -> ServicePortSpec | None:
    path = f"spec.ports[{i}]"
    spec = fields.mapping(value, path)
    name = fields.name(spec.get("name"), f"{path}.name", _PORT_NAME, 15, "port name")
    if name is None and count > 1:
        fields.error(f"{path}.name", "required when a service has more than one port")
    if spec.get("protocol") not in (None, "TCP"):
        fields.error(f"{path}.protocol", f"only TCP is supported, got {spec.get('protocol')!r}")
    port = fields.port(spec.get("port"), f"{path}.port")
    target: Any = spec.get("targetPort")
    if target is None:
        target = port
    elif isinstance(target, str):
        if target.isdigit() or not _PORT_NAME.fullmatch(target) or len(target) > 15:
            fields.error(f"{path}.targetPort", f"must be a number or a container port name, "
                                               f"got {target!r}")
            return None
    else:
        target = fields.port(target, f"{path}.targetPort")
    if port is None or target is None:
        return None
    return ServicePortSpec(name=name or "", port=port, target_port=target)


def _check_unique(fields: _Fields, path: str, what: str, values: list[Any]) -> None:
    seen = set()
    for value in values:
        if value in seen:
            fields.error(path, f"{what} {value!r} is used twice")
        seen.add(value)


def _check_references(namespaces: list[Namespace], pods: list[Pod], services: list[Service],
                      errors: list[str]) -> None:
    """Namespaced objects must live in a defined namespace, as the Kubernetes API insists.

    ``default`` always exists in Kubernetes, so it needs no Namespace object.
    """
    defined = {ns.name for ns in namespaces} | {DEFAULT_NAMESPACE}
    for kind, objs in (("Pod", pods), ("Service", services)):
        for obj in objs:
            if obj.namespace not in defined:
                errors.append(f"{kind} {obj.ref}: metadata.namespace: namespace "
                              f"{obj.namespace!r} is not defined (add a Namespace object named "
                              f"{obj.namespace})")
    uids: dict[str, str] = {}
    for pod in pods:
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
