"""The traffic policy's sans-IO parts (agent/proxy/balance), with a fake clock and seeded draws.

Counts that depend on random draws are checked against exact binomial bounds (tests/binomial.py)
that a correct implementation leaves with probability below 1e-6.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from random import Random

import pytest
from binomial import assert_binomial  # tests/

from nodemesh.agent.proxy.balance import idle, outlier
from nodemesh.agent.proxy.balance.balancer import (NO_HEALTHY, OVERFLOW, RATE_LIMITED, Balancer, Lease, NoRoute,
                                                   Refusal)
from nodemesh.agent.proxy.balance.endpoint import DECAY_SECONDS, NEUTRAL_LATENCY, EndpointStats
from nodemesh.agent.proxy.balance.ratelimit import TokenBucket
from nodemesh.agent.proxy.balance.split import WeightedChoice
from nodemesh.agent.proxy.balance.strategies import power_of_two_choices
from nodemesh.agent.state.store import View
from nodemesh.model import (LEAST_CONNECTIONS, POWER_OF_TWO_CHOICES, Backend, MeshModel, Node, OutlierDetection,
                            Service, ServicePort, TrafficPolicy, Workload)

NODES = {"a": "z1", "b": "z1", "c": "z2", "d": "", "e": ""}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


_ips: dict[str, str] = {}


def pod(name: str, node: str, ns: str = "shop") -> Workload:
    ip = _ips.setdefault(name, f"10.0.{len(_ips) // 250}.{len(_ips) % 250 + 1}")  # one per name
    return Workload(uid=name, name=name, namespace=ns, service_account=name, node=node, ip=ip, meshed=True)


def service(name: str, endpoints: list[Workload], traffic: TrafficPolicy = TrafficPolicy(),
            backends: tuple[Backend, ...] = (), vip: str = "") -> Service:
    return Service(name, "shop", vip, (ServicePort("tcp", 80, 8080), ServicePort("alt", 81, 9090)),
                   tuple(w.uid for w in endpoints), traffic, backends)


def view(*services: Service, extra: list[Workload] = (), version: int = 1) -> View:
    workloads = {w.uid: w for s in services for w in s._pods} | {w.uid: w for w in extra}  # type: ignore[attr-defined]
    return View.build(version, MeshModel(workloads=workloads, services={s.key: s for s in services},
                                         nodes={n: Node(n, "", "", zone) for n, zone in NODES.items()}))


def svc(name: str, pods: list[Workload], **kw: object) -> Service:
    s = service(name, pods, **kw)  # type: ignore[arg-type]
    object.__setattr__(s, "_pods", pods)  # the workloads the view needs, carried along for ``view``
    return s


class Harness:
    """A balancer over one view, with the fake clock and a seeded random source."""

    def __init__(self, *services: Service, seed: int = 1, node: str = "a") -> None:
        self.clock = Clock()
        self.balancer = Balancer(5.0, self.clock, Random(seed).random)
        self.view = view(*services)
        self.node = node

    def lease(self, service: str = "web", port: int = 80, source: Workload | None = None) -> Lease:
        s = self.view.model.services[f"shop/{service}"]
        return self.balancer.admit(self.balancer.route(self.view, s, port, self.node), source)

    def pick(self, service: str = "web", port: int = 80) -> tuple[Lease, str]:
        lease = self.lease(service, port)
        endpoint, _ = self.balancer.pick(lease)
        return lease, endpoint.workload.name

    def picks(self, n: int, service: str = "web", hold: bool = False) -> Counter[str]:
        """``n`` connections; each closes at once unless ``hold``."""
        out: Counter[str] = Counter()
        for _ in range(n):
            lease, name = self.pick(service)
            self.balancer.connected(lease)
            if not hold:
                lease.release()
            out[name] += 1
        return out

    def fail(self, lease: Lease, outcome: str = "upstream_refused") -> bool:
        return self.balancer.failed(lease, outcome)


PODS = [pod("p1", "a"), pod("p22", "b"), pod("p333", "c")]


# -- strategies --------------------------------------------------------------------------------
def test_round_robin_is_exact_and_in_order() -> None:
    h = Harness(svc("web", PODS))
    names = [h.pick()[1] for _ in range(9)]
    assert names == ["p1", "p22", "p333"] * 3
    assert h.picks(300) == {"p1": 100, "p22": 100, "p333": 100}


def test_least_connections_fills_the_emptiest_and_ties_rotate() -> None:
    h = Harness(svc("web", PODS, traffic=TrafficPolicy(load_balancer=LEAST_CONNECTIONS)))
    held = [h.pick() for _ in range(3)]  # one each
    assert sorted(name for _, name in held) == ["p1", "p22", "p333"]
    held[0][0].release(), held[1][0].release()  # p1 and p22 free again: the next two go there
    assert sorted(h.pick()[1] for _ in range(2)) == ["p1", "p22"]
    h2 = Harness(svc("web", PODS, traffic=TrafficPolicy(load_balancer=LEAST_CONNECTIONS)))
    rotated = []
    for _ in range(6):  # all idle: every pick is a tie, and ties rotate
        lease, name = h2.pick()
        lease.release()
        rotated.append(name)
    assert rotated == ["p1", "p22", "p333"] * 2
    assert Harness(svc("web", PODS, traffic=TrafficPolicy(load_balancer=LEAST_CONNECTIONS))).picks(
        300, hold=True) == {"p1": 100, "p22": 100, "p333": 100}


def test_power_of_two_choices_draws_two_distinct_endpoints_uniformly() -> None:
    """Equal scores: the first draw wins, so its distribution shows; the second never repeats it."""
    stats = [EndpointStats(pod(f"p{i}", "a")) for i in range(4)]
    random = Random(7).random
    n = 8000
    counts = Counter(power_of_two_choices(stats, 0, random).workload.name for _ in range(n))
    for s in stats:
        assert_binomial(counts[s.workload.name], n, 1 / 4, s.workload.name)
    slow = [EndpointStats(pod("fast", "a"), 0.001), EndpointStats(pod("slow", "a"), 0.1)]
    assert {power_of_two_choices(slow, 0, random).workload.name for _ in range(1000)} == {"fast"}


def test_power_of_two_choices_prefers_fast_endpoints_by_a_binomial_margin() -> None:
    """Two of four endpoints 10x slower: one is chosen only when both draws are slow, p = 2/4 x 1/3."""
    pods = [pod(f"f{i}", "a") for i in range(2)] + [pod(f"s{i}", "a") for i in range(2)]
    h = Harness(svc("web", pods, traffic=TrafficPolicy(load_balancer=POWER_OF_TWO_CHOICES)), seed=3)
    lease = h.lease()
    for w in pods:  # teach it the latencies: one connect each
        endpoint = next(s for s in h.balancer.route(h.view, h.view.model.services["shop/web"], 80, "a")
                        .single.pool.members if s.workload is w)
        endpoint.observe(0.001 if w.name.startswith("f") else 0.010, h.clock.now)
    lease.release()
    n = 6000
    counts = h.picks(n)
    assert_binomial(counts["s0"] + counts["s1"], n, 1 / 6, "slow picks")


def test_p2c_weighs_active_connections_with_latency() -> None:
    fast, slow = EndpointStats(pod("fast", "a"), 0.001), EndpointStats(pod("slow", "a"), 0.004)
    fast.active = 4  # 0.001 x 5 > 0.004 x 1
    assert power_of_two_choices([fast, slow], 0, Random(1).random) is slow


def test_peak_ewma_takes_a_slower_connect_at_once_and_decays_toward_faster_ones() -> None:
    s = EndpointStats(pod("p", "a"))
    assert s.latency == NEUTRAL_LATENCY
    s.observe(0.5, 10.0)
    assert s.latency == 0.5
    s.observe(0.001, 10.0 + DECAY_SECONDS)  # one decay time later: 1/e of the peak remains
    assert s.latency == pytest.approx(0.5 / 2.718281828 + 0.001 * (1 - 1 / 2.718281828))


def test_a_new_endpoint_starts_at_its_services_mean_latency() -> None:
    h = Harness(svc("web", PODS[:2]))
    route = h.balancer.route(h.view, h.view.model.services["shop/web"], 80, "a")
    for s, latency in zip(route.single.pool.members, (0.002, 0.004)):
        s.latency = latency
    h.view = view(svc("web", PODS), version=2)
    route = h.balancer.route(h.view, h.view.model.services["shop/web"], 80, "a")
    assert [s.latency for s in route.single.pool.members] == [0.002, 0.004, pytest.approx(0.003)]
    assert EndpointStats(pod("x", "a")).latency == NEUTRAL_LATENCY  # nothing known: the neutral one


# -- locality ----------------------------------------------------------------------------------
def close(**kw: object) -> TrafficPolicy:
    return TrafficPolicy(prefer_close=True, outlier_detection=OutlierDetection(1, 10.0, 300.0, 100), **kw)  # type: ignore[arg-type]


def test_locality_keeps_to_the_node_then_fails_over_to_the_zone_then_anywhere() -> None:
    pods = [pod("n1", "a"), pod("n22", "a"), pod("z1", "b"), pod("far", "c")]
    h = Harness(svc("web", pods, traffic=close()))
    assert h.picks(20) == {"n1": 10, "n22": 10}
    lease, _ = h.pick()
    assert (lease.tier, lease.failover) == ("node", False)
    lease.release()
    for _ in range(2):  # both endpoints on the node fail once: ejected (threshold 1)
        lease, name = h.pick()
        assert name.startswith("n")
        h.fail(lease)
        lease.release()
    lease, name = h.pick()
    assert (name, lease.tier, lease.failover) == ("z1", "zone", True)
    h.fail(lease)
    lease.release()
    lease, name = h.pick()
    assert (name, lease.tier, lease.failover) == ("far", "any", True)  # the last one is never ejected
    lease.release()
    h.clock.now += 10  # their time is up: back on the node
    assert h.pick()[0].tier == "node"


def test_an_empty_zone_label_matches_nothing_and_empty_tiers_are_no_failover() -> None:
    pods = [pod("e1", "e"), pod("far", "c")]
    h = Harness(svc("web", pods, traffic=close()), node="d")  # d and e have no zone: not one zone
    lease, _ = h.pick()
    assert (lease.tier, lease.failover) == ("any", False)
    h2 = Harness(svc("web", [pod("z1", "b"), pod("far", "c")], traffic=close()))  # none on node a
    assert h2.picks(10) == {"z1": 10}
    assert h2.pick()[0].tier == "zone" and not h2.pick()[0].failover


def test_without_prefer_close_every_endpoint_is_a_candidate_and_no_tier_is_said() -> None:
    h = Harness(svc("web", [pod("n1", "a"), pod("far", "c")]))
    lease, _ = h.pick()
    assert lease.tier == "" and "locality" not in lease.as_dict()
    assert h.picks(10) == {"n1": 5, "far": 5}


# -- split -------------------------------------------------------------------------------------
def split_harness(*backends: Backend, seed: int = 5) -> Harness:
    v1, v2 = [pod("v1a", "a"), pod("v1bb", "b")], [pod("v2a", "c")]
    return Harness(svc("web", [], backends=backends), svc("web-v1", v1), svc("web-v2", v2), seed=seed)


def test_a_90_10_split_lands_within_a_binomial_tolerance() -> None:
    h = split_harness(Backend("shop/web-v1", 80, 90), Backend("shop/web-v2", 80, 10))
    n = 20000
    backends: Counter[str] = Counter()
    for _ in range(n):
        lease, _ = h.pick()
        backends[lease.choice.backend] += 1  # type: ignore[union-attr]
        lease.release()
    assert_binomial(backends["shop/web-v1"], n, 0.9, "to web-v1")
    assert backends["shop/web-v1"] + backends["shop/web-v2"] == n


def test_a_split_uses_the_backends_port_and_its_parent_port() -> None:
    h = split_harness(Backend("shop/web-v1", 81, 1, parent_port=80), Backend("shop/web-v2", 80, 1, parent_port=81))
    lease = h.lease(port=80)
    endpoint, port = h.balancer.pick(lease)
    assert (lease.choice.backend, port) == ("shop/web-v1", 9090)  # web-v1's port 81 -> its target port
    assert lease.as_dict()["backend"] == "shop/web-v1"
    lease = h.lease(port=81)
    assert (h.balancer.pick(lease)[1], lease.choice.backend) == (8080, "shop/web-v2")
    assert WeightedChoice(["a", "b"], [0, 3]).items == ("b",)  # weight 0: no connections


def test_a_split_backend_without_endpoints_refuses_its_share_and_no_weight_is_no_route() -> None:
    h = split_harness(Backend("shop/gone", 80, 1))
    with pytest.raises(Refusal) as e:
        h.pick()
    assert e.value.outcome == NO_HEALTHY
    with pytest.raises(NoRoute):
        split_harness(Backend("shop/web-v1", 80, 0)).pick()


# -- outlier detection ---------------------------------------------------------------------------
def test_ejection_after_consecutive_failures_grows_exponentially_to_its_cap() -> None:
    od = OutlierDetection(consecutive_failures=3, base_ejection=10.0, max_ejection=35.0, max_ejected_percent=50)
    h = Harness(svc("web", PODS[:2], traffic=TrafficPolicy(outlier_detection=od)))
    dead = h.balancer.route(h.view, h.view.model.services["shop/web"], 80, "a").single.pool.members[0]

    def fail_dead(times: int) -> list[float]:
        """Connections until ``dead`` failed ``times`` (the other endpoint connects): for how
        long each of its failures ejected it."""
        ejected: list[float] = []
        while len(ejected) < times:
            lease, name = h.pick()
            if name == "p1":
                h.fail(lease)
                ejected.append(lease.attempts[-1][3])
            else:
                h.balancer.connected(lease)
            lease.release()
        return ejected

    assert fail_dead(3) == [0.0, 0.0, 10.0]
    h.clock.now += 9.9
    assert h.picks(4) == {"p22": 4}  # still out
    h.clock.now += 0.1
    assert fail_dead(3)[-1] == 20.0  # its time is up: picked again (and failing, out for twice as long)
    h.clock.now += 20
    assert fail_dead(3)[-1] == 35.0  # 40, capped
    h.clock.now += 35
    outlier.succeeded(dead)  # a success resets both counts
    assert fail_dead(3)[-1] == 10.0
    assert h.balancer.ejections == {"shop/web": 4} and dead.ejections == 1


def test_failed_connects_through_the_balancer_eject_and_are_counted() -> None:
    od = OutlierDetection(consecutive_failures=2)
    h = Harness(svc("web", PODS[:2], traffic=TrafficPolicy(outlier_detection=od, connect_retries=0)))
    for _ in range(4):  # round robin: p1 and p22 alternate; only p1 fails
        lease, name = h.pick()
        if name == "p1":
            assert h.fail(lease) is False  # no retries allowed
        else:
            h.balancer.connected(lease)
        lease.release()
    assert h.balancer.ejections == {"shop/web": 1}
    assert h.balancer.ejected() == {"shop/web": 1}
    assert lease.as_dict()["chosen_by"] == "round_robin"
    h.clock.now += od.base_ejection
    assert h.balancer.ejected() == {}


@pytest.mark.parametrize(("endpoints", "percent", "most"), [(4, 50, 2), (2, 100, 1), (3, 50, 1), (1, 100, 0),
                                                              (10, 30, 3)])
def test_never_more_than_the_share_is_ejected_and_one_always_stays(endpoints: int, percent: int, most: int) -> None:
    od = OutlierDetection(consecutive_failures=1, max_ejected_percent=percent)
    members = [EndpointStats(pod(f"p{i}", "a")) for i in range(endpoints)]
    for s in members:
        outlier.failed(s, od, members, 0.0)
    assert sum(1 for s in members if s.ejected_until > 0.0) == most


def test_a_pod_that_only_failed_for_policy_reasons_is_not_ejected_nor_retried() -> None:
    od = OutlierDetection(consecutive_failures=1)
    h = Harness(svc("web", PODS, traffic=TrafficPolicy(outlier_detection=od, connect_retries=3)))
    lease, _ = h.pick()
    assert h.fail(lease, "upstream_401") is False
    assert h.balancer.ejections == {}


def test_retries_go_to_another_endpoint_until_the_budget_is_spent() -> None:
    h = Harness(svc("web", PODS, traffic=TrafficPolicy(connect_retries=2)))
    lease, first = h.pick()
    tried = {first}
    for _ in range(2):
        assert h.fail(lease, "upstream_503") is True
        endpoint, _ = h.balancer.pick(lease)
        assert endpoint.workload.name not in tried
        tried.add(endpoint.workload.name)
    assert h.fail(lease, "app_unavailable") is False  # 3 attempts: 1 + 2 retries
    with pytest.raises(Refusal):  # and there is no endpoint left untried
        h.balancer.pick(lease)
    assert [a["outcome"] for a in lease.as_dict()["attempts"]] == ["upstream_503", "upstream_503", "app_unavailable"]
    lease.release()
    route = lease.route
    assert all(s.active == 0 for s in route.single.pool.members) and route.limits.breaker.active == 0


# -- breaker and rate limit ----------------------------------------------------------------------
def test_the_breaker_refuses_beyond_its_connections_and_pending_connects() -> None:
    h = Harness(svc("web", PODS, traffic=TrafficPolicy(max_connections=2, max_pending=1)))
    first, _ = h.pick()
    with pytest.raises(Refusal) as e:  # first is still connecting: one pending is the limit
        h.pick()
    assert e.value.outcome == OVERFLOW and "pending" in str(e.value)
    h.balancer.connected(first)
    second, _ = h.pick()
    h.balancer.connected(second)
    with pytest.raises(Refusal, match="2 connections open, the limit is 2"):
        h.pick()
    second.release()
    second.release()  # once only
    third, _ = h.pick()
    assert first.route.limits.breaker.active == 2


def test_the_rate_limit_refuses_beyond_its_burst_and_refills_per_source_workload() -> None:
    h = Harness(svc("web", PODS, traffic=TrafficPolicy(rate_limit=2.0, rate_burst=3)))
    alice, bob = pod("alice", "a"), pod("bob", "a")
    for _ in range(3):
        h.lease(source=alice).release()
    with pytest.raises(Refusal) as e:
        h.lease(source=alice)
    assert e.value.outcome == RATE_LIMITED and "shop/alice may open 2 connections a second" in str(e.value)
    h.lease(source=bob).release()  # its own bucket
    h.clock.now += 0.5  # one token back
    h.lease(source=alice).release()
    with pytest.raises(Refusal):
        h.lease(source=alice)


def test_token_bucket_refill_and_default_burst() -> None:
    bucket = TokenBucket(rate=10.0, burst=5, now=0.0)
    assert [bucket.take(0.0) for _ in range(6)] == [True] * 5 + [False]
    assert bucket.take(0.1) and not bucket.take(0.1)
    assert [bucket.take(100.0) for _ in range(6)] == [True] * 5 + [False]  # never more than the burst
    assert TrafficPolicy(rate_limit=2.5).bucket_size() == 3 and TrafficPolicy(rate_limit=0.5).bucket_size() == 1


# -- routes per view -----------------------------------------------------------------------------
def test_routes_are_built_once_per_view_and_state_outlives_views() -> None:
    h = Harness(svc("web", PODS))
    s = h.view.model.services["shop/web"]
    route = h.balancer.route(h.view, s, 80, "a")
    assert h.balancer.route(h.view, s, 80, "a") is route
    with pytest.raises(NoRoute, match="no port 82"):
        h.balancer.route(h.view, s, 82, "a")
    assert h.pick()[1] == "p1"
    h.view = view(svc("web", PODS), version=2)
    assert h.pick()[1] == "p22"  # the turn went on
    h.view = view(svc("other", PODS), version=3)
    h.balancer.route(h.view, h.view.model.services["shop/other"], 80, "a")
    assert "shop/web" not in h.balancer._pools  # a service gone takes its state along
    with pytest.raises(NoRoute, match="no endpoints"):
        Harness(svc("web", [])).pick()


# -- idle sweep ----------------------------------------------------------------------------------
class Conn:
    def __init__(self, timeout: float, since: float = 1.0) -> None:
        self.idle_timeout, self.idle_bytes, self.idle_since = timeout, 0, since
        self.received = self.sent = 0


def test_the_idle_sweep_closes_what_moved_no_byte_for_its_timeout() -> None:
    quiet, busy, none, pending = Conn(2.0), Conn(2.0), Conn(0.0), Conn(0.5, since=0.0)
    conns = [quiet, busy, none, pending]
    assert idle.sweep(conns, 2.0) == ([], 0.5)
    busy.received = 10
    assert idle.sweep(conns, 3.0) == ([quiet], 0.5)  # idle since 1.0: 2 s at 3.0
    assert busy.idle_since == 3.0
    busy.sent = 5
    assert idle.sweep([busy], 4.9) == ([], 0.5) and busy.idle_since == 4.9
    assert idle.sweep([busy], 6.9) == ([busy], 0.0)
    assert idle.interval(3600) == idle.MAX_INTERVAL and idle.interval(0.01) == idle.MIN_INTERVAL


# -- what shows ----------------------------------------------------------------------------------
def test_decisions_show_in_the_connection_table_the_access_log_and_the_flags() -> None:
    from nodemesh.agent.proxy.conntrack import OUTBOUND, ConnectionTable
    from nodemesh.agent.proxy.traffic import response_flag
    from nodemesh.agent.telemetry.accesslog import line

    h = Harness(svc("web", PODS, traffic=close(load_balancer=POWER_OF_TWO_CHOICES)))
    table = ConnectionTable()
    conn = table.open(OUTBOUND, "shop/client", "10.96.0.1:80")
    conn.lease = lease = h.lease()
    h.balancer.pick(lease)
    h.fail(lease, "upstream_503")
    endpoint, _ = h.balancer.pick(lease)
    h.balancer.connected(lease)
    shown = conn.as_dict()
    assert (shown["chosen_by"], shown["locality"], shown["failover"]) == ("p2c", "zone", True)
    assert shown["attempts"] == [{"endpoint": "shop/p1", "upstream": f"{PODS[0].ip}:8080", "outcome": "upstream_503",
                                  "ejected_seconds": 10.0}]
    table.established(conn)
    assert endpoint.active == 1 and lease.route.limits.breaker.active == 1
    conn.closed_by = "idle_timeout"
    table.closed(conn)
    assert endpoint.active == 0 and lease.route.limits.breaker.active == 0  # the close released the lease
    logged = line(conn)
    assert (logged["chosen_by"], logged["closed_by"], len(logged["attempts"])) == ("p2c", "idle_timeout", 1)
    assert [response_flag(o) for o in ("upstream_overflow", "rate_limited", "no_healthy_upstream",
                                       "retries_exhausted")] == ["UO", "RL", "UH", "URX"]
