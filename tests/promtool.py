"""Running promtool (Debian's prometheus package, installed by scripts/setup.sh) from tests.

A host without it FAILS the tests that need it, with what to do: a skip would let a CI run
that never checked the rules or the dashboards' queries look green.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "telemetry" / "prometheus" / "rules.yaml"
RULES_TEST = REPO / "telemetry" / "prometheus" / "rules_test.yaml"


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``promtool ARGS``, output captured; fails the test when promtool is not installed."""
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool not found: run scripts/setup.sh (as root), it installs Debian's "
                    "prometheus package", pytrace=False)
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120, cwd=cwd)
