"""Durations as operators write them: ``10s``, ``5m``, ``24h``, ``7d``, or sums like ``1h30m``.

Certificate lifetimes range from seconds (tests of renewal) to days, so a bare number would be
ambiguous; a unit is required.
"""

from __future__ import annotations

import datetime as dt
import re

_PART = re.compile(r"(\d+)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> dt.timedelta:
    """``"1h30m"`` -> 90 minutes; ValueError naming the accepted forms otherwise (or for zero)."""
    spec = text.strip().lower()
    parts = _PART.findall(spec)
    if not parts or "".join(n + u for n, u in parts) != spec:
        raise ValueError(f"{text!r} is not a duration: write a number and a unit, s, m, h or d "
                         "(e.g. 10s, 5m, 24h, 1h30m)")
    seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in parts)
    if seconds == 0:
        raise ValueError(f"{text!r}: a duration must be longer than zero")
    return dt.timedelta(seconds=seconds)
