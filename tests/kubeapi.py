"""A real Kubernetes control plane for tests: one per session (it starts in seconds but holds
~450 MB), a namespace of its own for each test, and the few kubectl steps tests share.

Any test module may ask for ``control_plane`` or ``kube_namespace`` (registered in
tests/conftest.py). Objects a test makes in its namespace go with it; cluster-scoped ones (Nodes)
get unique names from ``unique_name``.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from eventually import eventually
from nodemesh.tools.kube.controlplane import LocalControlPlane

NAMESPACE_READY = 60.0  # seconds; well under one on an idle host


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalControlPlane]:
    """etcd, kube-apiserver, kube-controller-manager and kube-scheduler on 127.0.0.1, free ports."""
    with LocalControlPlane(tmp_path_factory.mktemp("kube")) as cp:
        yield cp


@pytest.fixture(scope="module", name="control_plane")
def private_control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalControlPlane]:
    """A control plane for one module alone: for the modules that restart the API server or compact
    etcd. Those faults leave the controller-manager's informers behind for a while (one full-suite
    run saw its Node cache miss a Node for minutes after a restart), which must not reach the
    other modules' tests through the session's control plane. Such a module imports this
    fixture, which then stands for ``control_plane`` in its tests."""
    with LocalControlPlane(tmp_path_factory.mktemp("kubeprivate")) as cp:
        yield cp


def unique_name(hint: str) -> str:
    """A DNS-1123 label from ``hint`` (a test's name) and a random suffix, at most 63 characters."""
    base = re.sub(r"[^a-z0-9-]+", "-", hint.lower()).strip("-")[:50].strip("-")
    return f"{base}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def kube_namespace(control_plane: LocalControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace for this test alone, deleted after it (the namespace controller removes its objects).

    Ready once the controller manager made its ``default`` ServiceAccount: before that, a Pod in it
    is refused (ServiceAccount admission), as in any cluster right after ``create namespace``.
    """
    name = unique_name(request.node.name.removeprefix("test_"))
    made = control_plane.kubectl("create", "namespace", name)
    assert made.returncode == 0, made.stderr
    eventually(lambda: control_plane.kubectl("get", "serviceaccount", "default", "-n", name).returncode == 0,
               NAMESPACE_READY, interval=0.1, what=f"the default ServiceAccount of namespace {name}")
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false")


def kubectl_json(cp: LocalControlPlane, *args: str, input: str | None = None) -> Any:
    """kubectl ... -o json as the admin; fails the test with kubectl's stderr if it fails."""
    done = cp.kubectl(*args, "-o", "json", input=input)
    assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
    return json.loads(done.stdout)


def create(cp: LocalControlPlane, obj: dict) -> dict:
    """Create ``obj`` (a manifest as data) and return it as the API server stored it."""
    return kubectl_json(cp, "create", "-f", "-", input=json.dumps(obj))


def set_status(cp: LocalControlPlane, kind: str, name: str, status: dict, namespace: str | None = None) -> dict:
    """Merge ``status`` into the object's status subresource (what a kubelet would report)."""
    where = ["-n", namespace] if namespace else []
    return kubectl_json(cp, "patch", kind, name, *where, "--subresource=status", "--type=merge",
                        "-p", json.dumps({"status": status}))


def register_node(cp: LocalControlPlane, name: str, ip: str, pod_cidr: str | None = None) -> dict:
    """A Node as a kubelet registers it, Ready with room for pods (no kubelet heartbeats it: the
    node lifecycle controller marks it NotReady after its 40 s grace, long after a test is done)."""
    spec = {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]} if pod_cidr else {}
    create(cp, {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}, "spec": spec})
    return set_status(cp, "node", name, {
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                        "message": "registered by a test"}],
        "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
        "capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"},
        "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"}})


def pod_manifest(name: str, namespace: str, labels: dict[str, str] | None = None,
                 node: str | None = None, **spec: Any) -> dict:
    """A one-container Pod (nothing runs it: the tests set its status as a kubelet would)."""
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
            "spec": {"containers": [{"name": "app", "image": "nodemesh/app"}],
                     **({"nodeName": node} if node else {}), **spec}}


def unreachable_kubeconfig(path: Path) -> Path:
    """A kubeconfig whose API server nobody serves (port 1 refuses): how clients fail, for real."""
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": "http://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "admin"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}]}))
    return path
