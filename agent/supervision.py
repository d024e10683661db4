"""Background work that must not die silently: one backoff policy, one supervisor, one health record.

The agent's background work (the config subscription, each workload's certificate upkeep, the
retry of pods not enrolled yet) runs for the agent's whole life. A failure nobody expected (a
bug, a kernel refusing something) is logged with its traceback, retried with the same capped,
jittered exponential backoff everywhere, and shown by readiness until that work succeeds
again: never an agent that looks alive and quietly does nothing.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Awaitable, Callable

from nodemesh.backoff import Backoff as _SharedBackoff

log = logging.getLogger(__name__)

BACKOFF_START = 0.2
BACKOFF_MAX = 5.0


class Backoff(_SharedBackoff):
    """The shared policy (``nodemesh/backoff.py``) with the agent's default steps."""

    def __init__(self, start: float = BACKOFF_START, maximum: float = BACKOFF_MAX) -> None:
        super().__init__(start, maximum)


class Health:
    """What background work is failing now, by name; safe to report from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failing: dict[str, str] = {}

    def failing(self, name: str, error: BaseException | str) -> None:
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        with self._lock:
            self._failing[name] = text

    def ok(self, name: str) -> None:
        with self._lock:
            self._failing.pop(name, None)

    def problems(self) -> dict[str, str]:
        with self._lock:
            return dict(self._failing)


class Supervisor:
    """Runs named background tasks on the loop; a task that raises is logged, marked failing in
    ``health`` and run again after a backoff."""

    def __init__(self, health: Health | None = None) -> None:
        self.health = health or Health()
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, name: str, work: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        """Run ``work()`` until it returns; each time it raises, run it again after a backoff.

        A long-running ``work`` that recovers says so with ``health.ok(name)``; one that returns
        is done and healthy.
        """
        task = asyncio.get_running_loop().create_task(self._run(name, work), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def every(self, name: str, interval: float, step: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        """Run ``step()`` every ``interval`` seconds, for good; a step that completes is healthy."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(interval)
                await step()
                self.health.ok(name)

        return self.spawn(name, loop)

    async def _run(self, name: str, work: Callable[[], Awaitable[None]]) -> None:
        backoff = Backoff()
        while True:
            try:
                await work()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                delay = backoff.next()
                log.exception("%s failed; running it again in %.1fs", name, delay)
                self.health.failing(name, e)
                await asyncio.sleep(delay)
                continue
            self.health.ok(name)
            return

    def cancel(self, task: asyncio.Task[None]) -> None:
        """Stop one task for good (its work is no longer wanted): it no longer counts as failing."""
        task.cancel()
        self.health.ok(task.get_name())

    def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
