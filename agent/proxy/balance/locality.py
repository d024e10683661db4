"""Locality tiers: the source's node, then its zone, then anywhere.

Built once per view and service (``tiers``), closest first, leaving out empty tiers and a tier
that holds exactly what the closer one does (so "zone" is not tried twice when the zone is the
node). A zone of "" (a Node without the label) matches nothing: unlabelled nodes are not one
zone. Choosing walks the tiers and takes the first with a usable endpoint; having skipped a
non-empty closer tier is a failover.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

from nodemesh.agent.proxy.balance.endpoint import EndpointStats

NODE, ZONE, ANY = "node", "zone", "any"
Tier = tuple[str, tuple[EndpointStats, ...]]


def tiers(members: Sequence[EndpointStats], node: str, zones: Mapping[str, str]) -> tuple[Tier, ...]:
    """``zones``: node name -> its zone label ("" when it has none)."""
    zone = zones.get(node, "")
    candidates = (
        (NODE, tuple(s for s in members if s.workload.node == node)),
        (ZONE, tuple(s for s in members if zone and zones.get(s.workload.node, "") == zone)),
        (ANY, tuple(members)),
    )
    out: list[Tier] = []
    for name, tier in candidates:
        if tier and (not out or tier != out[-1][1]):
            out.append((name, tier))
    return tuple(out)


def choose(tiers_: Sequence[Tier], usable: Callable[[EndpointStats], bool]
           ) -> tuple[str, list[EndpointStats], bool] | None:
    """(tier name, its usable endpoints, whether a closer tier was skipped); None if none is usable."""
    for i, (name, tier) in enumerate(tiers_):
        candidates = [s for s in tier if usable(s)]
        if candidates:
            return name, candidates, i > 0
    return None
