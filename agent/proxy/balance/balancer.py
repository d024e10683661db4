"""The traffic policy of a connection to a Service VIP, from admission to close, sans-IO.

``Balancer.route`` gives a view's ``Route`` for (service, port, source node): built once per
view and cached, it holds what every connection of it needs (the policy, the strategy, the
split's backends, each backend's endpoints per locality tier), so that a connection's decision
is a dict lookup, a clock read, a random draw or two and the strategy. What must outlive a
view (each endpoint's stats and ejection, the round-robin turn, each service's breaker and
rate-limit buckets) lives in objects kept by service key and shared by the views' routes.

A connection then goes: ``admit`` (rate limit, breaker; a ``Lease`` is what it holds of them),
``pick`` (an endpoint), and either ``connected`` or ``failed`` (which says whether to try
another endpoint); ``Lease.release`` at its close or failure gives everything back, once.

The parent service's TrafficPolicy governs a split connection: its balancer, locality,
timeouts, retries, outlier detection, breaker and rate limit apply to the backends'
endpoints; the endpoint stats are the backend service's own (an endpoint is the same endpoint
whichever route reaches it).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from random import Random
from typing import Callable

from nodemesh.agent.proxy.balance import locality, outlier
from nodemesh.agent.proxy.balance.breaker import Breaker
from nodemesh.agent.proxy.balance.endpoint import NEUTRAL_LATENCY, EndpointStats
from nodemesh.agent.proxy.balance.ratelimit import TokenBucket
from nodemesh.agent.proxy.balance.split import WeightedChoice
from nodemesh.agent.proxy.balance.strategies import STRATEGIES, Random as Draw, Strategy
from nodemesh.agent.state.store import View
from nodemesh.model import ROUND_ROBIN, Service, TrafficPolicy, Workload

# Outcomes of the connection table (and their response flags: nodemesh.agent.proxy.traffic).
NO_ROUTE = "no_route"
RATE_LIMITED = "rate_limited"
OVERFLOW = "upstream_overflow"  # the circuit breaker
NO_HEALTHY = "no_healthy_upstream"
RETRIES_EXHAUSTED = "retries_exhausted"
# Connect failures that are the endpoint's (so another may do better, and outlier detection
# counts them): refused, timed out, the tunnel to its agent failed, its agent could not reach
# the app. Never a policy denial (upstream_401, denied) nor the source's own certificate.
ENDPOINT_FAILURES = frozenset({"upstream_refused", "upstream_timeout", "tls_handshake_failed", "tunnel_lost",
                               "stream_refused", "upstream_503", "app_unavailable"})


class Refusal(Exception):
    """The connection is refused before (or instead of) any endpoint: ``outcome`` says why."""

    outcome = ""

    def __init__(self, outcome: str, message: str) -> None:
        super().__init__(message)
        self.outcome = outcome


class NoRoute(Refusal):
    """The destination is known to the mesh but cannot be served (no such port, no endpoint)."""

    def __init__(self, message: str) -> None:
        super().__init__(NO_ROUTE, message)


class PoolState:
    """What outlives views of one balanced service: its endpoints' stats, the turn, ejections."""

    __slots__ = ("stats", "turn", "ejected_until")

    def __init__(self) -> None:
        self.stats: dict[str, EndpointStats] = {}  # by workload uid
        self.turn = 0
        self.ejected_until = 0.0  # the latest end of an ejection: before it, some endpoint may be out


@dataclass(frozen=True, slots=True)
class Pool:
    """One view's endpoints of a service, seen from one node."""

    key: str
    state: PoolState
    members: tuple[EndpointStats, ...]
    tiers: tuple[locality.Tier, ...]  # closest first
    anywhere: tuple[locality.Tier, ...]  # one tier of all members (none if there are none): no locality


@dataclass(frozen=True, slots=True)
class Choice:
    pool: Pool
    port: int  # the endpoints' (target) port
    backend: str  # the split's backend service, "" without a split


class Limits:
    """What outlives views of one service's policy: its breaker and its buckets by source."""

    __slots__ = ("breaker", "buckets")

    def __init__(self) -> None:
        self.breaker = Breaker()
        self.buckets: dict[tuple[str, str], TokenBucket] = {}


@dataclass(frozen=True, slots=True)
class Route:
    service: str  # the service dialled
    policy: TrafficPolicy
    limits: Limits
    how: str  # the strategy's name, for the connection table
    strategy: Strategy
    timeout: float  # the connect timeout, seconds
    single: Choice | None  # without a split
    split: WeightedChoice[Choice] | None


class Lease:
    """One connection's hold on its route's breaker and its endpoint, and its decisions' record."""

    __slots__ = ("route", "choice", "endpoint", "started", "pending", "released", "tried", "attempts",
                 "tier", "failover")

    def __init__(self, route: Route) -> None:
        self.route = route
        self.choice: Choice | None = None
        self.endpoint: EndpointStats | None = None  # the endpoint being tried, or connected
        self.started = 0.0  # the attempt's start
        self.pending = True
        self.released = False
        self.tried: tuple[EndpointStats, ...] = ()  # endpoints that failed it
        self.attempts: tuple[tuple[str, str, str, float], ...] = ()  # (endpoint, address, outcome, ejected s)
        self.tier = ""  # locality tier of the last pick ("" without prefer_close)
        self.failover = False

    def release(self) -> None:
        """The connection closed or failed: give back its breaker counts and endpoint."""
        if self.released:
            return
        self.released = True
        breaker = self.route.limits.breaker
        breaker.active -= 1
        if self.pending:
            breaker.pending -= 1
            self.pending = False
        if self.endpoint is not None:
            self.endpoint.active -= 1

    def as_dict(self) -> dict[str, object]:
        """The decisions, for the connection table and the access log."""
        out: dict[str, object] = {"chosen_by": self.route.how}
        if self.tier:
            out["locality"] = self.tier
            out["failover"] = self.failover
        if self.choice is not None and self.choice.backend:
            out["backend"] = self.choice.backend
        if self.attempts:
            out["attempts"] = [{"endpoint": e, "upstream": a, "outcome": o, **({"ejected_seconds": s} if s else {})}
                               for e, a, o, s in self.attempts]
        return out


class Balancer:
    def __init__(self, connect_timeout: float = 5.0, clock: Callable[[], float] = time.monotonic,
                 random: Draw | None = None) -> None:
        """``connect_timeout``: the agent's, for services whose policy sets none."""
        self.connect_timeout = connect_timeout
        self.clock = clock
        self.random = random or Random().random
        self.ejections: Counter[str] = Counter()  # by balanced service key
        self._pools: dict[str, PoolState] = {}
        self._limits: dict[str, Limits] = {}
        self._view: View | None = None
        self._routes: dict[tuple[str, int, str], Route] = {}
        self._view_pools: dict[tuple[str, str], Pool] = {}

    # -- per view --------------------------------------------------------------------------
    def route(self, view: View, service: Service, port: int, node: str) -> Route:
        if view is not self._view:
            self._new_view(view)
        key = (service.key, port, node)
        route = self._routes.get(key)
        if route is None:
            route = self._routes[key] = self._build(view, service, port, node)
        return route

    def _new_view(self, view: View) -> None:
        self._view = view
        self._routes.clear()
        self._view_pools.clear()
        services = view.model.services
        for states in (self._pools, self._limits):
            for gone in [k for k in states if k not in services]:
                del states[gone]

    def _build(self, view: View, service: Service, port: int, node: str) -> Route:
        policy = service.traffic
        target_port = service.target_port(port)
        if target_port is None:
            raise NoRoute(f"service {service.key} has no port {port}")
        backends = [b for b in service.backends if b.parent_port in (0, port)]
        single = split = None
        if backends:
            choices = []
            for b in backends:
                backend = view.model.services.get(b.service)
                backend_port = backend.target_port(b.port) if backend is not None else None
                # A backend that is gone or lacks the port keeps its share, refused (UH), as Gateway
                # API asks of an invalid backendRef: the other backends' shares do not change.
                choices.append(Choice(self._pool(view, b.service, node), backend_port or 0, b.service))
            split = WeightedChoice(choices, [b.weight for b in backends])
            if not split:
                raise NoRoute(f"the route of service {service.key} has no backend with a weight")
        else:
            single = Choice(self._pool(view, service.key, node), target_port, "")
            if not single.pool.members:
                raise NoRoute(f"service {service.key} has no endpoints")
        how, strategy = STRATEGIES.get(policy.load_balancer, STRATEGIES[ROUND_ROBIN])
        limits = self._limits.get(service.key)
        if limits is None:
            limits = self._limits[service.key] = Limits()
        return Route(service.key, policy, limits, how, strategy, policy.connect_timeout or self.connect_timeout,
                     single, split)

    def _pool(self, view: View, key: str, node: str) -> Pool:
        pool = self._view_pools.get((key, node))
        if pool is not None:
            return pool
        state = self._pools.get(key)
        if state is None:
            state = self._pools[key] = PoolState()
        service = view.model.services.get(key)
        endpoints = view.endpoints(service) if service is not None else []
        known = [s.latency for s in state.stats.values()]
        neutral = sum(known) / len(known) if known else NEUTRAL_LATENCY
        stats: dict[str, EndpointStats] = {}
        for w in endpoints:
            s = state.stats.get(w.uid)
            if s is None:
                s = EndpointStats(w, neutral)
            s.workload = w
            stats[w.uid] = s
        state.stats = stats  # endpoints gone are forgotten
        members = tuple(stats.values())
        zones = {name: n.zone for name, n in view.model.nodes.items()}
        pool = self._view_pools[(key, node)] = Pool(key, state, members, locality.tiers(members, node, zones),
                                                    ((locality.ANY, members),) if members else ())
        return pool

    # -- per connection --------------------------------------------------------------------
    def admit(self, route: Route, source: Workload | None) -> Lease:
        """Raises ``Refusal`` (rate_limited, upstream_overflow) or holds a place in the breaker."""
        policy = route.policy
        if policy.rate_limit:
            who = (source.namespace, source.workload_name or source.name) if source is not None else ("", "")
            bucket = route.limits.buckets.get(who)
            now = self.clock()
            burst = policy.bucket_size()
            if bucket is None or bucket.rate != policy.rate_limit or bucket.burst != burst:
                bucket = route.limits.buckets[who] = TokenBucket(policy.rate_limit, burst, now)
            if not bucket.take(now):
                raise Refusal(RATE_LIMITED, f"{'/'.join(who)} may open {policy.rate_limit:g} connections a "
                              f"second to {route.service} (burst {burst})")
        breaker = route.limits.breaker
        why = breaker.refusal(policy)
        if why:
            raise Refusal(OVERFLOW, f"the circuit breaker of {route.service} is open: {why}")
        breaker.active += 1
        breaker.pending += 1
        return Lease(route)

    def pick(self, lease: Lease) -> tuple[EndpointStats, int]:
        """The endpoint to try next and its port; raises ``Refusal`` (no_healthy_upstream)."""
        route = lease.route
        choice = lease.choice
        if choice is None:  # the first attempt: the split's backend, kept for the retries
            choice = lease.choice = route.single or route.split.pick(self.random)  # type: ignore[union-attr]
        pool = choice.pool
        state = pool.state
        now = self.clock()
        tiers = pool.tiers if route.policy.prefer_close else pool.anywhere
        if not lease.tried and now >= state.ejected_until and tiers and choice.port:
            tier, candidates, failover = tiers[0][0], tiers[0][1], False  # the common case: nothing to filter
        else:
            tried = lease.tried
            found = locality.choose(tiers, lambda s: s.ejected_until <= now and s not in tried) if choice.port else None
            if found is None:
                raise Refusal(NO_HEALTHY, f"{choice.backend or route.service} has no healthy endpoint"
                              + (" left to try" if tried else ""))
            tier, candidates, failover = found
        endpoint = route.strategy(candidates, state.turn, self.random)
        state.turn += 1
        endpoint.active += 1
        lease.endpoint, lease.started = endpoint, now
        if route.policy.prefer_close:
            lease.tier, lease.failover = tier, failover
        return endpoint, choice.port

    def connected(self, lease: Lease) -> None:
        endpoint = lease.endpoint
        assert endpoint is not None
        now = self.clock()
        endpoint.observe(now - lease.started, now)
        outlier.succeeded(endpoint)
        lease.pending = False
        lease.route.limits.breaker.pending -= 1

    def failed(self, lease: Lease, outcome: str) -> bool:
        """Record the attempt's failure; whether to try another endpoint."""
        endpoint = lease.endpoint
        assert endpoint is not None and lease.choice is not None
        lease.endpoint = None
        endpoint.active -= 1
        now = self.clock()
        route = lease.route
        ejected = 0.0
        if outcome in ENDPOINT_FAILURES:
            # A failure costs its client as much as the slowest connect allowed: P2C steers away.
            endpoint.observe(route.timeout, now)
            pool = lease.choice.pool
            ejected = outlier.failed(endpoint, route.policy.outlier_detection, pool.members, now)
            if ejected:
                pool.state.ejected_until = max(pool.state.ejected_until, endpoint.ejected_until)
                self.ejections[pool.key] += 1
        lease.tried += (endpoint,)
        w = endpoint.workload
        lease.attempts += ((w.ref, f"{w.ip}:{lease.choice.port}", outcome, ejected),)
        return outcome in ENDPOINT_FAILURES and len(lease.tried) <= route.policy.connect_retries

    # -- for the admin API and metrics -----------------------------------------------------
    def ejected(self) -> dict[str, int]:
        """By balanced service, how many of its endpoints are ejected now."""
        now = self.clock()
        return {key: sum(1 for s in state.stats.values() if s.ejected_until > now)
                for key, state in self._pools.items() if state.ejected_until > now}
