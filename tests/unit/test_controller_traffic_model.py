"""The model from the new kinds: a Service's traffic settings and split, node zones, policies,
and the warnings a build returns; with every cross-object error named."""

from __future__ import annotations

import pytest

from nodemesh.authz.policy import DENY
from nodemesh.controller.kube.objects import parse_documents
from nodemesh.controller.model.build import Built, ModelError, build_model
from nodemesh.controller.model.ipam import Assignments
from nodemesh.model import DEFAULT_TRAFFIC, POWER_OF_TWO_CHOICES, Backend

BASE = """
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Pod
metadata: {name: w1, namespace: shop, labels: {app: web}}
spec: {nodeName: n1, containers: [{name: c}]}
---
apiVersion: v1
kind: Pod
metadata: {name: w2, namespace: shop, labels: {app: web}}
spec: {nodeName: n2, containers: [{name: c}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {selector: {app: web}, ports: [{name: a, port: 80}, {name: b, port: 81}]}
---
apiVersion: v1
kind: Service
metadata: {name: web-v1, namespace: shop}
spec: {selector: {app: web}, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: web-v2, namespace: shop}
spec: {selector: {app: web}, ports: [{port: 8080}]}
"""


def traffic_policy(name: str, targets: str, spec: str = "") -> str:
    return (f"---\napiVersion: nodemesh.io/v1alpha1\nkind: TrafficPolicy\n"
            f"metadata: {{name: {name}, namespace: shop}}\nspec:\n  targetRefs: {targets}\n{spec}")


def route(name: str, parents: str, backends: str) -> str:
    return (f"---\napiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\n"
            f"metadata: {{name: {name}, namespace: shop}}\n"
            f"spec:\n  parentRefs: {parents}\n  rules: [{{backendRefs: {backends}}}]\n")


WEB = "[{kind: Service, name: web}]"
WEB_80 = "[{kind: Service, name: web, port: 80}]"
SPLIT = "[{name: web-v1, port: 80, weight: 90}, {name: web-v2, port: 8080, weight: 10}]"


def built(extra: str) -> Built:
    return build_model(parse_documents(BASE + extra, "t.yaml"), Assignments())


def model_errors(extra: str) -> list[str]:
    with pytest.raises(ModelError) as info:
        built(extra)
    return info.value.errors


def test_services_without_traffic_objects_have_the_defaults():
    services = built("").model.services
    assert {s.traffic for s in services.values()} == {DEFAULT_TRAFFIC}
    assert {s.backends for s in services.values()} == {()}


def test_a_traffic_policy_sets_each_service_it_targets():
    services = built(traffic_policy("tp", "[{kind: Service, name: web}, {kind: Service, name: web-v1}]",
                                    "  loadBalancer: PowerOfTwoChoices\n  connectTimeout: 2s\n")).model.services
    for key in ("shop/web", "shop/web-v1"):
        assert (services[key].traffic.load_balancer, services[key].traffic.connect_timeout) == \
               (POWER_OF_TWO_CHOICES, 2.0)
    assert services["shop/web-v2"].traffic == DEFAULT_TRAFFIC


def with_distribution(text: str) -> str:
    old = "metadata: {name: web, namespace: shop}\nspec: {"
    assert old in text
    return text.replace(old, old + "trafficDistribution: PreferClose, ")


@pytest.mark.parametrize("distribution, locality, prefer_close", [
    (False, None, False), (True, None, True), (False, "PreferClose", True), (True, "Any", False),
    (True, "PreferClose", True), (False, "Any", False),
])
def test_locality_from_the_service_unless_the_traffic_policy_says(distribution, locality, prefer_close):
    policy = traffic_policy("tp", WEB, f"  locality: {locality}\n") if locality else ""
    objects = parse_documents((with_distribution(BASE) if distribution else BASE) + policy, "t.yaml")
    model = build_model(objects, Assignments()).model
    assert model.services["shop/web"].traffic.prefer_close is prefer_close


def test_two_traffic_policies_for_one_service_name_both():
    found = model_errors(traffic_policy("one", WEB) + traffic_policy("two", WEB))
    assert found == ["TrafficPolicy shop/two: spec.targetRefs[0]: Service shop/web is also the target "
                     "of TrafficPolicy shop/one (a Service takes one TrafficPolicy: merge them)"]


def test_a_traffic_policy_for_a_missing_service():
    assert model_errors(traffic_policy("tp", "[{kind: Service, name: ghost}]")) == [
        "TrafficPolicy shop/tp: spec.targetRefs[0]: Service shop/ghost is not defined"]


def test_a_route_splits_its_parent_port():
    model = built(route("r", WEB_80, SPLIT)).model
    assert model.services["shop/web"].backends == (
        Backend("shop/web-v1", 80, 90, parent_port=80), Backend("shop/web-v2", 8080, 10, parent_port=80))
    assert model.services["shop/web-v1"].backends == ()


def test_routes_for_different_ports_of_one_service_are_both_kept():
    model = built(route("r80", WEB_80, "[{name: web-v1, port: 80}]")
                  + route("r81", "[{kind: Service, name: web, port: 81}]", "[{name: web-v2, port: 8080}]")).model
    assert model.services["shop/web"].backends == (Backend("shop/web-v1", 80, 1, parent_port=80),
                                                   Backend("shop/web-v2", 8080, 1, parent_port=81))


def test_a_route_without_a_port_splits_every_port():
    assert built(route("r", WEB, SPLIT)).model.services["shop/web"].backends[0].parent_port == 0


@pytest.mark.parametrize("extra, expected", [
    (route("r", "[{kind: Service, name: ghost}]", SPLIT),
     "TCPRoute shop/r: spec.parentRefs[0]: Service shop/ghost is not defined"),
    (route("r", "[{kind: Service, name: web, port: 90}]", SPLIT),
     "TCPRoute shop/r: spec.parentRefs[0].port: Service shop/web has no port 90 (its ports: 80, 81)"),
    (route("r", WEB, "[{name: ghost, port: 80}]"),
     "TCPRoute shop/r: spec.rules[0].backendRefs[0]: Service shop/ghost is not defined"),
    (route("r", WEB, "[{name: web-v1, port: 80}, {name: web-v2, port: 80}]"),
     "TCPRoute shop/r: spec.rules[0].backendRefs[1].port: Service shop/web-v2 has no port 80 (its ports: 8080)"),
    (route("one", WEB_80, SPLIT) + route("two", WEB_80, SPLIT),
     "TCPRoute shop/two: spec.parentRefs[0]: Service shop/web (port 80) is also split by TCPRoute shop/one "
     "(a service port takes one route: merge them)"),
    (route("one", WEB_80, SPLIT) + route("two", WEB, SPLIT),
     "TCPRoute shop/two: spec.parentRefs[0]: Service shop/web (every port) is also split by TCPRoute shop/one"),
    (route("one", WEB, SPLIT) + route("two", WEB_80, SPLIT),
     "TCPRoute shop/two: spec.parentRefs[0]: Service shop/web (port 80) is also split by TCPRoute shop/one"),
])
def test_route_errors_name_the_route_and_reference(extra, expected):
    found = model_errors(extra)
    assert any(expected in e for e in found), found


NODES = """---
apiVersion: v1
kind: Node
metadata: {name: n1, labels: {topology.kubernetes.io/zone: zone-a, other: x}}
---
apiVersion: v1
kind: Node
metadata: {name: idle, labels: {topology.kubernetes.io/zone: zone-b}}
"""


def test_zones_come_from_node_objects_and_nodes_from_pods():
    nodes = built(NODES).model.nodes
    assert {name: n.zone for name, n in nodes.items()} == {"n1": "zone-a", "n2": ""}


POLICIES = """---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-legacy, namespace: shop}
spec:
  action: DENY
  rules: [{from: [{source: {namespaces: [legacy]}}], to: [{operation: {paths: [/admin]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-get, namespace: shop}
spec:
  rules: [{}, {to: [{operation: {methods: [GET], ports: ["80"]}}], when: [{key: k, values: [v]}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: plain, namespace: shop}
spec: {rules: [{from: [{source: {principals: [a]}}]}]}
"""


def test_policies_are_in_the_model_by_key():
    policies = built(POLICIES).model.policies
    assert sorted(policies) == ["shop/allow-get", "shop/deny-legacy", "shop/plain"]
    assert policies["shop/deny-legacy"].action == DENY


def test_rules_with_l7_fields_are_warned_about_saying_what_the_agent_does():
    assert built(POLICIES).warnings == (
        "AuthorizationPolicy shop/deny-legacy: spec.rules[0]: to[0].operation.paths: cannot be "
        "enforced at L4, so this DENY rule denies every connection its other fields match, "
        "whatever the request (the agent fails closed)",
        "AuthorizationPolicy shop/allow-get: spec.rules[1]: to[0].operation.methods, when: cannot "
        "be enforced at L4, so this ALLOW rule matches no connection (the agent fails closed)",
    )
    assert built("").warnings == ()
