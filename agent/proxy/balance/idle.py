"""The idle timeout: which relayed connections moved no byte either way for too long.

No per-byte work: a periodic sweep compares each watched connection's byte counts with what it
saw at the sweep before; a change restarts its idle time. So a connection is closed between
``idle_timeout`` and ``idle_timeout`` + one sweep interval after its last byte; the interval is
a quarter of the shortest timeout watched, between ``MIN_INTERVAL`` and ``MAX_INTERVAL``.
"""

from __future__ import annotations

from typing import Iterable, Protocol, TypeVar

MIN_INTERVAL = 0.05
MAX_INTERVAL = 1.0


class Idler(Protocol):
    idle_timeout: float  # 0: never
    idle_bytes: int  # bytes both ways at the last change seen
    idle_since: float  # when that change was seen; 0: not relaying yet
    @property
    def received(self) -> int: ...
    @property
    def sent(self) -> int: ...


C = TypeVar("C", bound=Idler)


def sweep(conns: Iterable[C], now: float) -> tuple[list[C], float]:
    """(the connections idle past their timeout, seconds until the next sweep; 0: none to watch)."""
    expired: list[C] = []
    shortest = 0.0
    for c in conns:
        timeout = c.idle_timeout
        if not timeout or not c.idle_since:
            continue
        moved = c.received + c.sent
        if moved != c.idle_bytes:
            c.idle_bytes, c.idle_since = moved, now
        elif now - c.idle_since >= timeout:
            expired.append(c)
            continue
        shortest = timeout if not shortest else min(shortest, timeout)
    return expired, interval(shortest) if shortest else 0.0


def interval(timeout: float) -> float:
    """How often to sweep for a timeout: a quarter of it, within bounds."""
    return min(MAX_INTERVAL, max(MIN_INTERVAL, timeout / 4))
