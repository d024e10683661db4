"""How late the proxy's event loop runs what is due: ``nodemesh_event_loop_lag_seconds``.

Every connection the agent relays is a callback on one loop, so anything that holds the loop
(a slow callback, a long GC pause, a blocking call) delays all of them alike. A timer that
asks to run every ``interval`` and notes how late it ran measures exactly that delay, at the
cost of one timer callback per interval. A plain timer rather than a supervised task: it
cannot fail, so it needs no restarts or health entry, and it costs no task wake-up.
"""

from __future__ import annotations

import asyncio
import time

from nodemesh.metrics import LATENCY_BUCKETS, Buckets

INTERVAL = 0.25  # seconds between probes: 4 observations a second, a scrape's worth every 15 s


class LoopLag:
    """A probe of the running loop's lag, from ``start`` (on the loop) until ``close``."""

    def __init__(self, interval: float = INTERVAL) -> None:
        self.interval = interval
        self.lags = Buckets(LATENCY_BUCKETS)
        self._due = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._schedule(asyncio.get_running_loop())

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        # time.monotonic, not loop.time(): uvloop's counts milliseconds
        self._due = time.monotonic() + self.interval
        self._timer = loop.call_later(self.interval, self._fired, loop)

    def _fired(self, loop: asyncio.AbstractEventLoop) -> None:
        # uvloop rounds timers to its millisecond clock, which may fire one a little early
        self.lags.observe(max(0.0, time.monotonic() - self._due))
        self._schedule(loop)
