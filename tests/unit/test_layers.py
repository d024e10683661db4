"""The import layers of pyproject's import-linter contracts hold, and would catch a cycle.

``nodemesh/agent``, ``nodemesh/controller``, ``nodemesh/tools`` and ``nodemesh/bpf`` are links to
the design card's top-level folders, so the repository holds the package as the wheel installs
it and ``lint-imports``, run in the checkout, sees every module.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LINT = str(Path(sys.executable).parent / "lint-imports")


def lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` as a developer runs it: in ``cwd``, which holds the ``nodemesh`` package."""
    return subprocess.run([LINT, "--no-cache", str(REPO / "pyproject.toml")], cwd=cwd,
                          env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=120)


def test_every_layer_contract_is_kept_in_the_checkout() -> None:
    result = lint(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " BROKEN" not in result.stdout and "0 broken" in result.stdout, result.stdout


def test_an_import_against_the_layers_breaks_a_contract(tmp_path: Path) -> None:
    """The contracts are not vacuous: steering (ebpf) importing the proxy is caught."""
    shutil.copytree(REPO / "nodemesh", tmp_path / "nodemesh", ignore=shutil.ignore_patterns("__pycache__"))
    steering = tmp_path / "nodemesh" / "agent" / "ebpf" / "steering.py"
    steering.write_text(steering.read_text() + "\nfrom nodemesh.agent.proxy import core  # noqa: E402,F401\n")
    result = lint(tmp_path)
    assert result.returncode != 0
    assert "agent layers BROKEN" in result.stdout, result.stdout
