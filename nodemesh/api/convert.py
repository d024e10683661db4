"""Model values <-> protobuf messages: the only place that knows both shapes."""

from __future__ import annotations

from nodemesh.api import mesh_pb2 as pb
from nodemesh.model import PERMISSIVE, Node, Service, ServicePort, Workload, frozen_labels


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


def service_to_pb(s: Service) -> pb.Service:
    return pb.Service(
        name=s.name, namespace=s.namespace, vip=s.vip,
        ports=[pb.ServicePort(name=p.name, port=p.port, target_port=p.target_port) for p in s.ports],
        endpoints=list(s.endpoints),
    )


def service_from_pb(m: pb.Service) -> Service:
    return Service(
        name=m.name, namespace=m.namespace, vip=m.vip,
        ports=tuple(ServicePort(p.name, p.port, p.target_port) for p in m.ports),
        endpoints=tuple(m.endpoints),
    )


def node_to_pb(n: Node) -> pb.Node:
    return pb.Node(name=n.name, ip=n.ip, pod_cidr=n.pod_cidr)


def node_from_pb(m: pb.Node) -> Node:
    return Node(name=m.name, ip=m.ip, pod_cidr=m.pod_cidr)
