"""Our TrafficPolicy (``nodemesh.io/v1alpha1``) and Gateway API's TCPRoute
(``gateway.networking.k8s.io/v1alpha2``, attached to a Service as GAMMA does): parsed and
validated as Kubernetes-level values.

What each object says on its own is checked here (fields, ranges, durations, that references
name Services of the object's namespace); whether the Services exist, have those ports, and
whether two objects claim the same Service is for the model (``controller/model/traffic.py``),
which sees every object at once. Unknown fields are errors, as in policies: a misspelt
``maxConections`` would silently leave a service unprotected.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from nodemesh.controller.kube.fields import DNS1123_SUBDOMAIN, Fields, Namespaced, metadata, namespace_of
from nodemesh.model import LOAD_BALANCERS, ROUND_ROBIN, OutlierDetection, TrafficPolicy

TRAFFIC_POLICY = "TrafficPolicy"
TRAFFIC_POLICY_API_VERSIONS = ("nodemesh.io/v1alpha1",)
TCP_ROUTE = "TCPRoute"
TCP_ROUTE_API_VERSIONS = ("gateway.networking.k8s.io/v1alpha2",)

PREFER_CLOSE = "PreferClose"
ANY_LOCALITY = "Any"
LOCALITIES = (PREFER_CLOSE, ANY_LOCALITY)
MAX_RETRIES = 10
MAX_WEIGHT = 1_000_000  # Gateway API's bound
_MAX_COUNT = 1_000_000  # failures, connections, a burst: far beyond use, within the wire's uint32

_TRAFFIC_SPEC = ("targetRefs", "loadBalancer", "locality", "connectTimeout", "connectRetries",
                 "outlierDetection", "circuitBreaker", "idleTimeout", "rateLimit")
_OUTLIER = ("consecutiveFailures", "baseEjectionTime", "maxEjectionTime", "maxEjectionPercent")


@dataclass(frozen=True)
class ServiceRef:
    """A reference to a Service of the referring object's namespace; ``path`` names it in messages."""

    name: str
    path: str
    port: int = 0  # a parentRef's or backendRef's port; 0: none given (a parent's every port)
    weight: int = 1  # a backendRef's


@dataclass(frozen=True)
class KubeTrafficPolicy(Namespaced):
    targets: tuple[ServiceRef, ...]
    settings: TrafficPolicy  # prefer_close left False: it depends on the Service too
    locality: str | None  # PreferClose | Any; None: as the Service's spec.trafficDistribution says


@dataclass(frozen=True)
class TCPRoute(Namespaced):
    parents: tuple[ServiceRef, ...]
    backends: tuple[ServiceRef, ...]  # the one rule's backendRefs


def parse_traffic_policy(doc: dict, fields: Fields) -> KubeTrafficPolicy:
    name, meta = metadata(doc, fields, DNS1123_SUBDOMAIN, 253, "TrafficPolicy name")
    namespace = namespace_of(meta, fields)
    spec = fields.strict(doc.get("spec"), "spec", _TRAFFIC_SPEC)
    targets = tuple(ServiceRef(name, path) for path, name, _ in
                    _refs(spec.get("targetRefs"), "spec.targetRefs", ("group", "kind", "name"),
                          namespace, fields, kind_required=True))
    settings = TrafficPolicy(
        load_balancer=fields.choice(spec.get("loadBalancer"), "spec.loadBalancer", LOAD_BALANCERS,
                                    ROUND_ROBIN),
        connect_timeout=fields.duration(spec.get("connectTimeout"), "spec.connectTimeout") or 0.0,
        idle_timeout=fields.duration(spec.get("idleTimeout"), "spec.idleTimeout") or 0.0,
        outlier_detection=_outlier_detection(spec.get("outlierDetection"), fields),
    )
    retries = fields.integer(spec.get("connectRetries"), "spec.connectRetries", 0, MAX_RETRIES)
    if retries is not None:
        settings = replace(settings, connect_retries=retries)
    breaker = fields.strict(spec.get("circuitBreaker"), "spec.circuitBreaker",
                            ("maxConnections", "maxPendingConnects"))
    settings = replace(
        settings,
        max_connections=fields.integer(breaker.get("maxConnections"),
                                       "spec.circuitBreaker.maxConnections", 1, _MAX_COUNT) or 0,
        max_pending=fields.integer(breaker.get("maxPendingConnects"),
                                   "spec.circuitBreaker.maxPendingConnects", 1, _MAX_COUNT) or 0,
    )
    settings = _rate_limit(spec, settings, fields)
    locality = fields.string(spec.get("locality"), "spec.locality")
    if locality is not None and locality not in LOCALITIES:
        fields.error("spec.locality", f"{locality!r} is not one of {', '.join(LOCALITIES)}")
        locality = None
    return KubeTrafficPolicy(namespace=namespace, name=name, targets=targets, settings=settings,
                             locality=locality)


def _outlier_detection(value: Any, fields: Fields) -> OutlierDetection:
    spec = fields.strict(value, "spec.outlierDetection", _OUTLIER)
    default = OutlierDetection()
    path = "spec.outlierDetection"
    failures = fields.integer(spec.get("consecutiveFailures"), f"{path}.consecutiveFailures", 0,
                              _MAX_COUNT)
    percent = fields.integer(spec.get("maxEjectionPercent"), f"{path}.maxEjectionPercent", 0, 100)
    result = OutlierDetection(
        consecutive_failures=default.consecutive_failures if failures is None else failures,
        base_ejection=fields.duration(spec.get("baseEjectionTime"), f"{path}.baseEjectionTime")
        or default.base_ejection,
        max_ejection=fields.duration(spec.get("maxEjectionTime"), f"{path}.maxEjectionTime")
        or default.max_ejection,
        max_ejected_percent=default.max_ejected_percent if percent is None else percent,
    )
    if result.base_ejection > result.max_ejection:
        fields.error(path, f"baseEjectionTime ({result.base_ejection:g}s) is longer than "
                           f"maxEjectionTime ({result.max_ejection:g}s)")
    return result


def _rate_limit(spec: dict[str, Any], settings: TrafficPolicy, fields: Fields) -> TrafficPolicy:
    """New connections per second per source workload; the burst defaults to the model's
    (``TrafficPolicy.bucket_size``: one second's worth), written out so the model says it."""
    if spec.get("rateLimit") is None:
        return settings
    path = "spec.rateLimit"
    limit = fields.strict(spec.get("rateLimit"), path, ("connectionsPerSecond", "burst"))
    rate = fields.positive(limit.get("connectionsPerSecond"), f"{path}.connectionsPerSecond")
    if rate is None:
        if "connectionsPerSecond" not in limit:
            fields.error(f"{path}.connectionsPerSecond", "required")
        return settings
    burst = fields.integer(limit.get("burst"), f"{path}.burst", 1, _MAX_COUNT)
    limited = replace(settings, rate_limit=rate, rate_burst=burst or 0)
    return replace(limited, rate_burst=limited.bucket_size())


def parse_tcp_route(doc: dict, fields: Fields) -> TCPRoute:
    name, meta = metadata(doc, fields, DNS1123_SUBDOMAIN, 253, "TCPRoute name")
    namespace = namespace_of(meta, fields)
    spec = fields.strict(doc.get("spec"), "spec", ("parentRefs", "rules"))
    parents = tuple(
        ServiceRef(name, path, port=_port(ref, path, fields, required=False))
        for path, name, ref in _refs(spec.get("parentRefs"), "spec.parentRefs",
                                     ("group", "kind", "namespace", "name", "sectionName", "port"),
                                     namespace, fields, kind_required=True))
    rules = fields.items(spec.get("rules"), "spec.rules")
    if len(rules) != 1:
        fields.error("spec.rules", f"must hold exactly one rule (its backendRefs split the "
                                   f"traffic), got {len(rules)}")
    rule = fields.strict(rules[0] if rules else None, "spec.rules[0]", ("backendRefs",))
    backends = tuple(
        ServiceRef(name, path, port=_port(ref, path, fields, required=True),
                   weight=_weight(ref, path, fields))
        for path, name, ref in _refs(rule.get("backendRefs"), "spec.rules[0].backendRefs",
                                     ("group", "kind", "namespace", "name", "port", "weight"),
                                     namespace, fields, kind_required=False))
    if backends and all(b.weight == 0 for b in backends):
        fields.error("spec.rules[0].backendRefs", "every weight is 0: give at least one backend "
                                                  "a weight above 0")
    return TCPRoute(namespace=namespace, name=name, parents=parents, backends=backends)


def _port(ref: dict[str, Any], path: str, fields: Fields, required: bool) -> int:
    """A parentRef's port (optional: 0 for all) or a backendRef's (required, as Gateway API has
    it for Services)."""
    if ref.get("port") is None:
        if required:
            fields.error(f"{path}.port", "required (the backend Service's port)")
        return 0
    return fields.port(ref.get("port"), f"{path}.port") or 0


def _weight(ref: dict[str, Any], path: str, fields: Fields) -> int:
    weight = fields.integer(ref.get("weight"), f"{path}.weight", 0, MAX_WEIGHT)
    return 1 if weight is None else weight


def _refs(value: Any, path: str, known: tuple[str, ...], namespace: str, fields: Fields,
          kind_required: bool) -> list[tuple[str, str, dict[str, Any]]]:
    """(path, name, the reference's fields) of Gateway API object references to Services of
    ``namespace``, at least one. A bad reference is recorded and still returned (with a default
    name): the errors refuse the file before any model is built from it.

    ``kind`` is required where Gateway API's default is not Service (targetRefs, and parentRefs,
    whose default is a Gateway); backendRefs default to Services.
    """
    items = fields.items(value, path)
    if not items:
        fields.error(path, "required (at least one Service)")
    refs = []
    for i, item in enumerate(items):
        item_path = f"{path}[{i}]"
        ref = fields.strict(item, item_path, known)
        _check_service_ref(ref, item_path, namespace, fields, kind_required)
        name = fields.string(ref.get("name"), f"{item_path}.name")
        if name is None:
            fields.error(f"{item_path}.name", "required")
        refs.append((item_path, name or "", ref))
    return refs


def _check_service_ref(ref: dict[str, Any], path: str, namespace: str, fields: Fields,
                       kind_required: bool) -> None:
    group = fields.string(ref.get("group"), f"{path}.group", default="")
    if group not in ("", "core"):
        fields.error(f"{path}.group", f"must be \"\" (the core group of Services), got {group!r}")
    kind = fields.string(ref.get("kind"), f"{path}.kind", default=None if kind_required else "Service")
    if kind is None:
        fields.error(f"{path}.kind", "required: Service")
    elif kind != "Service":
        fields.error(f"{path}.kind", f"only Services can be referred to, got {kind!r}")
    if fields.string(ref.get("namespace"), f"{path}.namespace", default=namespace) != namespace:
        fields.error(f"{path}.namespace", f"must be the object's own namespace {namespace!r} "
                                          "(references to other namespaces are not supported)")
    if "sectionName" in ref:
        fields.error(f"{path}.sectionName", "not supported (give the Service's port)")
