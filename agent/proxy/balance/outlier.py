"""Outlier detection: eject an endpoint after consecutive connect failures, for a growing time.

An endpoint failing ``consecutive_failures`` connects in a row is left out of balancing for
``base_ejection`` x 2^(its ejections since its last success), at most ``max_ejection``, then
comes back by itself (its time is up: nothing to schedule). A success clears both counts.
Never more than ``max_ejected_percent`` of the service's endpoints are out at once, and never
all of them: a service whose every endpoint fails keeps one to try, so that clients see the
failure rather than a refusal of a service that may be recovering.
"""

from __future__ import annotations

from typing import Sequence

from nodemesh.agent.proxy.balance.endpoint import EndpointStats
from nodemesh.model import OutlierDetection


def ejection_seconds(od: OutlierDetection, ejections: int) -> float:
    return min(od.base_ejection * 2.0 ** ejections, od.max_ejection)


def may_eject(od: OutlierDetection, members: Sequence[EndpointStats], now: float) -> bool:
    """Whether one more of ``members`` may be ejected now."""
    n = len(members)
    out = sum(1 for s in members if s.ejected_until > now) + 1
    return out < n and out * 100 <= n * od.max_ejected_percent


def failed(stats: EndpointStats, od: OutlierDetection, members: Sequence[EndpointStats], now: float) -> float:
    """Count a connect failure; the seconds it is ejected for, 0 if it is not."""
    stats.failures += 1
    if not od.consecutive_failures or stats.failures < od.consecutive_failures or stats.ejected_until > now:
        return 0.0
    if not may_eject(od, members, now):
        return 0.0  # the share is full: it is ejected at a later failure, once there is room
    seconds = ejection_seconds(od, stats.ejections)
    stats.ejections += 1
    stats.failures = 0
    stats.ejected_until = now + seconds
    return seconds


def succeeded(stats: EndpointStats) -> None:
    stats.failures = 0
    stats.ejections = 0
