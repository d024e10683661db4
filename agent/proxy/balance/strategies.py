"""Load-balancing strategies: pick one of a tier's usable endpoints.

Each takes the candidates (never empty), a turn number that grows by one per pick of their
service, and a random source; none allocates. Round robin is exact over a stable candidate
list; least connections scans from the turn's offset so that ties rotate rather than always
landing on the first; power of two choices compares two distinct random candidates by latency
times (active + 1), as Linkerd does.
"""

from __future__ import annotations

from typing import Callable, Sequence

from nodemesh.agent.proxy.balance.endpoint import EndpointStats
from nodemesh.model import LEAST_CONNECTIONS, POWER_OF_TWO_CHOICES, ROUND_ROBIN

Random = Callable[[], float]  # uniform in [0, 1), like random.Random.random
Strategy = Callable[[Sequence[EndpointStats], int, Random], EndpointStats]


def round_robin(candidates: Sequence[EndpointStats], turn: int, random: Random) -> EndpointStats:
    return candidates[turn % len(candidates)]


def least_connections(candidates: Sequence[EndpointStats], turn: int, random: Random) -> EndpointStats:
    n = len(candidates)
    start = turn % n
    best = candidates[start]
    for i in range(1, n):
        c = candidates[(start + i) % n]
        if c.active < best.active:
            best = c
    return best


def power_of_two_choices(candidates: Sequence[EndpointStats], turn: int, random: Random) -> EndpointStats:
    n = len(candidates)
    if n == 1:
        return candidates[0]
    i = int(random() * n)
    j = int(random() * (n - 1))
    if j >= i:  # two distinct: the second draw skips the first
        j += 1
    a, b = candidates[i], candidates[j]
    return a if a.score() <= b.score() else b


# TrafficPolicy.load_balancer -> (the name the connection table shows, the strategy)
STRATEGIES: dict[str, tuple[str, Strategy]] = {
    ROUND_ROBIN: ("round_robin", round_robin),
    LEAST_CONNECTIONS: ("least_connections", least_connections),
    POWER_OF_TWO_CHOICES: ("p2c", power_of_two_choices),
}
