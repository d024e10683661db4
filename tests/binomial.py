"""Tolerances for counts that a correct implementation draws at random: exact binomial bounds.

``bounds(n, p)`` is the narrowest central interval that a Binomial(n, p) count falls outside of
with probability below ``alpha`` (1e-6 by default, the house rule for statistical tests), from
the exact distribution (log-space pmf), not a normal approximation.
"""

from __future__ import annotations

import math


def _pmf(n: int, p: float, k: int) -> float:
    if p <= 0.0:
        return 1.0 if k == 0 else 0.0
    if p >= 1.0:
        return 1.0 if k == n else 0.0
    return math.exp(math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
                    + k * math.log(p) + (n - k) * math.log1p(-p))


def bounds(n: int, p: float, alpha: float = 1e-6) -> tuple[int, int]:
    """(lo, hi): P(X < lo) + P(X > hi) < alpha for X ~ Binomial(n, p)."""
    lo, tail = 0, 0.0
    while lo < n and tail + _pmf(n, p, lo) < alpha / 2:
        tail += _pmf(n, p, lo)
        lo += 1
    hi, tail = n, 0.0
    while hi > 0 and tail + _pmf(n, p, hi) < alpha / 2:
        tail += _pmf(n, p, hi)
        hi -= 1
    return lo, hi


def assert_binomial(count: int, n: int, p: float, what: str = "count") -> None:
    lo, hi = bounds(n, p)
    assert lo <= count <= hi, f"{what}: {count} of {n}, expected {n * p:g} (p={p:g}), within [{lo}, {hi}]"
