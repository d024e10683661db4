"""The import layers of pyproject's import-linter contracts hold, and would catch a cycle.

The repository keeps the design card's top-level folders (agent/, controller/, tools/) and
installs them as subpackages of ``nodemesh``; import-linter reads packages from one folder, so
the test lays the sources out as the wheel does (``[tool.setuptools]`` of pyproject.toml) in a
temporary folder and lints that.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = REPO / "pyproject.toml"


def installed_layout(dest: Path) -> Path:
    """Copy every package's modules to where the wheel installs them, under ``dest``."""
    setuptools = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]
    mapping: dict[str, str] = setuptools["package-dir"]
    for package in setuptools["packages"]:
        base = max((k for k in mapping if package == k or package.startswith(k + ".")), key=len)
        source = REPO / mapping[base] / Path(*package[len(base):].split(".")[1:])
        target = dest / Path(*package.split("."))
        target.mkdir(parents=True, exist_ok=True)
        for module in source.glob("*.py"):
            shutil.copy2(module, target / module.name)
    return dest


def lint(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache", str(PYPROJECT)],
                          cwd=tree, env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120)


def test_every_layer_contract_is_kept(tmp_path: Path) -> None:
    result = lint(installed_layout(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert " BROKEN" not in result.stdout and "0 broken" in result.stdout, result.stdout


def test_an_import_against_the_layers_breaks_a_contract(tmp_path: Path) -> None:
    """The contracts are not vacuous: steering (ebpf) importing the proxy is caught."""
    tree = installed_layout(tmp_path)
    steering = tree / "nodemesh" / "agent" / "ebpf" / "steering.py"
    steering.write_text(steering.read_text() + "\nfrom nodemesh.agent.proxy import core  # noqa: E402,F401\n")
    result = lint(tree)
    assert result.returncode != 0
    assert "agent layers BROKEN" in result.stdout, result.stdout
