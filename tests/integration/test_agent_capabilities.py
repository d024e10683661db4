"""The agent's capabilities in daemonset/agent.yaml are enough, and each one is needed.

The agent's privileged steps (tests/capability_probe.py: the agent's own steering, capture and
netns code) run as root in a child whose capability bounding set is the manifest's, as a
container runtime starts it (root, drop ALL, add those); then once without each of them. The
pod is a process of another user in a network namespace of the test's own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from manifests import DAEMONSET, ROOT, one
from nodemesh.cgroups import unified_root

pytestmark = pytest.mark.kernel

NOBODY = "65534"
STEPS = {"steering", "proc_netns", "setns_socket", "mark", "capture"}


@dataclass(frozen=True)
class Node:
    cgroup: Path
    pod_pid: int
    netns: str
    pins: Path


@pytest.fixture(scope="module")
def node(kernel_prerequisites: None) -> Iterator[Node]:
    """A cgroup, a "pod" (nobody's process in a netns) and a bpffs folder, all removed after."""
    name = f"nmtest-caps{os.getpid()}"
    root = unified_root()
    assert root is not None
    cgroup, pins = root / name, Path(f"/sys/fs/bpf/{name}")
    subprocess.run(["ip", "netns", "add", name], check=True)
    pod = None
    try:
        cgroup.mkdir()
        pod = subprocess.Popen(["ip", "netns", "exec", name, "setpriv", f"--reuid={NOBODY}",
                                f"--regid={NOBODY}", "--clear-groups", "sleep", "600"])
        yield Node(cgroup, pod.pid, f"/run/netns/{name}", pins)
    finally:
        if pod is not None:
            pod.kill()
            pod.wait()
        shutil.rmtree(pins, ignore_errors=True)  # unpinning frees the capture's links
        if cgroup.exists():
            cgroup.rmdir()
        subprocess.run(["ip", "netns", "del", name], check=True)


def manifest_capabilities() -> list[str]:
    """The agent's capabilities as daemonset/agent.yaml grants them (the kustomization applies the
    file unchanged): read from the file, as the parametrization below runs at collection."""
    daemonset = one(list(yaml.safe_load_all((DAEMONSET / "agent.yaml").read_text())), "DaemonSet",
                    "nodemesh-agent")
    context = daemonset["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    assert context["capabilities"]["drop"] == ["ALL"]
    return context["capabilities"]["add"]


CAPABILITIES = manifest_capabilities()


def probe(node: Node, capabilities: list[str]) -> dict[str, str | None]:
    """The probe's results as root with only ``capabilities`` (Kubernetes' names)."""
    if node.pins.exists():
        shutil.rmtree(node.pins)  # each probe pins anew
    bounding = ",".join(["-all", *(f"+{c.lower()}" for c in capabilities)])
    done = subprocess.run(
        ["setpriv", f"--bounding-set={bounding}", "--inh-caps=-all", "--",
         sys.executable, str(ROOT / "tests" / "capability_probe.py"),
         str(node.cgroup), str(node.pod_pid), node.netns, str(node.pins)],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout.splitlines()[-1])
    assert set(results) == STEPS
    return results


def test_the_manifests_capabilities_are_enough(node: Node) -> None:
    results = probe(node, CAPABILITIES)
    assert results == dict.fromkeys(STEPS), results


@pytest.mark.parametrize("capability", CAPABILITIES)
def test_each_capability_is_needed(node: Node, capability: str) -> None:
    fewer = [c for c in CAPABILITIES if c != capability]
    failed = {step: error for step, error in probe(node, fewer).items() if error}
    assert failed, f"everything works without {capability}: drop it from daemonset/agent.yaml"
