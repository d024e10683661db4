"""The one retry delay policy of agent and controller: capped exponential backoff with jitter.

Many agents (or the controller's many watches) retrying at once must not stay in step, so each
delay is drawn from [half, whole] of the current step. ``uniform`` is a parameter so that tests
can fix the draw and check the schedule without sleeping.
"""

from __future__ import annotations

import random
from typing import Callable


class Backoff:
    """Delays that double from ``start`` up to ``maximum``, each drawn from [half, whole]."""

    def __init__(self, start: float, maximum: float,
                 uniform: Callable[[float, float], float] = random.uniform) -> None:
        self.start = start
        self.maximum = maximum
        self._uniform = uniform
        self._next = start

    def next(self) -> float:
        delay = self._next * self._uniform(0.5, 1.0)
        self._next = min(self._next * 2, self.maximum)
        return delay

    def reset(self) -> None:
        self._next = self.start
