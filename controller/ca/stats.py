"""What the CA did, counted for the controller's metrics (``controller/telemetry`` reads it).

The CA counts on the event loop; Prometheus reads from the metrics endpoint's thread. Both hold
the lock, so a scrape sees the counts of one moment. Every refusal reason is counted from the
start, at 0: the set of reasons is bounded, and each series exists before its first refusal.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from nodemesh.controller.ca.signing import Refusal
from nodemesh.controller.nodeauth.auth import AuthFailure

REFUSAL_REASONS = tuple(reason.value for reason in (*AuthFailure, *Refusal))


@dataclass(frozen=True)
class CaCounts:
    signed: int
    refusals: dict[str, int]  # by reason, every one of REFUSAL_REASONS


class CaStats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._signed = 0
        self._refusals = dict.fromkeys(REFUSAL_REASONS, 0)

    def count_signed(self) -> None:
        with self._lock:
            self._signed += 1

    def count_refusal(self, reason: AuthFailure | Refusal) -> None:
        with self._lock:
            self._refusals[reason.value] += 1

    def read(self) -> CaCounts:
        with self._lock:
            return CaCounts(self._signed, dict(self._refusals))
