"""What this agent knows of one endpoint of a balanced service: learnt from its own connects.

One object per (service, endpoint), kept across views (an endpoint's history survives a config
update) and shared by every connection to it, so that per-connection work is a few attribute
updates. Nothing here is shared between agents: each balances by what it has seen.
"""

from __future__ import annotations

import math

from nodemesh.model import Workload

# What a new endpoint's latency starts at when nothing is known of its service's others: a
# connect on the node or across the simulated bridge (~1 ms), so it is neither shunned nor
# flooded before its first connect says more.
NEUTRAL_LATENCY = 0.001
# Linkerd's decay: a peak is forgotten over ~10 s, so a slow spell is avoided for a while, then
# the endpoint is tried again.
DECAY_SECONDS = 10.0


class EndpointStats:
    __slots__ = ("workload", "active", "latency", "observed_at", "failures", "ejected_until", "ejections")

    def __init__(self, workload: Workload, latency: float = NEUTRAL_LATENCY) -> None:
        self.workload = workload  # the newest view's, updated when a view is built
        self.active = 0  # connections from this agent: +1 at each attempt, -1 when it fails or closes
        self.latency = latency  # peak-EWMA of connect latency, seconds
        self.observed_at = 0.0
        self.failures = 0  # consecutive connect failures
        self.ejected_until = 0.0  # monotonic time; in the past: not ejected
        self.ejections = 0  # times ejected since its last success

    def observe(self, seconds: float, now: float) -> None:
        """Peak-EWMA (Linkerd's): a slower connect counts at once, faster ones decay the peak."""
        if seconds >= self.latency:
            self.latency = seconds
        else:
            w = math.exp(-(now - self.observed_at) / DECAY_SECONDS)
            self.latency = self.latency * w + seconds * (1.0 - w)
        self.observed_at = now

    def score(self) -> float:
        """P2C's cost: latency times the connections it would have with this one."""
        return self.latency * (self.active + 1)
