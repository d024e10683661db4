"""TrafficPolicy, TCPRoute, Node objects and a Service's trafficDistribution: parsing, defaults,
and every error named by object and field."""

from __future__ import annotations

import pytest

from nodemesh.controller.kube.objects import ConfigError, parse_documents
from nodemesh.controller.kube.traffic import ServiceRef
from nodemesh.model import LEAST_CONNECTIONS, OutlierDetection, TrafficPolicy

NAMESPACE = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\n"
TARGET = '  targetRefs: [{group: "", kind: Service, name: web}]\n'
PARENT = '  parentRefs: [{group: "", kind: Service, name: web, port: 80}]\n'
SPLIT = "  rules: [{backendRefs: [{name: web-v1, port: 80, weight: 90}, {name: web-v2, port: 8080, weight: 10}]}]\n"


def traffic_policy(spec: str, version: str = "nodemesh.io/v1alpha1") -> str:
    return (f"{NAMESPACE}apiVersion: {version}\nkind: TrafficPolicy\n"
            f"metadata: {{name: tp, namespace: shop}}\nspec:\n{spec}")


def tcp_route(spec: str, version: str = "gateway.networking.k8s.io/v1alpha2") -> str:
    return (f"{NAMESPACE}apiVersion: {version}\nkind: TCPRoute\n"
            f"metadata: {{name: r, namespace: shop}}\nspec:\n{spec}")


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_documents(text, "test.yaml")
    return info.value.errors


def test_a_full_traffic_policy():
    (policy,) = parse_documents(traffic_policy(TARGET + """
  loadBalancer: LeastConnections
  locality: PreferClose
  connectTimeout: 250ms
  connectRetries: 3
  outlierDetection: {consecutiveFailures: 2, baseEjectionTime: 1s, maxEjectionTime: 1m, maxEjectionPercent: 30}
  circuitBreaker: {maxConnections: 100, maxPendingConnects: 10}
  idleTimeout: 1h30m
  rateLimit: {connectionsPerSecond: 10, burst: 20}
"""), "t").traffic_policies
    assert policy.targets == (ServiceRef("web", "spec.targetRefs[0]"),)
    assert policy.locality == "PreferClose"
    assert policy.settings == TrafficPolicy(
        load_balancer=LEAST_CONNECTIONS, connect_timeout=0.25, connect_retries=3,
        outlier_detection=OutlierDetection(2, 1.0, 60.0, 30), max_connections=100, max_pending=10,
        idle_timeout=5400.0, rate_limit=10.0, rate_burst=20)


def test_a_traffic_policy_with_only_targets_has_the_defaults():
    (policy,) = parse_documents(traffic_policy(TARGET), "t").traffic_policies
    assert (policy.settings, policy.locality) == (TrafficPolicy(), None)


@pytest.mark.parametrize("rate, burst", [(2.5, 3), (10, 10), (0.1, 1)])
def test_the_burst_defaults_to_the_rate_rounded_up(rate, burst):
    (policy,) = parse_documents(traffic_policy(TARGET + f"  rateLimit: {{connectionsPerSecond: {rate}}}\n"),
                                "t").traffic_policies
    assert (policy.settings.rate_limit, policy.settings.rate_burst) == (rate, burst)


def test_outlier_detection_can_be_switched_off():
    (policy,) = parse_documents(traffic_policy(TARGET + "  outlierDetection: {consecutiveFailures: 0}\n"),
                                "t").traffic_policies
    assert policy.settings.outlier_detection == OutlierDetection(consecutive_failures=0)


TP = "TrafficPolicy shop/tp"


@pytest.mark.parametrize("spec, expected", [
    ("  loadBalancer: RoundRobin\n", f"{TP}: spec.targetRefs: required (at least one Service)"),
    ("  targetRefs: [{name: web}]\n", f"{TP}: spec.targetRefs[0].kind: required: Service"),
    ("  targetRefs: [{kind: Deployment, name: web}]\n",
     f"{TP}: spec.targetRefs[0].kind: only Services can be referred to, got 'Deployment'"),
    ("  targetRefs: [{group: apps, kind: Service, name: web}]\n", f"{TP}: spec.targetRefs[0].group: must be \"\""),
    ("  targetRefs: [{kind: Service}]\n", f"{TP}: spec.targetRefs[0].name: required"),
    ("  targetRefs: [{kind: Service, name: web, namespace: other}]\n",
     f"{TP}: spec.targetRefs[0].namespace: unknown field"),
    (TARGET + "  loadBalancer: Random\n",
     f"{TP}: spec.loadBalancer: 'Random' is not one of RoundRobin, LeastConnections, PowerOfTwoChoices"),
    (TARGET + "  locality: Near\n", f"{TP}: spec.locality: 'Near' is not one of PreferClose, Any"),
    (TARGET + "  connectTimeout: 2\n", f"{TP}: spec.connectTimeout: must be a string, got 2"),
    (TARGET + "  connectTimeout: 2sec\n", f"{TP}: spec.connectTimeout: '2sec' is not a duration"),
    (TARGET + "  idleTimeout: 0s\n", f"{TP}: spec.idleTimeout: '0s': a duration must be longer than zero"),
    (TARGET + "  connectRetries: 11\n", f"{TP}: spec.connectRetries: must be a whole number from 0 to 10, got 11"),
    (TARGET + "  connectRetries: -1\n", f"{TP}: spec.connectRetries: must be a whole number from 0 to 10"),
    (TARGET + "  connectRetries: true\n", f"{TP}: spec.connectRetries: must be a whole number"),
    (TARGET + "  outlierDetection: {maxEjectionPercent: 101}\n",
     f"{TP}: spec.outlierDetection.maxEjectionPercent: must be a whole number from 0 to 100"),
    (TARGET + "  outlierDetection: {baseEjectionTime: 10m}\n",
     f"{TP}: spec.outlierDetection: baseEjectionTime (600s) is longer than maxEjectionTime (300s)"),
    (TARGET + "  outlierDetection: {consecutiveFailure: 3}\n",
     f"{TP}: spec.outlierDetection.consecutiveFailure: unknown field"),
    (TARGET + "  circuitBreaker: {maxConnections: 0}\n",
     f"{TP}: spec.circuitBreaker.maxConnections: must be a whole number from 1 to 1000000, got 0"),
    (TARGET + "  circuitBreaker: {maxConections: 5}\n",
     f"{TP}: spec.circuitBreaker.maxConections: unknown field (expected one of maxConnections, maxPendingConnects)"),
    (TARGET + "  rateLimit: {burst: 5}\n", f"{TP}: spec.rateLimit.connectionsPerSecond: required"),
    (TARGET + "  rateLimit: {connectionsPerSecond: 0}\n",
     f"{TP}: spec.rateLimit.connectionsPerSecond: must be a number above zero, got 0"),
    (TARGET + "  rateLimit: {connectionsPerSecond: 5, burst: 0}\n",
     f"{TP}: spec.rateLimit.burst: must be a whole number from 1"),
    (TARGET + "  retries: 3\n", f"{TP}: spec.retries: unknown field (expected one of targetRefs, loadBalancer"),
])
def test_traffic_policy_errors_name_the_field(spec, expected):
    found = errors(traffic_policy(spec))
    assert any(expected in e for e in found), found


def test_a_traffic_policy_with_a_wrong_api_version():
    assert errors(traffic_policy(TARGET, version="nodemesh.io/v1")) == [
        f"{TP}: apiVersion: must be nodemesh.io/v1alpha1 for a TrafficPolicy, got 'nodemesh.io/v1'"]


def test_a_route_splits_between_weighted_backends():
    (route,) = parse_documents(tcp_route(PARENT + SPLIT), "t").tcp_routes
    assert route.parents == (ServiceRef("web", "spec.parentRefs[0]", port=80),)
    assert route.backends == (ServiceRef("web-v1", "spec.rules[0].backendRefs[0]", port=80, weight=90),
                              ServiceRef("web-v2", "spec.rules[0].backendRefs[1]", port=8080, weight=10))


def test_route_defaults_every_parent_port_weight_one_and_backends_are_services():
    (route,) = parse_documents(tcp_route("  parentRefs: [{kind: Service, name: web}]\n"
                                         "  rules: [{backendRefs: [{name: a, port: 80}, {name: b, port: 80, "
                                         "kind: Service, group: \"\", weight: 0}]}]\n"), "t").tcp_routes
    assert route.parents[0].port == 0
    assert [(b.name, b.weight) for b in route.backends] == [("a", 1), ("b", 0)]


R = "TCPRoute shop/r"


@pytest.mark.parametrize("spec, expected", [
    (SPLIT, f"{R}: spec.parentRefs: required (at least one Service)"),
    ("  parentRefs: [{name: web}]\n" + SPLIT, f"{R}: spec.parentRefs[0].kind: required: Service"),
    ("  parentRefs: [{kind: Gateway, name: gw}]\n" + SPLIT,
     f"{R}: spec.parentRefs[0].kind: only Services can be referred to, got 'Gateway'"),
    ("  parentRefs: [{kind: Service, name: web, namespace: other}]\n" + SPLIT,
     f"{R}: spec.parentRefs[0].namespace: must be the object's own namespace 'shop'"),
    ("  parentRefs: [{kind: Service, name: web, sectionName: http}]\n" + SPLIT,
     f"{R}: spec.parentRefs[0].sectionName: not supported (give the Service's port)"),
    ("  parentRefs: [{kind: Service, name: web, port: 0}]\n" + SPLIT,
     f"{R}: spec.parentRefs[0].port: port 0 is out of range"),
    (PARENT, f"{R}: spec.rules: must hold exactly one rule (its backendRefs split the traffic), got 0"),
    (PARENT + "  rules: [{backendRefs: [{name: a, port: 80}]}, {backendRefs: [{name: b, port: 80}]}]\n",
     f"{R}: spec.rules: must hold exactly one rule"),
    (PARENT + "  rules: [{}]\n", f"{R}: spec.rules[0].backendRefs: required (at least one Service)"),
    (PARENT + "  rules: [{backendRefs: [{name: a}]}]\n",
     f"{R}: spec.rules[0].backendRefs[0].port: required (the backend Service's port)"),
    (PARENT + "  rules: [{backendRefs: [{name: a, port: 80, weight: 1000001}]}]\n",
     f"{R}: spec.rules[0].backendRefs[0].weight: must be a whole number from 0 to 1000000"),
    (PARENT + "  rules: [{backendRefs: [{name: a, port: 80, weight: -1}]}]\n",
     f"{R}: spec.rules[0].backendRefs[0].weight: must be a whole number from 0 to 1000000"),
    (PARENT + "  rules: [{backendRefs: [{name: a, port: 80, weight: 0}, {name: b, port: 80, weight: 0}]}]\n",
     f"{R}: spec.rules[0].backendRefs: every weight is 0"),
    (PARENT + "  rules: [{backendRefs: [{name: a, port: 80, kind: ConfigMap}]}]\n",
     f"{R}: spec.rules[0].backendRefs[0].kind: only Services can be referred to"),
    (PARENT + "  rules: [{backendRefs: [{name: a, port: 80, namespace: other}]}]\n",
     f"{R}: spec.rules[0].backendRefs[0].namespace: must be the object's own namespace"),
    (PARENT + "  rules: [{backendRefs: [{name: a, port: 80, wieght: 5}]}]\n",
     f"{R}: spec.rules[0].backendRefs[0].wieght: unknown field"),
    (PARENT + "  rules: [{matches: [], backendRefs: [{name: a, port: 80}]}]\n",
     f"{R}: spec.rules[0].matches: unknown field (expected one of backendRefs)"),
    (PARENT + SPLIT + "  hostnames: [a]\n", f"{R}: spec.hostnames: unknown field"),
])
def test_route_errors_name_the_field(spec, expected):
    found = errors(tcp_route(spec))
    assert any(expected in e for e in found), found


def test_a_route_with_a_wrong_api_version():
    assert errors(tcp_route(PARENT + SPLIT, version="gateway.networking.k8s.io/v1")) == [
        f"{R}: apiVersion: must be gateway.networking.k8s.io/v1alpha2 for a TCPRoute, "
        "got 'gateway.networking.k8s.io/v1'"]


@pytest.mark.parametrize("kind, spec", [("TrafficPolicy", TARGET), ("TCPRoute", PARENT + SPLIT)])
def test_traffic_objects_need_their_namespace(kind, spec):
    version = "nodemesh.io/v1alpha1" if kind == "TrafficPolicy" else "gateway.networking.k8s.io/v1alpha2"
    found = errors(f"apiVersion: {version}\nkind: {kind}\nmetadata: {{name: x, namespace: ghost}}\nspec:\n{spec}")
    assert found == [f"{kind} ghost/x: metadata.namespace: namespace 'ghost' is not defined "
                     "(add a Namespace object named ghost)"]


def test_a_node_object_gives_its_labels():
    (node,) = parse_documents("apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\n  labels:\n"
                              "    topology.kubernetes.io/zone: zone-a\nspec: {podCIDR: 10.0.0.0/24}\n",
                              "t").nodes
    assert (node.name, dict(node.labels)) == ("n1", {"topology.kubernetes.io/zone": "zone-a"})


@pytest.mark.parametrize("text, expected", [
    ("apiVersion: v1\nkind: Node\nmetadata: {name: N_1}\n", "Node N_1: metadata.name: 'N_1' is not a valid node name"),
    ("apiVersion: v1\nkind: Node\nmetadata: {name: n1, labels: {topology.kubernetes.io/zone: 1}}\n",
     "Node n1: metadata.labels.topology.kubernetes.io/zone: must be a string, got 1"),
    ("apiVersion: v2\nkind: Node\nmetadata: {name: n1}\n", "Node n1: apiVersion: must be v1 for a Node"),
    ("apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n---\napiVersion: v1\nkind: Node\nmetadata: {name: n1}\n",
     "Node n1: metadata.name: defined twice"),
])
def test_node_errors(text, expected):
    found = errors(text)
    assert any(expected in e for e in found), found


def service(extra: str) -> str:
    return f"apiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec:\n  ports: [{{port: 80}}]\n{extra}"


def test_a_service_can_prefer_close_endpoints():
    assert [s.prefer_close for s in parse_documents(service("  trafficDistribution: PreferClose\n"), "t").services] == [True]
    assert [s.prefer_close for s in parse_documents(service(""), "t").services] == [False]


@pytest.mark.parametrize("value", ["PreferSameNode", "preferclose"])
def test_other_traffic_distributions_are_refused(value):
    assert errors(service(f"  trafficDistribution: {value}\n")) == [
        f"Service default/web: spec.trafficDistribution: {value!r} is not supported (PreferClose, "
        "or leave it out)"]
