"""The model's policy and traffic values survive the wire (nodemesh/api/convert.py) unchanged,
as the controller builds them from YAML."""

from __future__ import annotations

from nodemesh.api.convert import policy_from_pb, policy_to_pb, service_from_pb, service_to_pb
from nodemesh.authz.policy import ALLOW, DENY, AuthorizationPolicy, Operation, Rule, Source
from nodemesh.controller.kube.objects import parse_documents
from nodemesh.controller.model.build import build_model
from nodemesh.controller.model.ipam import Assignments
from nodemesh.model import (
    LEAST_CONNECTIONS,
    Backend,
    OutlierDetection,
    Service,
    ServicePort,
    TrafficPolicy,
)

POLICY = AuthorizationPolicy(
    name="p", namespace="shop", action=DENY, selector={"app": "web", "tier": "front"},
    rules=(Rule(sources=(Source(principals=("cluster.local/ns/shop/sa/a", "*/sa/b"),
                                not_principals=("x*",), namespaces=("shop",),
                                not_namespaces=("legacy",), ip_blocks=("10.0.0.0/8",),
                                not_ip_blocks=("10.1.0.0/16", "192.168.1.1/32")),
                         Source()),
                operations=(Operation(ports=(80, 8080), not_ports=(22,)),),
                l7=("to[0].operation.methods", "when")),
           Rule()),
)


def test_a_policy_round_trips():
    assert policy_from_pb(policy_to_pb(POLICY)) == POLICY


def test_an_empty_allow_policy_round_trips():
    empty = AuthorizationPolicy(name="nothing", namespace="nodemesh-system", action=ALLOW)
    assert policy_from_pb(policy_to_pb(empty)) == empty


def test_a_service_with_traffic_and_backends_round_trips():
    service = Service(
        name="web", namespace="shop", vip="10.96.0.10",
        ports=(ServicePort("a", 80, 8080), ServicePort("b", 81, 8081)), endpoints=("u1", "u2"),
        traffic=TrafficPolicy(load_balancer=LEAST_CONNECTIONS, prefer_close=True, connect_timeout=0.25,
                              connect_retries=0, outlier_detection=OutlierDetection(0, 1.5, 60.0, 30),
                              max_connections=100, max_pending=10, idle_timeout=3600.0,
                              rate_limit=2.5, rate_burst=3),
        backends=(Backend("shop/web-v1", 80, 90, parent_port=80), Backend("shop/web-v2", 8080, 10)))
    assert service_from_pb(service_to_pb(service)) == service


YAML = """
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {ports: [{port: 80}], trafficDistribution: PreferClose}
---
apiVersion: v1
kind: Service
metadata: {name: web-v2, namespace: shop}
spec: {ports: [{port: 80}]}
---
apiVersion: nodemesh.io/v1alpha1
kind: TrafficPolicy
metadata: {name: web, namespace: shop}
spec:
  targetRefs: [{kind: Service, name: web}]
  connectTimeout: 250ms
  rateLimit: {connectionsPerSecond: 0.5}
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: web, namespace: shop}
spec:
  parentRefs: [{kind: Service, name: web}]
  rules: [{backendRefs: [{name: web, port: 80, weight: 3}, {name: web-v2, port: 80, weight: 1}]}]
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: p, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  rules: [{from: [{source: {ipBlocks: [10.0.0.1]}}], to: [{operation: {ports: ["80"], paths: [/]}}]}]
"""


def test_what_the_controller_builds_from_yaml_round_trips():
    model = build_model(parse_documents(YAML, "t.yaml"), Assignments()).model
    for service in model.services.values():
        assert service_from_pb(service_to_pb(service)) == service
    for policy in model.policies.values():
        assert policy_from_pb(policy_to_pb(policy)) == policy
    assert model.services["shop/web"].backends and model.services["shop/web"].traffic.prefer_close
