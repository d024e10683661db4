"""Waiting in tests for something to happen: poll a check until it holds or a deadline passes.

A sleep that stands for a condition is too short on a loaded machine (a flaky test) and too
long everywhere else (a slow one), and when it is too short the test fails on an unrelated
line (an ``IndexError`` on ``[0]``) instead of saying what never happened. ``eventually``
returns as soon as the check holds and otherwise fails with what the check last saw.

A check is either a predicate (holds when it returns a true value, which ``eventually``
returns) or an assertion function (holds when it returns without an ``AssertionError``;
it returns ``None``). Other exceptions are not retried: they are bugs, not "not yet".
``eventually_async`` is the same for asyncio tests, letting the loop run between tries.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable, TypeVar

T = TypeVar("T")

TIMEOUT = 5.0
INTERVAL = 0.01


class _Tries:
    """One wait: runs the check, remembers why it did not hold, fails once the deadline passed."""

    def __init__(self, check: Callable[[], T], timeout: float, what: str | None) -> None:
        self.check = check
        self.timeout = timeout
        self.what = what or getattr(check, "__name__", "a condition")
        self.deadline = time.monotonic() + timeout
        self.value: T | None = None

    def held(self) -> bool:
        """True once the check holds; raises AssertionError when it still does not at the deadline."""
        expired = time.monotonic() > self.deadline  # taken before the try: a last try always runs
        try:
            self.value = self.check()
        except AssertionError as e:
            if expired:
                raise AssertionError(f"after {self.timeout}s waiting for {self.what}: {e}") from e
            return False
        if self.value is None or self.value:
            return True
        if expired:
            raise AssertionError(f"after {self.timeout}s waiting for {self.what}: still {self.value!r}")
        return False


def eventually(check: Callable[[], T], timeout: float = TIMEOUT, interval: float = INTERVAL,
               what: str | None = None) -> T:
    """Call ``check`` every ``interval`` seconds until it holds; its value, or AssertionError at ``timeout``."""
    tries = _Tries(check, timeout, what)
    while not tries.held():
        time.sleep(interval)
    return tries.value  # type: ignore[return-value]


async def eventually_async(check: Callable[[], T], timeout: float = TIMEOUT, interval: float = INTERVAL,
                           what: str | None = None) -> T:
    """``eventually`` on a running loop: the loop runs the code under test between tries."""
    tries = _Tries(check, timeout, what)
    while not tries.held():
        await asyncio.sleep(interval)
    return tries.value  # type: ignore[return-value]
