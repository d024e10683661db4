"""Token buckets: new connections per second from one source workload to one service.

A bucket holds up to ``burst`` tokens and gains ``rate`` per second; a connection takes one or
is refused at once (Envoy's RL). The refill is computed when a connection asks, so an idle
bucket costs nothing. Its size is the policy's (``TrafficPolicy.bucket_size``).
"""

from __future__ import annotations


class TokenBucket:
    __slots__ = ("rate", "burst", "tokens", "at")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)  # full: a workload's first connections are never refused
        self.at = now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False
