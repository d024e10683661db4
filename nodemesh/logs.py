"""One log format for every nodemesh process: timestamped lines on stderr."""

from __future__ import annotations

import logging


def setup(level: str = "info") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
