"""Kube-mode model semantics and per-object rejection: objects as the API serves them, parsed one
by one (``parse_object``), built into a model that leaves out only the objects a problem blames."""

from __future__ import annotations

import pytest

from nodemesh.controller.kube.objects import ConfigError, parse_object
from nodemesh.controller.model.partial import build_leaving_out


def ns(name, labels=None):
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}}


def node(name, ip="172.30.0.1", cidr="10.10.1.0/24", zone=None):
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": zone} if zone else {}},
            "spec": {"podCIDR": cidr} if cidr else {},
            "status": {"addresses": [{"type": "Hostname", "address": name},
                                     {"type": "InternalIP", "address": ip}] if ip else []}}


def pod(name, ip, node_name="n1", namespace="shop", phase="Running", host_network=False,
        labels=None, env=None):
    spec = {"nodeName": node_name, "hostNetwork": host_network,
            "containers": [{"name": "c", "env": env or [], "ports": [{"containerPort": 8080, "name": "http"}]}]}
    if node_name is None:
        del spec["nodeName"]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}",
                         "labels": labels or {"app": "web"}},
            "spec": spec, "status": {"phase": phase, **({"podIP": ip} if ip else {})}}


def service(name, cluster_ip="10.96.0.20", namespace="shop", ports=None):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": {"app": "web"}, "clusterIP": cluster_ip,
                     "ports": ports or [{"name": "http", "port": 80, "targetPort": "http"}]}}


def endpoint_slice(name, service_name, endpoints, namespace="shop"):
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {"kubernetes.io/service-name": service_name}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.10.1.10"], "conditions": conditions,
                           "targetRef": {"kind": "Pod", "namespace": namespace, "name": pod_name,
                                         "uid": f"uid-{pod_name}"}}
                          for pod_name, conditions in endpoints]}


def traffic_policy(name, target, spec=None):
    return {"apiVersion": "nodemesh.io/v1alpha1", "kind": "TrafficPolicy",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"targetRefs": [{"kind": "Service", "name": target}], **(spec or {})}}


def parsed(*docs):
    """As the source holds them: by label, each parsed on its own."""
    result = {}
    for doc in docs:
        meta = doc["metadata"]
        key = f"{meta['namespace']}/{meta['name']}" if "namespace" in meta else meta["name"]
        label = f"{doc['kind']} {key}"
        result[label] = parse_object(doc, label)
    return result


def model_of(*docs):
    built, left_out = build_leaving_out(parsed(*docs))
    return built.model, left_out


MESHED = ns("shop", {"nodemesh.io/mesh": "enabled"})


def test_addresses_are_kubernetes_own_and_nothing_is_planned():
    built, left_out = build_leaving_out(parsed(
        MESHED, node("n1", "192.168.5.7", "10.244.3.0/24", zone="z1"),
        pod("web-a", "10.244.3.9"), service("web", "10.100.7.7"),
        endpoint_slice("web-x", "web", [("web-a", {"ready": True})])))
    model = built.model
    assert built.addresses is None and left_out == {}
    assert [(n.name, n.ip, n.pod_cidr, n.zone) for n in model.nodes.values()] == [
        ("n1", "192.168.5.7", "10.244.3.0/24", "z1")]
    (workload,) = model.workloads.values()
    assert (workload.uid, workload.ip, workload.node, workload.meshed) == ("uid-web-a", "10.244.3.9", "n1", True)
    svc = model.services["shop/web"]
    assert svc.vip == "10.100.7.7" and svc.endpoints == ("uid-web-a",)
    assert [(p.port, p.target_port) for p in svc.ports] == [(80, 8080)]


def test_endpoints_are_the_ready_pods_of_the_services_slices_not_its_selector():
    model, _ = model_of(
        MESHED, node("n1"),
        pod("a", "10.10.1.10"), pod("b", "10.10.1.11"), pod("c", "10.10.1.12"), pod("d", "10.10.1.13"),
        service("web"), service("other", "10.96.0.21"),
        endpoint_slice("web-1", "web", [("a", {"ready": True}), ("b", {"ready": False})]),
        endpoint_slice("web-2", "web", [("c", {})]),  # ready absent: ready, as the API says
        endpoint_slice("other-1", "other", [("d", {"ready": True})]))
    assert model.services["shop/web"].endpoints == ("uid-a", "uid-c")
    assert model.services["shop/other"].endpoints == ("uid-d",)


@pytest.mark.parametrize("doc", [
    pod("no-ip", None),
    pod("pending", None, node_name=None, phase="Pending"),
    pod("host", "172.30.0.1", host_network=True),
    pod("done", "10.10.1.20", phase="Succeeded"),
    pod("failed", "10.10.1.21", phase="Failed"),
    pod("elsewhere", "10.10.2.10", node_name="n2"),  # its Node has not appeared yet
])
def test_pods_that_are_not_workloads_are_left_out_quietly(doc):
    model, left_out = model_of(MESHED, node("n1"), doc, pod("real", "10.10.1.10"))
    assert [w.name for w in model.workloads.values()] == ["real"] and left_out == {}


def test_a_node_without_an_internal_ip_waits_with_its_pods():
    model, _ = model_of(MESHED, node("n1", ip=None), pod("a", "10.10.1.10"))
    assert model.nodes == {} and model.workloads == {}


def test_a_node_without_a_pod_cidr_is_a_node_all_the_same():
    model, _ = model_of(MESHED, node("n1", cidr=None), pod("a", "10.10.1.10"))
    assert model.nodes["n1"].pod_cidr == "" and len(model.workloads) == 1


def test_headless_services_and_other_protocols_are_no_problem_in_kube_mode():
    dns = service("kube-dns", "10.96.0.10", ports=[{"name": "dns", "port": 53, "protocol": "UDP"},
                                                   {"name": "dns-tcp", "port": 53, "protocol": "TCP"}])
    model, left_out = model_of(MESHED, node("n1"), service("db", "None"), dns)
    assert left_out == {} and set(model.services) == {"shop/kube-dns"}
    assert [p.port for p in model.services["shop/kube-dns"].ports] == [53]


def test_external_name_services_are_no_mesh_services():
    alias = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db", "namespace": "shop"},
             "spec": {"type": "ExternalName", "externalName": "db.example.com"}}
    model, left_out = model_of(MESHED, node("n1"), alias)
    assert left_out == {} and model.services == {}


def test_a_dual_stack_node_gives_its_ipv4_address():
    dual = node("n1", "fd00::1")
    dual["status"]["addresses"].append({"type": "InternalIP", "address": "172.30.0.9"})
    model, _ = model_of(MESHED, dual)
    assert model.nodes["n1"].ip == "172.30.0.9"


def test_env_from_other_fields_is_kubernetes_business():
    env = [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]
    model, left_out = model_of(MESHED, node("n1"), pod("a", "10.10.1.10", env=env))
    assert left_out == {} and len(model.workloads) == 1


@pytest.mark.parametrize("labels, meshed", [
    ({"nodemesh.io/mesh": "enabled"}, True),
    ({"istio.io/dataplane-mode": "ambient"}, True),
    ({"istio.io/dataplane-mode": "none"}, False),
    ({}, False),
])
def test_meshed_namespaces(labels, meshed):
    model, _ = model_of(ns("shop", labels), node("n1"), pod("a", "10.10.1.10"))
    assert [w.meshed for w in model.workloads.values()] == [meshed]


def test_a_bad_object_is_rejected_alone_naming_its_field():
    with pytest.raises(ConfigError) as exc:
        parse_object(traffic_policy("bad", "web", {"loadBalancer": "RANDOMISH"}), "TrafficPolicy shop/bad")
    assert exc.value.errors == ["TrafficPolicy shop/bad: spec.loadBalancer: 'RANDOMISH' is not one "
                                "of RoundRobin, LeastConnections, PowerOfTwoChoices"]


def test_model_conflicts_leave_out_the_object_blamed_and_the_rest_builds():
    model, left_out = model_of(
        MESHED, node("n1"), pod("a", "10.10.1.10"), service("web"),
        endpoint_slice("web-1", "web", [("a", {"ready": True})]),
        traffic_policy("first", "web", {"loadBalancer": "PowerOfTwoChoices"}),
        traffic_policy("second", "web", {"loadBalancer": "LeastConnections"}),
        traffic_policy("nowhere", "missing"))
    assert set(left_out) == {"TrafficPolicy shop/second", "TrafficPolicy shop/nowhere"}
    assert "also the target of TrafficPolicy shop/first" in left_out["TrafficPolicy shop/second"][0]
    assert "Service shop/missing is not defined" in left_out["TrafficPolicy shop/nowhere"][0]
    assert model.services["shop/web"].traffic.load_balancer == "PowerOfTwoChoices"
    assert model.services["shop/web"].endpoints == ("uid-a",)


def test_a_service_whose_endpoints_disagree_on_a_port_name_is_left_out_alone():
    other = pod("b", "10.10.1.11")
    other["spec"]["containers"][0]["ports"] = [{"containerPort": 9090, "name": "http"}]
    model, left_out = model_of(
        MESHED, node("n1"), pod("a", "10.10.1.10"), other, service("web"), service("ok", "10.96.0.30",
                                                                                  ports=[{"port": 80}]),
        endpoint_slice("web-1", "web", [("a", {}), ("b", {})]))
    assert list(left_out) == ["Service shop/web"]
    assert set(model.services) == {"shop/ok"} and len(model.workloads) == 2
