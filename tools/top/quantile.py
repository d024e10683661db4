"""Prometheus' ``histogram_quantile``, on buckets we already hold (no query engine to ask).

The same steps as Prometheus (promql/quantile.go, ``bucketQuantile``), so that ``nodemesh top``
and a dashboard built on ``histogram_quantile(0.99, sum by (le) (rate(...)))`` agree: buckets
sorted by upper bound, made monotonic (rates of separate bucket series can disagree by a
restart), then linear interpolation inside the bucket the rank falls in, with 0 as the lower
bound of the first. ``None`` stands for Prometheus' NaN.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from itertools import accumulate
from typing import Mapping


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """The ``q`` quantile (0 < q <= 1) of cumulative ``buckets`` (upper bound -> count); None
    without a +Inf bucket, with fewer than two buckets, or with no observations."""
    bounds = sorted(buckets)
    if len(bounds) < 2 or bounds[-1] != math.inf:
        return None
    counts = list(accumulate((buckets[b] for b in bounds), max))
    if counts[-1] == 0:
        return None
    rank = q * counts[-1]
    b = bisect_left(counts, rank, hi=len(counts) - 1)
    if b == len(bounds) - 1:  # in the +Inf bucket: the highest finite bound is all we know
        return bounds[-2]
    if b == 0 and bounds[0] <= 0:
        return bounds[0]
    start, below = (bounds[b - 1], counts[b - 1]) if b > 0 else (0.0, 0.0)
    return start + (bounds[b] - start) * (rank - below) / (counts[b] - below)
