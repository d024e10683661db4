"""Kubernetes objects -> the mesh model: the one code path every source goes through.

Pure: it reads the addresses assigned so far and returns the model with the address plan it was
built with, and the warnings the source should log (valid objects that do less than they say),
and writes nothing. Either it builds whole or it raises ModelError listing every
problem; the source persists the plan only after a model built whole, so that a refused model
leaves the address state as it was.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from nodemesh.controller.kube import objects as kube
from nodemesh.controller.kube.objects import KubeObjects
from nodemesh.controller.model.cluster import GivenAddresses, SliceEndpoints, in_cluster
from nodemesh.controller.model.ipam import Assignments, Plan, plan_addresses
from nodemesh.controller.model.policies import l7_warnings
from nodemesh.controller.model.traffic import split_backends, traffic_settings
from nodemesh.controller.model.workloads import canonical_revision, canonical_service, workload_name
from nodemesh.controller.problems import Problems
from nodemesh.identity import DEFAULT_TRUST_DOMAIN, Identity
from nodemesh.model import (
    MTLS_MODE_LABEL,
    PERMISSIVE,
    STRICT,
    ZONE_LABEL,
    MeshModel,
    Node,
    Service,
    ServicePort,
    Workload,
    frozen_labels,
)

# uuid5 namespace for workloads without metadata.uid: the same pod name gives the same uid on
# every start, so agents and certificates keep referring to the same workload.
_UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://nodemesh.io/workload")

# target_port of a named targetPort that no endpoint resolves: with no endpoint, no connection
# can use it.
UNRESOLVED_TARGET_PORT = 0


class ModelError(Problems):
    """Objects that parse but make no mesh model (addresses that clash, ports that do not
    resolve, labels with unknown values); ``errors`` lists every problem."""


@dataclass(frozen=True)
class Built:
    model: MeshModel
    # what the model's addresses come from, to persist once the model is adopted; None when
    # Kubernetes assigned them (kube mode: nothing to keep)
    addresses: Plan | None
    warnings: tuple[str, ...] = ()  # for the source to log, once per load


def workload_uid(pod: kube.Pod) -> str:
    return pod.uid or str(uuid.uuid5(_UID_NAMESPACE, pod.ref))


def build_model(objects: KubeObjects, assigned: Assignments | None,
                trust_domain: str = DEFAULT_TRUST_DOMAIN) -> Built:
    """The model for ``objects``, with addresses planned from those ``assigned`` before (local
    mode), or, with ``assigned`` None, as Kubernetes assigned them (kube mode, ``cluster.py``);
    workload identities are SPIFFE ids in ``trust_domain``."""
    errors: list[str] = []
    kube_mode = assigned is None
    if kube_mode:
        objects = in_cluster(objects)
    mtls_modes = {ns.name: _mtls_mode(ns, errors) for ns in objects.namespaces}
    uids = {pod.ref: workload_uid(pod) for pod in objects.pods}
    services = []
    sliced = SliceEndpoints(objects) if kube_mode else None
    for svc in objects.services:
        endpoints = sliced(svc) if sliced is not None else select_endpoints(svc, objects.pods)
        ports = tuple(_resolve_port(svc, i, spec, endpoints, errors) for i, spec in enumerate(svc.ports))
        services.append((svc, ports, tuple(uids[pod.ref] for pod in endpoints)))
    traffic = traffic_settings(objects, errors)
    backends = split_backends(objects, errors)
    plan = None if assigned is None else plan_addresses(assigned, objects)
    addresses = GivenAddresses(objects) if plan is None else plan
    if plan is not None:
        errors.extend(plan.errors)
    if errors:
        raise ModelError(errors)

    meshed = {ns.name for ns in objects.namespaces if ns.meshed}
    workloads = [
        Workload(uid=uids[pod.ref], name=pod.name, namespace=pod.namespace,
                 service_account=pod.service_account, node=pod.node_name,
                 ip=addresses.pod_ip(pod.ref), labels=frozen_labels(pod.labels),
                 meshed=pod.namespace in meshed,
                 identity=str(Identity(trust_domain, pod.namespace, pod.service_account)),
                 mtls_mode=mtls_modes.get(pod.namespace, PERMISSIVE), workload_name=workload_name(pod),
                 canonical_service=canonical_service(pod), canonical_revision=canonical_revision(pod))
        for pod in objects.pods
    ]
    model_services = [
        Service(name=svc.name, namespace=svc.namespace, vip=addresses.service_vip(svc.ref),
                ports=ports, endpoints=endpoints, traffic=traffic[svc.ref],
                backends=backends.get(svc.ref, ()))
        for svc, ports, endpoints in services
    ]
    # Locally the mesh's nodes are those pods run on; a Node object only gives one its zone (a
    # Node object of a node without pods adds nothing until a pod runs there). On a cluster the
    # Node objects are the nodes.
    zones = {node.name: node.labels.get(ZONE_LABEL, "") for node in objects.nodes}
    names = ({node.name for node in objects.nodes} if kube_mode
             else {pod.node_name for pod in objects.pods})
    nodes = [Node(name=name, ip=addresses.node_ip(name), pod_cidr=addresses.node_pod_cidr(name),
                  zone=zones.get(name, ""))
             for name in sorted(names)]
    model = MeshModel(
        workloads={w.uid: w for w in workloads},
        services={s.key: s for s in model_services},
        nodes={n.name: n for n in nodes},
        policies={p.key: p for p in objects.authorization_policies},
    )
    return Built(model, plan, l7_warnings(objects.authorization_policies))


def _mtls_mode(ns: kube.Namespace, errors: list[str]) -> str:
    """The namespace's mTLS mode label, STRICT or PERMISSIVE in any case; PERMISSIVE when absent."""
    value = ns.labels.get(MTLS_MODE_LABEL)
    if value is None:
        return PERMISSIVE
    if value.upper() in (STRICT, PERMISSIVE):
        return value.upper()
    errors.append(f"Namespace {ns.name}: metadata.labels.{MTLS_MODE_LABEL}: {value!r} is not "
                  f"{STRICT} or {PERMISSIVE}")
    return PERMISSIVE


def select_endpoints(svc: kube.Service, pods: tuple[kube.Pod, ...]) -> list[kube.Pod]:
    """Pods of the service's namespace whose labels match its selector, by pod name.

    An empty selector selects nothing, as in Kubernetes (such services are given endpoints by
    hand there, which the mesh does not read).
    """
    if not svc.selector:
        return []
    return sorted(
        (pod for pod in pods
         if pod.namespace == svc.namespace
         and all(pod.labels.get(k) == v for k, v in svc.selector.items())),
        key=lambda pod: pod.name,
    )


def _resolve_port(svc: kube.Service, index: int, spec: kube.ServicePortSpec,
                  endpoints: list[kube.Pod], errors: list[str]) -> ServicePort:
    """A named targetPort becomes the number every endpoint gives that name.

    The model has one target port per service port, so endpoints that disagree (or lack the name)
    are an error rather than a silently unreachable pod.
    """
    if isinstance(spec.target_port, int):
        return ServicePort(name=spec.name, port=spec.port, target_port=spec.target_port)
    field = f"Service {svc.ref}: spec.ports[{index}].targetPort"
    numbers: dict[int, str] = {}
    for pod in endpoints:
        number = pod.port_named(spec.target_port)
        if number is None:
            errors.append(f"{field}: endpoint Pod {pod.ref} has no container port named "
                          f"{spec.target_port!r} (add it to the pod's ports, or give a number)")
        else:
            numbers.setdefault(number, pod.ref)
    if len(numbers) > 1:
        found = ", ".join(f"{n} on Pod {ref}" for n, ref in numbers.items())
        errors.append(f"{field}: port name {spec.target_port!r} means different ports on the "
                      f"endpoints ({found}); give every endpoint the same number")
    target = next(iter(numbers), UNRESOLVED_TARGET_PORT)
    return ServicePort(name=spec.name, port=spec.port, target_port=target)
