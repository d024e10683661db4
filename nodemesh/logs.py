"""One log format and one set of levels for every nodemesh process: timestamped lines on stderr."""

from __future__ import annotations

import logging

LEVELS = ("debug", "info", "warning", "error")


def setup(level: str = "info") -> None:
    """``level`` is one of ``LEVELS`` (the CLI's choices check it: a typo is an error, not INFO)."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
