"""The current model and its version, and a way for every agent stream to wait for the next one.

Versions count up from 1 for each model that differs from the one before, for the life of the
process: a connected agent never sees one go backwards. After a restart they start again at 1,
which is fine because every stream begins with a snapshot that the agent takes as authoritative.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from nodemesh.model import MeshModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Versioned:
    version: int
    model: MeshModel
    # When this version was made (time.monotonic()): a push's duration runs from here to the ack.
    made_at: float = field(default_factory=time.monotonic, compare=False)


class ModelFeed:
    def __init__(self, model: MeshModel) -> None:
        self._current = Versioned(1, model)
        self._changed = asyncio.Event()
        self._closed = False
        _log_applied(self._current)

    @property
    def current(self) -> Versioned:
        return self._current

    def publish(self, model: MeshModel) -> None:
        """Make ``model`` the next version, unless it equals the current one."""
        if model == self._current.model:
            log.info("model unchanged (version %d)", self._current.version)
            return
        self._current = Versioned(self._current.version + 1, model)
        _log_applied(self._current)
        self._wake()

    def close(self) -> None:
        """Wake every waiter with None: the streams end (graceful shutdown)."""
        self._closed = True
        self._wake()

    async def next_after(self, version: int) -> Versioned | None:
        """The first version newer than ``version`` (waiting for it), None once closed."""
        while not self._closed and self._current.version <= version:
            await self._changed.wait()
        return None if self._closed else self._current

    def _wake(self) -> None:
        # Waiters hold the old event and wake; later waiters wait on a fresh one.
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()


def _log_applied(current: Versioned) -> None:
    model = current.model
    log.info("applied model version %d: %d workloads, %d services, %d nodes", current.version,
             len(model.workloads), len(model.services), len(model.nodes))
