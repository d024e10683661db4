"""The manifests in daemonset/ as the tests read them: the objects ``kubectl kustomize`` renders
from a kustomization, the objects ``helm template`` renders from the chart, looked up by kind and
name. Both the offline checks (tests/unit/test_manifests.py) and the ones against a real API
server (tests/integration/test_manifests_apply.py) read them so.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from nodemesh.tools.kube.binaries import KUBECTL, release

ROOT = Path(__file__).resolve().parent.parent
DAEMONSET = ROOT / "daemonset"
THIRD_PARTY = DAEMONSET / "crds" / "third-party"
CHART = DAEMONSET / "helm" / "nodemesh"
NAMESPACE = "nodemesh-system"


def _run(*args: str) -> str:
    """stdout of a command that must succeed; else the test fails with its stderr."""
    done = subprocess.run(args, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(args)}: {done.stderr}"
    return done.stdout


def _documents(text: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def kustomize(directory: Path) -> list[dict]:
    """The objects of the kustomization in ``directory``, as `kubectl apply -k` would send them."""
    return _documents(_run(str(KUBECTL), "kustomize", str(directory)))


def helm_bin() -> Path:
    """Helm, built once per machine from the Go module proxy (scripts/helm/build.sh; cached)."""
    return Path(_run(str(ROOT / "scripts" / "helm" / "build.sh")).strip()) / "helm"


def helm_template(helm: Path, *values: str, kube_version: str) -> list[dict]:
    """The chart's objects, CRDs included, with ``--set`` ``values``, for ``kube_version``."""
    sets = [arg for value in values for arg in ("--set", value)]
    return _documents(_run(str(helm), "template", "nodemesh", str(CHART), "--include-crds",
                           "--kube-version", kube_version, *sets))


def by_key(objects: list[dict]) -> dict[tuple[str, str, str], dict]:
    """(kind, namespace or "", name) -> object."""
    return {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o
            for o in objects}


def one(objects: list[dict], kind: str, name: str) -> dict:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def kube_release() -> str:
    """The Kubernetes release the tests' control plane is built from, without its "v" (``1.36.3``)."""
    return release().removeprefix("v")
