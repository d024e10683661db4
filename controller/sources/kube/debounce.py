"""When to rebuild the model after changes, sans-IO: a burst of watch events makes one rebuild.

A Deployment scaled up, a relist after 410, a node coming back: each is many events within
milliseconds. Rebuilding on each would build and stream many models nobody needs; waiting for
quiet forever would let a steady trickle of pod status updates hold every change back. So: rebuild
``QUIET`` after the last change, but never later than ``AT_MOST`` after the first one not yet built.
"""

from __future__ import annotations

QUIET = 0.1
AT_MOST = 1.0


class Debounce:
    def __init__(self, quiet: float = QUIET, at_most: float = AT_MOST) -> None:
        self.quiet = quiet
        self.at_most = at_most
        self._first: float | None = None
        self._last = 0.0

    def changed(self, now: float) -> None:
        if self._first is None:
            self._first = now
        self._last = now

    def due(self) -> float | None:
        """When to rebuild (a clock time), None with nothing to build."""
        if self._first is None:
            return None
        return min(self._last + self.quiet, self._first + self.at_most)

    def built(self) -> None:
        self._first = None
