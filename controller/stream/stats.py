"""What the config streams did, counted for the controller's metrics (``controller/telemetry``
reads it): pushes by type, acks by result, and how long each push took to be answered.

The streams count on the event loop; Prometheus reads from the metrics endpoint's thread. Both
hold the lock, so a scrape sees the counts of one moment (a histogram's buckets and sum agree).
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass

from nodemesh.api import mesh_pb2 as pb
from nodemesh.controller.stream.session import AckResult
from nodemesh.metrics import Buckets

# Seconds from a model version to an agent's answer: a loopback round trip (ms) to an agent
# that is slow to apply or to answer (a minute).
PUSH_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
PUSH_TYPES = ("snapshot", "delta")
ANSWERS = (AckResult.ACCEPTED, AckResult.REJECTED)


@dataclass(frozen=True)
class StreamCounts:
    pushes: dict[str, int]  # by type, every one of PUSH_TYPES
    acks: dict[str, int]  # by result, "accepted" and "rejected"
    push_seconds: Buckets  # a copy


class StreamStats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pushes = dict.fromkeys(PUSH_TYPES, 0)
        self._acks = {result.value: 0 for result in ANSWERS}
        self._push_seconds = Buckets(PUSH_BUCKETS)

    def count_push(self, update: pb.ConfigUpdate) -> None:
        with self._lock:
            self._pushes["snapshot" if update.snapshot else "delta"] += 1

    def count_answer(self, result: AckResult, seconds: float | None) -> None:
        """An agent accepted or rejected a version, ``seconds`` after it was due (None: a
        version this stream never sent, which has no start to measure from)."""
        with self._lock:
            self._acks[result.value] += 1
            if seconds is not None:
                self._push_seconds.observe(seconds)

    def read(self) -> StreamCounts:
        with self._lock:
            return StreamCounts(dict(self._pushes), dict(self._acks), copy.deepcopy(self._push_seconds))
