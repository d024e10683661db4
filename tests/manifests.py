"""The manifests in daemonset/ as the tests read them: the objects ``kubectl kustomize`` renders
from a kustomization, the objects ``helm template`` renders from the chart, looked up by kind and
name. Both the offline checks (tests/unit/test_manifests.py) and the ones against a real API
server (tests/integration/test_manifests_apply.py) read them so.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DAEMONSET = ROOT / "daemonset"
THIRD_PARTY = DAEMONSET / "crds" / "third-party"
CHART = DAEMONSET / "helm" / "nodemesh"
NAMESPACE = "nodemesh-system"
KUBECTL = "kubectl"


def _documents(text: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def kustomize(directory: Path) -> list[dict]:
    """The objects of the kustomization in ``directory``, as `kubectl apply -k` would send them."""
    out = subprocess.run([KUBECTL, "kustomize", str(directory)], check=True, capture_output=True,
                         text=True)
    return _documents(out.stdout)


def helm_bin() -> Path:
    """Helm, built once per machine from the Go module proxy (scripts/helm/build.sh; cached)."""
    out = subprocess.run([str(ROOT / "scripts" / "helm" / "build.sh")], check=True,
                         capture_output=True, text=True)
    return Path(out.stdout.strip()) / "helm"


def helm_template(helm: Path, *values: str, kube_version: str) -> list[dict]:
    """The chart's objects, CRDs included, with ``--set`` ``values``, for ``kube_version``."""
    args = [str(helm), "template", "nodemesh", str(CHART), "--include-crds",
            "--kube-version", kube_version]
    for value in values:
        args += ["--set", value]
    out = subprocess.run(args, check=True, capture_output=True, text=True)
    return _documents(out.stdout)


def by_key(objects: list[dict]) -> dict[tuple[str, str, str], dict]:
    """(kind, namespace or "", name) -> object."""
    return {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o
            for o in objects}


def one(objects: list[dict], kind: str, name: str) -> dict:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def kube_release() -> str:
    """The Kubernetes release the tests' control plane is built from (scripts/kube/go.mod)."""
    for line in (ROOT / "scripts" / "kube" / "go.mod").read_text().splitlines():
        words = line.split()
        if words[:2] == ["require", "k8s.io/kubernetes"]:
            return words[2].lstrip("v")
    raise AssertionError("scripts/kube/go.mod requires no k8s.io/kubernetes")
