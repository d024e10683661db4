"""Finding a pod's network namespace on the real kernel: real cgroups named as the kubelet names
them, real namespaces, real processes moved into the pods' cgroups.

Each test gets a private cgroup subtree (``<unified>/nodemesh-test-<random>``) as the cgroup
root the kubelet would see, and its own named namespaces; both go, with the processes, after
the test whatever its outcome. The last test runs the real controller and an agent started
with ``--pod-netns-from=cgroup`` in a namespace of their own, as a node's.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Iterator

import pytest
import uvloop
from pyroute2 import netns as pyroute2_netns

from eventually import eventually  # tests/: the one wait for a condition
from hbone_pki import TestCa, spiffe  # tests/: the test CA

from nodemesh import cgroups  # noqa: E402
from nodemesh.agent.ebpf.steering import Steering  # noqa: E402
from nodemesh.agent.identity.manager import CertManager  # noqa: E402
from nodemesh.agent.inpod.discovery import KubeletCgroups, NotYet  # noqa: E402
from nodemesh.agent.inpod.enroller import Enroller  # noqa: E402
from nodemesh.agent.proxy.node import NodeProxy  # noqa: E402
from nodemesh.agent.state.store import View  # noqa: E402
from nodemesh.model import MeshModel, Workload  # noqa: E402
from nodemesh.netns import Netns  # noqa: E402
from nodemesh.tools.sim.cleanup import remove_cgroup_tree  # noqa: E402

pytestmark = pytest.mark.kernel

UID = "5d0c7e1a-93f4-4b8e-8c21-0a1b2c3d4e5f"
UID_ = UID.replace("-", "_")
CGROUPFS = f"kubepods/besteffort/pod{UID}"
SYSTEMD = f"kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice"

POD = Workload(uid=UID, name="web-1", namespace="shop", service_account="web", node="n1", ip="10.206.0.2",
               meshed=True, identity=spiffe("shop", "web"))


class Node:
    """A cgroup root, namespaces, processes and bpffs pins made for one test, all removed by ``close``."""

    def __init__(self) -> None:
        unified = cgroups.unified_root()
        assert unified is not None
        self.tag = secrets.token_hex(4)
        self.root = unified / f"nodemesh-test-{self.tag}"
        self.root.mkdir()
        self.bpffs = Path(f"/sys/fs/bpf/nmtest-disc-{self.tag}")  # an agent's pins, if one runs
        self.namespaces: list[str] = []
        self.processes: list[subprocess.Popen[bytes]] = []

    def netns(self, address: str | None = None) -> str:
        """A new named namespace (with ``address`` on its loopback, up); its path."""
        name = f"nmtest-disc-{self.tag}-{len(self.namespaces)}"
        pyroute2_netns.create(name)
        self.namespaces.append(name)
        if address is not None:
            ip("-n", name, "link", "set", "lo", "up")
            ip("-n", name, "addr", "add", f"{address}/32", "dev", "lo")
        return f"/run/netns/{name}"

    def spawn(self, argv: list[str], netns: str, **popen: object) -> subprocess.Popen[bytes]:
        """``argv`` in ``netns``, stopped (SIGTERM, then SIGKILL) by ``close``."""
        with Netns(netns) as ns:
            child = subprocess.Popen(argv, preexec_fn=ns.enter_for_good, **popen)  # type: ignore[call-overload]
        self.processes.append(child)
        return child

    def process(self, cgroup: str, netns: str | None) -> subprocess.Popen[bytes]:
        """``sleep`` in ``netns`` (None: the test's own), in the cgroup ``cgroup`` below the root."""
        directory = self.root / cgroup
        directory.mkdir(parents=True, exist_ok=True)
        if netns is None:
            child = subprocess.Popen(["sleep", "600"])
            self.processes.append(child)
        else:
            child = self.spawn(["sleep", "600"], netns)
        cgroups.join(directory, child.pid)  # after it entered the namespace, as a runtime's container is
        return child

    def close(self) -> None:
        for child in self.processes:
            child.terminate()
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        shutil.rmtree(self.bpffs, ignore_errors=True)
        remove_cgroup_tree(self.root)
        for name in self.namespaces:
            pyroute2_netns.remove(name)


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def node(kernel_prerequisites: None) -> Iterator[Node]:
    made = Node()
    try:
        yield made
    finally:
        made.close()


def inode(fd_or_path: int | str) -> int:
    return (os.fstat(fd_or_path) if isinstance(fd_or_path, int) else os.stat(fd_or_path)).st_ino


@pytest.mark.parametrize("layout", [CGROUPFS, SYSTEMD], ids=["cgroupfs", "systemd"])
def test_the_pods_namespace_is_found_from_a_process_in_its_cgroup(node: Node, layout: str):
    path = node.netns()
    node.process(f"{layout}/c1", path)
    with KubeletCgroups(node.root).open(POD) as found, Netns(path) as expected:
        assert inode(found.fd) == inode(path)
        assert found.cookie() == expected.cookie()


def test_the_namespace_outlives_the_process_it_was_found_by(node: Node):
    path = node.netns()
    child = node.process(f"{CGROUPFS}/c1", path)
    with Netns(path) as pinned:
        cookie = pinned.cookie()
    with KubeletCgroups(node.root).open(POD) as found:
        child.kill()
        child.wait()
        pyroute2_netns.remove(node.namespaces.pop())  # nothing else holds it now
        assert found.cookie() == cookie  # a socket made inside it now is in that same namespace


def test_a_pod_whose_processes_are_in_the_nodes_namespace_is_refused(node: Node):
    node.process(f"{SYSTEMD}/cri-containerd-abc.scope", None)
    with pytest.raises(NotYet, match="in the node's network namespace: a hostNetwork pod is not enrolled"):
        KubeletCgroups(node.root).open(POD)


def test_a_process_in_the_nodes_namespace_is_passed_over_for_one_in_the_pods(node: Node):
    """A runtime's helper joins the container's cgroup before the pod's namespace (runc's first stage)."""
    path = node.netns()
    node.process(CGROUPFS, None)  # in the pod's own cgroup: read first, the walk is top-down
    node.process(f"{CGROUPFS}/c1", path)
    with KubeletCgroups(node.root).open(POD) as found:
        assert inode(found.fd) == inode(path)


def test_a_process_gone_before_its_namespace_is_opened_is_skipped(node: Node, tmp_path: Path):
    """/proc as the agent sees it after the first process exited: only self and the second remain."""
    path = node.netns()
    first = node.process(CGROUPFS, path)
    second = node.process(f"{CGROUPFS}/c1", path)
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "self").symlink_to(f"/proc/{os.getpid()}")
    (proc / str(second.pid)).symlink_to(f"/proc/{second.pid}")
    with KubeletCgroups(node.root, proc).open(POD) as found:
        assert found.path == f"{proc}/{second.pid}/ns/net"
        assert inode(found.fd) == inode(path)
    first.kill()
    first.wait()
    second.kill()
    second.wait()
    with pytest.raises(NotYet, match="has no process yet"):
        KubeletCgroups(node.root).open(POD)


def test_a_pod_not_there_yet_is_pending_until_it_is(node: Node):
    discovery = KubeletCgroups(node.root)
    with pytest.raises(NotYet, match="no kubepods cgroup"):
        discovery.open(POD)
    (node.root / "kubepods").mkdir()
    with pytest.raises(NotYet, match=f"no cgroup for pod UID {UID}"):
        discovery.open(POD)
    path = node.netns()
    node.process(f"{CGROUPFS}/c1", path)
    with discovery.open(POD) as found:
        assert inode(found.fd) == inode(path)


def test_the_enroller_enrolls_a_pod_once_its_cgroup_has_a_process(node: Node):
    """As the agent does on a node: steering on the cgroup root, the pods found below it."""
    path = node.netns(POD.ip)
    ca = TestCa()
    view = View.build(1, MeshModel(workloads={POD.uid: POD}, services={}, nodes={}), ca.bundle)
    steering = Steering(node.root)

    async def main() -> None:
        certs = CertManager(ca.sign)
        proxy = NodeProxy(lambda: view, steering.original_dst, certs)
        enroller = Enroller("n1", KubeletCgroups(node.root), steering, proxy)
        try:
            certs.update([POD], ca.bundle)
            assert await certs.wait_ready(POD.uid, 5)
            await enroller.reconcile(view)
            assert "no kubepods cgroup" in enroller.pending[POD.uid]
            node.process(f"{SYSTEMD}/crio-abc.scope", path)
            await enroller.reconcile(view)
            assert enroller.pending == {}
            with Netns(path) as pinned:
                cookie = pinned.cookie()
            assert enroller.enrolled[POD.uid].pod.cookie == cookie
            assert steering.enrolled.lookup(struct.pack("=Q", cookie)) is not None
        finally:
            await enroller.reconcile(View.build(2, MeshModel(workloads={}, services={}, nodes={})))
            enroller.close()
            proxy.close()
            certs.close()

    try:
        uvloop.run(asyncio.wait_for(main(), 60))
    finally:
        steering.close()


def test_an_agent_without_a_cgroup2_mount_to_default_to_says_so(tmp_path: Path):
    """In a mount namespace of its own with every cgroup2 mount gone, as on a host without one."""
    from nodemesh.tools.sim.cluster import nodemesh_argv

    agent = " ".join(nodemesh_argv("agent", "--node", "n1", "--controller-ca", str(tmp_path / "ca.pem"),
                                   "--token-file", str(tmp_path / "token"), "--pod-netns-from=cgroup"))
    script = f"umount -l $(awk '$3 == \"cgroup2\" {{print $2}}' /proc/self/mounts) && exec {agent}"
    result = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                            capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stderr) == (1, "Error: no cgroup2 filesystem is mounted (none in "
                                                   "/proc/self/mounts): mount the cgroup v2 hierarchy, or "
                                                   "name a cgroup v2 directory with --cgroup\n")


CLUSTER = f"""
apiVersion: v1
kind: Namespace
metadata: {{name: shop, labels: {{nodemesh.io/mesh: enabled}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: web-1, namespace: shop, uid: {UID}}}
spec:
  nodeName: n1
  serviceAccountName: web
  containers: [{{name: main, command: [sleep, infinity]}}]
"""


def test_an_agent_finding_pods_by_cgroup_enrolls_a_pod_once_it_runs(node: Node, tmp_path: Path):
    """The real controller and agent in a node's namespace; the pod's cgroup is below the agent's
    --cgroup and appears only after the agent learnt of the pod, as when the kubelet starts it."""
    from nodemesh.agent.ports import READINESS_PORT
    from nodemesh.controller.ca.store import root_path
    from nodemesh.controller.nodeauth.tokens import token_hash
    from nodemesh.errors import UserError
    from nodemesh.tools.admin_client import fetch
    from nodemesh.tools.sim.cluster import nodemesh_argv

    here = node.netns("10.206.1.1")
    state, cluster, tokens, token_file = (tmp_path / n for n in ("state", "cluster.yaml", "tokens.json", "token"))
    cluster.write_text(CLUSTER)
    token = secrets.token_urlsafe(32)
    token_file.write_text(token)
    token_file.chmod(0o600)
    tokens.write_text(json.dumps({"n1": token_hash(token)}))
    with open(tmp_path / "log", "wb") as log:
        node.spawn(nodemesh_argv("controller", "--file", str(cluster), "--state-dir", str(state),
                                 "--listen", "127.0.0.1:15012", "--metrics-listen", "127.0.0.1:15014",
                                 "--node-tokens", str(tokens)), here, stdout=log, stderr=subprocess.STDOUT)
        eventually(root_path(state).exists, timeout=30, what="the controller's CA root")
        node.spawn(nodemesh_argv("agent", "--node", "n1", "--controller", "127.0.0.1:15012",
                                 "--controller-ca", str(root_path(state)), "--token-file", str(token_file),
                                 "--cgroup", str(node.root), "--pod-netns-from=cgroup",
                                 "--bpffs-dir", str(node.bpffs)), here, stdout=log, stderr=subprocess.STDOUT)

    def dump() -> dict:
        try:
            return fetch(here, "/config_dump")
        except UserError as e:  # not listening yet
            raise AssertionError(f"{e}; logs:\n{(tmp_path / 'log').read_text()}") from None

    def pending() -> str:
        d = dump()
        assert d["workloads"] and UID in d["pending"], d
        return d["pending"][UID]

    assert "no kubepods cgroup" in eventually(pending, timeout=60)
    pod_ns = node.netns(dump()["workloads"][0]["ip"])
    node.process(f"{CGROUPFS}/main", pod_ns)

    def enrolled() -> list[dict]:
        d = dump()
        assert d["enrolled"], d["pending"]
        return d["enrolled"]

    [entry] = eventually(enrolled, timeout=30)
    with Netns(pod_ns) as ns:
        assert entry["netns_cookie"] == ns.cookie()
    assert eventually(lambda: fetch(here, "/healthz/ready", port=READINESS_PORT)["ready"], timeout=30)
