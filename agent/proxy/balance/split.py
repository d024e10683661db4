"""A weighted choice among a split's backends: one random draw and a bisect per connection.

Weights are integers as a TCPRoute gives them; a zero weight gets no connections (Gateway
API's meaning), so it is left out.
"""

from __future__ import annotations

from bisect import bisect_right
from itertools import accumulate
from typing import Callable, Generic, Sequence, TypeVar

T = TypeVar("T")


class WeightedChoice(Generic[T]):
    __slots__ = ("items", "cumulative", "total")

    def __init__(self, items: Sequence[T], weights: Sequence[int]) -> None:
        kept = [(item, w) for item, w in zip(items, weights) if w > 0]
        self.items = tuple(item for item, _ in kept)
        self.cumulative = tuple(accumulate(w for _, w in kept))
        self.total = self.cumulative[-1] if kept else 0

    def __bool__(self) -> bool:
        return self.total > 0

    def pick(self, random: Callable[[], float]) -> T:
        """Item i with probability weight_i / total (``random`` uniform in [0, 1))."""
        return self.items[bisect_right(self.cumulative, random() * self.total)]
