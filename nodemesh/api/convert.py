"""Model values <-> protobuf messages: the only place that knows both shapes."""

from __future__ import annotations

from dataclasses import fields

from nodemesh.api import mesh_pb2 as pb
from nodemesh.authz.policy import AuthorizationPolicy, Operation, Rule, Source
from nodemesh.model import (
    PERMISSIVE,
    Backend,
    Node,
    OutlierDetection,
    Service,
    ServicePort,
    TrafficPolicy,
    Workload,
    frozen_labels,
)


def workload_to_pb(w: Workload) -> pb.Workload:
    return pb.Workload(
        uid=w.uid, name=w.name, namespace=w.namespace, service_account=w.service_account,
        node=w.node, ip=w.ip, labels=dict(w.labels), meshed=w.meshed, identity=w.identity,
        mtls_mode=w.mtls_mode, workload_name=w.workload_name, canonical_service=w.canonical_service,
        canonical_revision=w.canonical_revision,
    )


def workload_from_pb(m: pb.Workload) -> Workload:
    return Workload(
        uid=m.uid, name=m.name, namespace=m.namespace, service_account=m.service_account,
        node=m.node, ip=m.ip, labels=frozen_labels(m.labels), meshed=m.meshed, identity=m.identity,
        mtls_mode=m.mtls_mode or PERMISSIVE, workload_name=m.workload_name,
        canonical_service=m.canonical_service, canonical_revision=m.canonical_revision,
    )


# TrafficPolicy fields on the wire: the outlier detection's are flattened with this prefix.
_OUTLIER = "outlier_"


def traffic_to_pb(t: TrafficPolicy) -> pb.TrafficPolicy:
    values = {f.name: getattr(t, f.name) for f in fields(t) if f.name != "outlier_detection"}
    od = t.outlier_detection
    values.update({_OUTLIER + f.name: getattr(od, f.name) for f in fields(od)})
    return pb.TrafficPolicy(**values)


def traffic_from_pb(m: pb.TrafficPolicy) -> TrafficPolicy:
    od = OutlierDetection(**{f.name: getattr(m, _OUTLIER + f.name) for f in fields(OutlierDetection)})
    values = {f.name: getattr(m, f.name) for f in fields(TrafficPolicy) if f.name != "outlier_detection"}
    return TrafficPolicy(**values, outlier_detection=od)


def service_to_pb(s: Service) -> pb.Service:
    return pb.Service(
        name=s.name, namespace=s.namespace, vip=s.vip,
        ports=[pb.ServicePort(name=p.name, port=p.port, target_port=p.target_port) for p in s.ports],
        endpoints=list(s.endpoints), traffic=traffic_to_pb(s.traffic),
        backends=[pb.Backend(service=b.service, port=b.port, weight=b.weight, parent_port=b.parent_port)
                  for b in s.backends],
    )


def service_from_pb(m: pb.Service) -> Service:
    return Service(
        name=m.name, namespace=m.namespace, vip=m.vip,
        ports=tuple(ServicePort(p.name, p.port, p.target_port) for p in m.ports),
        endpoints=tuple(m.endpoints),
        traffic=traffic_from_pb(m.traffic) if m.HasField("traffic") else TrafficPolicy(),
        backends=tuple(Backend(b.service, b.port, b.weight, b.parent_port) for b in m.backends),
    )


def node_to_pb(n: Node) -> pb.Node:
    return pb.Node(name=n.name, ip=n.ip, pod_cidr=n.pod_cidr, zone=n.zone)


def node_from_pb(m: pb.Node) -> Node:
    return Node(name=m.name, ip=m.ip, pod_cidr=m.pod_cidr, zone=m.zone)


def policy_to_pb(p: AuthorizationPolicy) -> pb.AuthorizationPolicy:
    return pb.AuthorizationPolicy(
        name=p.name, namespace=p.namespace, action=p.action, selector=dict(p.selector),
        rules=[pb.AuthorizationRule(
            sources=[pb.AuthorizationSource(**{f.name: getattr(s, f.name) for f in fields(s)})
                     for s in rule.sources],
            operations=[pb.AuthorizationOperation(ports=o.ports, not_ports=o.not_ports)
                        for o in rule.operations],
            l7=rule.l7) for rule in p.rules],
    )


def policy_from_pb(m: pb.AuthorizationPolicy) -> AuthorizationPolicy:
    return AuthorizationPolicy(
        name=m.name, namespace=m.namespace, action=m.action, selector=frozen_labels(m.selector),
        rules=tuple(Rule(
            sources=tuple(Source(**{f.name: tuple(getattr(s, f.name)) for f in fields(Source)})
                          for s in rule.sources),
            operations=tuple(Operation(tuple(o.ports), tuple(o.not_ports)) for o in rule.operations),
            l7=tuple(rule.l7)) for rule in m.rules),
    )
