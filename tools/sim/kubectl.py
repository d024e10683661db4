"""kubectl against a `sim up --kube` cluster, and what the demo and tests ask of it.

The sim's admin kubeconfig is what the user exports; this runs the same kubectl with it, so that
what the demo shows is what a user typing the commands would see. A client pod runs to
completion and is read back from its log file (the sim kubelet serves no `kubectl logs`).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

from nodemesh.tools.kube.binaries import KUBECTL
from nodemesh.tools.sim.names import SimError, SimNames

# The repository's manifests (`kubectl apply -k daemonset/`), beside the package's folders.
MANIFESTS = Path(__file__).resolve().parents[2] / "daemonset"
SYSTEM_NAMESPACE = "nodemesh-system"


class Kubectl:
    def __init__(self, names: SimNames, timeout: float = 120.0) -> None:
        self.names = names
        self.timeout = timeout

    def run(self, *args: str, input: str | None = None) -> str:
        """kubectl's output; SimError with its message when it fails."""
        done = subprocess.run([str(KUBECTL), f"--kubeconfig={self.names.admin_kubeconfig}", *args],
                              input=input, capture_output=True, text=True, timeout=self.timeout)
        if done.returncode != 0:
            raise SimError(f"kubectl {' '.join(args)}: {done.stderr.strip() or done.stdout.strip()}")
        return done.stdout

    def get(self, *args: str) -> Any:
        return json.loads(self.run("get", *args, "-o", "json"))

    def ready(self, kind: str, name: str, namespace: str = SYSTEM_NAMESPACE) -> bool:
        """Whether a Deployment has all its replicas, or a DaemonSet a pod on every node, Ready."""
        try:
            obj = self.get(kind, name, "-n", namespace)
        except SimError:
            return False
        status = obj.get("status", {})
        if kind == "daemonset":
            return 0 < status.get("desiredNumberScheduled", 0) == status.get("numberReady")
        return status.get("readyReplicas") == obj["spec"]["replicas"]

    def install_mesh(self, manifests: Path = MANIFESTS) -> None:
        """`kubectl apply -k` of the third-party CRDs, then of the mesh itself."""
        if not (manifests / "kustomization.yaml").is_file():
            raise SimError(f"{manifests} holds no kustomization.yaml: the manifests are the "
                           "repository's daemonset/ folder (run from a checkout)")
        self.run("apply", "-k", str(manifests / "crds" / "third-party"))
        self.run("apply", "-k", str(manifests))

    def run_pod(self, namespace: str, name: str, manifest: str, container: str,
                timeout: float) -> tuple[dict[str, Any], list[str]]:
        """Apply a pod that runs to completion, wait for it, delete it; (the pod, its log lines)."""
        self.run("apply", "-f", "-", input=manifest)
        pod = wait_for(lambda: (p := self.get("pod", name, "-n", namespace))["status"].get("phase")
                       in ("Succeeded", "Failed") and p, timeout, f"pod {namespace}/{name} to finish")
        log = self.names.pod_log(namespace, name, container).read_text().splitlines()
        self.run("delete", "pod", name, "-n", namespace, "--wait=false")
        return pod, log


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    """``check()``'s first true value, polled; SimError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SimError(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
