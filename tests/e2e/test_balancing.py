"""Traffic policies on a three-node simulated cluster: balancing, locality, split, resilience.

Written as users write them (TrafficPolicy, TCPRoute, Node zone labels: docs/traffic.md), read
by the controller, applied by the client's agent. What is checked is what the client saw (its
tally: which server answered each connection, which failed) and what the agent says (its
connection totals, its metrics). Counts that depend on random draws are held to exact binomial
bounds (tests/binomial.py). node-a and node-b are zone z1, node-c zone z2; clients run on node-a.
"""

from __future__ import annotations

import time
from typing import Iterator

import pytest
from binomial import assert_binomial, bounds  # tests/

from simcluster import SimCluster, idle_pod, module_cluster, namespace, pod_yaml, server_pod, service

pytestmark = [pytest.mark.e2e, pytest.mark.kernel]

SLOW_DELAY = 2.0  # seconds the slow server waits before its name line (runs take ~0.2 s: margin)


def node(name: str, zone: str) -> str:
    return f"""
---
apiVersion: v1
kind: Node
metadata:
  name: {name}
  labels:
    topology.kubernetes.io/zone: {zone}
"""


def traffic_policy(name: str, spec: str) -> str:
    """A TrafficPolicy for the Service ``name`` of shop; ``spec``: its other fields, indented 2."""
    return f"""
---
apiVersion: nodemesh.io/v1alpha1
kind: TrafficPolicy
metadata:
  name: {name}
  namespace: shop
spec:
  targetRefs: [{{group: "", kind: Service, name: {name}}}]
{spec}"""


def slow_pod(name: str, node_name: str, app: str) -> str:
    return pod_yaml(name, "shop", node_name, {"app": app},
                    f'[python3, -m, nodemesh.tools.apps.server, --port, "8080", --delay, "{SLOW_DELAY:g}"]', name)


CLUSTER = "".join([
    node("node-a", "z1"), node("node-b", "z1"), node("node-c", "z2"),
    namespace("shop"),
    idle_pod("client", "node-a", "shop", app="client"),
    idle_pod("other", "node-a", "shop", app="other"),
    # round robin over three nodes
    *[server_pod(f"rr-{n}", n_node, {"app": "rr"}) for n, n_node in (("1", "node-a"), ("2", "node-b"), ("3", "node-c"))],
    service("rr", "rr"),
    # two fast endpoints and a slow one, behind a P2C service and a least-connections service
    server_pod("fast-1", "node-b", {"app": "mixed"}), server_pod("fast-2", "node-c", {"app": "mixed"}),
    slow_pod("slow", "node-b", "mixed"),
    service("p2c", "mixed"), traffic_policy("p2c", "  loadBalancer: PowerOfTwoChoices\n"),
    service("lc", "mixed"), traffic_policy("lc", "  loadBalancer: LeastConnections\n"),
    # locality: one endpoint on the client's node, one in its zone, one in the other zone
    server_pod("near-a", "node-a", {"app": "near"}), server_pod("near-b", "node-b", {"app": "near"}),
    server_pod("near-c", "node-c", {"app": "near"}),
    service("near", "near"), traffic_policy("near", "  locality: PreferClose\n"),
    # a canary split
    server_pod("web-v1", "node-b", {"app": "web-v1"}), server_pod("web-v2", "node-c", {"app": "web-v2"}),
    service("web", "web"), service("web-v1", "web-v1"), service("web-v2", "web-v2"),
    """
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata:
  name: web-canary
  namespace: shop
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
    - backendRefs:
        - {name: web-v1, port: 80, weight: 90}
        - {name: web-v2, port: 80, weight: 10}
""",
    # a dead endpoint (nothing listens) beside a live one, both remote; with and without retries
    server_pod("ej-live", "node-b", {"app": "ej"}), idle_pod("ej-dead", "node-c", "shop", app="ej"),
    service("ej", "ej"),
    traffic_policy("ej", "  outlierDetection: {consecutiveFailures: 2, baseEjectionTime: 3s, maxEjectionTime: 1m}\n"),
    service("noretry", "ej"),
    traffic_policy("noretry", "  connectRetries: 0\n  outlierDetection: {consecutiveFailures: 0}\n"),
    # a circuit breaker and a rate limit, each on a service of its own
    slow_pod("held", "node-b", "held"),
    service("cb", "held"), traffic_policy("cb", "  circuitBreaker: {maxConnections: 2}\n"),
    server_pod("limited", "node-b", {"app": "limited"}),
    service("rl", "limited"), traffic_policy("rl", "  rateLimit: {connectionsPerSecond: 0.2, burst: 3}\n"),
])


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimCluster]:
    yield from module_cluster(request, tmp_path_factory, "tmbal", CLUSTER)


def to(cluster: SimCluster, service_name: str) -> str:
    return f"{cluster.vip(f'shop/{service_name}')}:80"


def outcome(cluster: SimCluster, name: str, node_name: str = "node-a") -> int:
    return cluster.totals(node_name).get(("outbound", name), 0)


def metric(cluster: SimCluster, name: str, **labels: str) -> float:
    for family in cluster.metrics("node-a"):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def test_round_robin_spreads_exactly(cluster: SimCluster) -> None:
    tally = cluster.client("shop/client", to(cluster, "rr"), count=30)
    assert tally["failed"] == 0 and tally["servers"] == {"rr-1": 10, "rr-2": 10, "rr-3": 10}, tally


@pytest.mark.parametrize("balancer", ["p2c", "lc"])
def test_load_moves_away_from_a_slow_endpoint(cluster: SimCluster, balancer: str) -> None:
    """The slow server holds each connection two seconds before answering, so it has connections
    open while the fast ones have none: both balancers send it far fewer than its third. The
    bound: what a balancer blind to load (uniform random) would send it at p < 1e-6."""
    n = 90
    tally = cluster.client("shop/client", to(cluster, balancer), count=n, concurrency=6, timeout=10)
    assert tally["failed"] == 0, tally
    blind_lowest, _ = bounds(n, 1 / 3)
    assert tally["servers"].get("slow", 0) < blind_lowest, tally
    assert set(tally["servers"]) >= {"fast-1", "fast-2"}, tally


def test_split_90_10_lands_within_a_binomial_tolerance(cluster: SimCluster) -> None:
    n = 1000
    tally = cluster.client("shop/client", to(cluster, "web"), count=n, concurrency=20)
    assert tally["failed"] == 0 and set(tally["servers"]) == {"web-v1", "web-v2"}, tally
    assert_binomial(tally["servers"]["web-v1"], n, 0.9, "connections to web-v1")


def test_a_dead_endpoint_is_hidden_by_retries_ejected_and_tried_again_later(cluster: SimCluster) -> None:
    service_label = "ej.shop.svc.cluster.local"
    tally = cluster.client("shop/client", to(cluster, "ej"), count=10)
    assert tally["failed"] == 0 and tally["servers"] == {"ej-live": 10}, tally  # the client never sees it
    assert metric(cluster, "nodemesh_outlier_ejections_total", destination_service=service_label) == 1
    assert metric(cluster, "nodemesh_outlier_ejected_endpoints", destination_service=service_label) == 1
    time.sleep(3.2)  # the ejection (3 s) is over: it is tried again, fails twice more, out for 6 s
    tally = cluster.client("shop/client", to(cluster, "ej"), count=10)
    assert tally["failed"] == 0 and tally["servers"] == {"ej-live": 10}, tally
    assert metric(cluster, "nodemesh_outlier_ejections_total", destination_service=service_label) == 2
    # without retries, the same dead endpoint shows: its share of the connections fails
    tally = cluster.client("shop/client", to(cluster, "noretry"), count=10)
    assert tally["failed"] == 5 and tally["servers"] == {"ej-live": 5}, tally


def test_the_breaker_refuses_beyond_its_limit_at_once(cluster: SimCluster) -> None:
    before = outcome(cluster, "upstream_overflow")
    tally = cluster.client("shop/client", to(cluster, "cb"), count=6, concurrency=6, timeout=10)
    assert tally["ok"] == 2 and tally["failed"] == 4, tally  # two held by the slow server, four refused
    assert outcome(cluster, "upstream_overflow") - before == 4


def test_the_rate_limit_refuses_beyond_its_burst_per_source_workload(cluster: SimCluster) -> None:
    """0.2 a second with a burst of 3: ten connections at once from one workload get three
    through (the next token is five seconds away); another workload has its own bucket."""
    before = outcome(cluster, "rate_limited")
    tally = cluster.client("shop/client", to(cluster, "rl"), count=10, concurrency=10)
    assert tally["ok"] == 3 and tally["failed"] == 7, tally
    other = cluster.client("shop/other", to(cluster, "rl"), count=3, concurrency=3)
    assert other["ok"] == 3, other
    assert outcome(cluster, "rate_limited") - before == 7


def test_locality_keeps_to_the_node_and_fails_over_when_its_endpoint_dies(cluster: SimCluster) -> None:
    tally = cluster.client("shop/client", to(cluster, "near"), count=20)
    assert tally["failed"] == 0 and tally["servers"] == {"near-a": 20}, tally
    cluster.stop("pod/shop/near-a/main")
    try:
        tally = cluster.client("shop/client", to(cluster, "near"), count=20)
        # the same zone next (node-b), never the other zone while it has a healthy endpoint;
        # retries hide the failed connects to near-a until it is ejected
        assert tally["failed"] == 0 and tally["servers"] == {"near-b": 20}, tally
        assert metric(cluster, "nodemesh_outlier_ejections_total",
                      destination_service="near.shop.svc.cluster.local") >= 1
    finally:
        cluster.start("pod/shop/near-a/main")
