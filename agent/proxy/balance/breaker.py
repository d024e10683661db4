"""The circuit breaker of one service on this agent: concurrent connections, connects pending.

Counted from the connection's admission: ``active`` until it closes or fails, ``pending`` until
its upstream answered or every attempt failed. Beyond a limit a new connection is refused at
once (Envoy's UO), not queued: a queue in front of a struggling service is what the breaker is
there to avoid.
"""

from __future__ import annotations

from nodemesh.model import TrafficPolicy


class Breaker:
    __slots__ = ("active", "pending")

    def __init__(self) -> None:
        self.active = 0
        self.pending = 0

    def refusal(self, policy: TrafficPolicy) -> str:
        """Why a new connection may not be admitted now ("" if it may)."""
        if policy.max_connections and self.active >= policy.max_connections:
            return f"{self.active} connections open, the limit is {policy.max_connections}"
        if policy.max_pending and self.pending >= policy.max_pending:
            return f"{self.pending} connects pending, the limit is {policy.max_pending}"
        return ""
