"""Durations as operators write them: ``250ms``, ``10s``, ``5m``, ``24h``, ``7d``, or sums like
``1h30m``; at the bottom of the controller's layers, as flags (certificate lifetimes) and objects
(a TrafficPolicy's timeouts) are written the same way.

Lifetimes and timeouts range from milliseconds (a connect timeout) to days (a certificate), so a
bare number would be ambiguous; a unit is required.
"""

from __future__ import annotations

import datetime as dt
import re

# "ms" before "m": the alternation takes the first unit that matches
_PART = re.compile(r"(\d+)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> dt.timedelta:
    """``"1h30m"`` -> 90 minutes; ValueError naming the accepted forms otherwise (or for zero)."""
    spec = text.strip().lower()
    parts = _PART.findall(spec)
    if not parts or "".join(n + u for n, u in parts) != spec:
        raise ValueError(f"{text!r} is not a duration: write a number and a unit, ms, s, m, h or d "
                         "(e.g. 250ms, 10s, 5m, 24h, 1h30m)")
    millis = sum(int(n) * round(_UNIT_SECONDS[u] * 1000) for n, u in parts)
    if millis == 0:
        raise ValueError(f"{text!r}: a duration must be longer than zero")
    return dt.timedelta(milliseconds=millis)
