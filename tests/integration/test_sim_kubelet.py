"""The sim kubelet against a real API server: a node's pod runs, reports Ready, gets a token, goes.

One sim node's netns (the file-mode topology with no pods), a kubelet for it as
``system:node:<node>`` (the Node authorizer and NodeRestriction apply), and a Pod bound to
the node running the example server with a readiness probe: it must become Running and Ready
with an IP of the node's podCIDR, its projected service-account token must pass a TokenReview
bound to the node, and deleting it must take its process and netns with it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from eventually import eventually
from kubeapi import private_control_plane  # noqa: F401 (this module's control_plane: it restarts the API server)
from kubeapi import create, kubectl_json, unique_name
from pyroute2 import netns

from nodemesh.tools.kube.controlplane import LocalControlPlane
from nodemesh.tools.sim import topology
from nodemesh.tools.sim.cleanup import down, leftovers
from nodemesh.tools.sim.names import SimNames
from nodemesh.tools.sim.plan import ClusterPlan, NodePlan
from nodemesh.tools.sim.process import start_time


pytestmark = [pytest.mark.kernel, pytest.mark.slow]

WAIT = 60.0
POD_CIDR = "10.10.1.0/24"


class Kubelet:
    """The sim kubelet of one node, as a child process (in the host's netns: it reaches the
    test's API server on 127.0.0.1 and works on the node's namespaces by name)."""

    def __init__(self, names: SimNames, node: str, kubeconfig: Path) -> None:
        self.argv = [sys.executable, "-m", "nodemesh.tools.sim.kubelet", "--sim", names.sim, "--node", node,
                     "--node-ip", "172.30.0.1", "--pod-cidr", POD_CIDR, "--zone", "zone-1",
                     "--kubeconfig", str(kubeconfig)]
        self.log = names.component_log(f"kubelet/{node}")
        self.start()

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        self.process.terminate()
        assert self.process.wait(30) == 0, Path(self.log).read_text()[-3000:]

    def poll(self) -> int | None:
        return self.process.poll()


@pytest.fixture
def sim_node(control_plane: LocalControlPlane):
    """A sim (``klit``) with one node and its kubelet; everything removed afterwards."""
    names = SimNames("klit")
    down(names)
    node = unique_name("kl-node")
    names.logs_dir.mkdir(parents=True)
    topology.build(ClusterPlan(nodes=(NodePlan(node, "172.30.0.1", POD_CIDR),), pods=()), names)
    kubelet = Kubelet(names, node, control_plane.node_kubeconfig(node))
    try:
        yield names, node, kubelet
    finally:
        kubelet.stop()
        print(Path(names.component_log(f"kubelet/{node}")).read_text()[-3000:])
        down(names)
        control_plane.kubectl("delete", "node", node, "--wait=false")
        assert leftovers(names) == []


def test_a_pod_runs_reports_ready_gets_a_token_and_goes(control_plane, kube_namespace, sim_node):
    names, node, kubelet = sim_node
    eventually(lambda: kubectl_json(control_plane, "get", "node", node)["status"].get("conditions"),
               WAIT, interval=0.2, what="the Node registered")
    labels = kubectl_json(control_plane, "get", "node", node)["metadata"]["labels"]
    assert labels["topology.kubernetes.io/zone"] == "zone-1"
    began = time.monotonic()
    create(control_plane, {"apiVersion": "v1", "kind": "Pod",
                           "metadata": {"name": "web", "namespace": kube_namespace},
                           "spec": {"nodeName": node, "containers": [{
                               "name": "web", "image": "nodemesh/app",
                               "command": ["python3", "-m", "nodemesh.tools.apps.server", "--port", "8080"],
                               "env": [{"name": "POD_NAME",
                                        "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                               "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}]}})

    def ready():
        pod = kubectl_json(control_plane, "get", "pod", "web", "-n", kube_namespace)
        status = pod["status"]
        conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
        assert status.get("phase") == "Running" and conditions.get("Ready") == "True", status
        return pod

    pod = eventually(ready, WAIT, interval=0.2, what="the pod Running and Ready")
    print(f"pod Ready {time.monotonic() - began:.1f} s after it was created")
    assert pod["status"]["podIP"].startswith("10.10.1.")
    assert pod["status"]["hostIP"] == "172.30.0.1"
    uid = pod["metadata"]["uid"]
    pid = int(pod["status"]["containerStatuses"][0]["containerID"].removeprefix("sim://"))
    cgroup = Path(f"/proc/{pid}/cgroup").read_text()
    assert f"/kubepods/besteffort/pod{uid}/web" in cgroup
    assert names.pod_netns(kube_namespace, "web") in netns.listnetns()

    volumes = names.kubelet_dir(node) / "pods" / uid / "volumes"
    [access] = [v for v in volumes.iterdir() if v.name.startswith("kube-api-access-")]
    assert (access / "namespace").read_text() == kube_namespace
    assert "BEGIN CERTIFICATE" in (access / "ca.crt").read_text()
    review = kubectl_json(control_plane, "create", "-f", "-", input=json.dumps({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
        "spec": {"token": (access / "token").read_text()}}))
    assert review["status"]["authenticated"], review
    assert review["status"]["user"]["username"] == f"system:serviceaccount:{kube_namespace}:default"
    assert review["status"]["user"]["extra"]["authentication.kubernetes.io/node-name"] == [node]

    started = start_time(pid)
    assert control_plane.kubectl("delete", "pod", "web", "-n", kube_namespace, "--wait=false").returncode == 0
    eventually(lambda: control_plane.kubectl("get", "pod", "web", "-n", kube_namespace).returncode != 0,
               WAIT, interval=0.2, what="the pod deleted by the kubelet's final delete")
    assert start_time(pid) != started  # the process is gone
    assert names.pod_netns(kube_namespace, "web") not in netns.listnetns()
    assert kubelet.poll() is None


AGENT_LIKE = """
set -e
cat /proc/self/cgroup
grep -w cgroup2 /proc/self/mounts
ls /sys/fs/cgroup/unified
ls /sys/fs/bpf
cat /var/run/nodemesh/ca/root-cert.pem; echo
stat -c 'token %a' /var/run/secrets/nodemesh/token
echo "node $NODE_NAME"
exec sleep infinity
"""


def test_a_host_network_pod_sees_the_node_as_its_host(control_plane, kube_namespace, sim_node):
    """The agent DaemonSet's shape: hostNetwork, the node's cgroup and bpffs as the host's, a
    ConfigMap that does not exist yet (the pod waits for it) and a token for audience nodemesh."""
    names, node, _ = sim_node
    (names.node_bpf_dir(node) / "marker").mkdir(parents=True)
    create(control_plane, {"apiVersion": "v1", "kind": "Pod",
                           "metadata": {"name": "agent", "namespace": kube_namespace},
                           "spec": {"nodeName": node, "hostNetwork": True, "containers": [{
                               "name": "agent", "image": "nodemesh/agent",
                               "command": ["sh", "-c", AGENT_LIKE],
                               "env": [{"name": "NODE_NAME",
                                        "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                               "volumeMounts": [
                                   {"name": "bpf", "mountPath": "/sys/fs/bpf"},
                                   {"name": "cgroup", "mountPath": "/sys/fs/cgroup"},
                                   {"name": "ca", "mountPath": "/var/run/nodemesh/ca"},
                                   {"name": "token", "mountPath": "/var/run/secrets/nodemesh"}]}],
                               "volumes": [
                                   {"name": "bpf", "hostPath": {"path": "/sys/fs/bpf"}},
                                   {"name": "cgroup", "hostPath": {"path": "/sys/fs/cgroup"}},
                                   {"name": "ca", "configMap": {"name": "nodemesh-ca-root"}},
                                   {"name": "token", "projected": {"defaultMode": 0o400, "sources": [
                                       {"serviceAccountToken": {"audience": "nodemesh",
                                                                "expirationSeconds": 3600,
                                                                "path": "token"}}]}}]}})

    def phase():
        return kubectl_json(control_plane, "get", "pod", "agent", "-n", kube_namespace)["status"].get("phase")

    def waiting():  # the kubelet's own report (a new pod is Pending before any kubelet saw it)
        status = kubectl_json(control_plane, "get", "pod", "agent", "-n", kube_namespace)["status"]
        states = [c["state"] for c in status.get("containerStatuses", [])]
        assert status.get("hostIP") == "172.30.0.1" and states == [
            {"waiting": {"reason": "ContainerCreating"}}], status

    eventually(waiting, WAIT, interval=0.2, what="the kubelet reporting the pod waiting")
    log = names.pod_log(kube_namespace, "agent", "agent")
    assert phase() == "Pending" and not log.exists()  # waiting for its ConfigMap, nothing started
    create(control_plane, {"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": "nodemesh-ca-root", "namespace": kube_namespace},
                           "data": {"root-cert.pem": "ROOT"}})
    eventually(lambda: phase() == "Running", WAIT, interval=0.2, what="the pod Running once its ConfigMap exists")
    text = eventually(lambda: log.exists() and f"node {node}" in log.read_text() and log.read_text(),
                      WAIT, interval=0.2, what="the container's report")
    output = text.split("\n", 1)[1]  # below the kubelet's own "starting: ..." line
    uid = kubectl_json(control_plane, "get", "pod", "agent", "-n", kube_namespace)["metadata"]["uid"]
    assert f"0::/kubepods/besteffort/pod{uid}/agent\n" in output  # a cgroup namespace rooted at the node
    assert "\nkubepods\n" in output and f"nodemesh-{names.sim}" not in output  # cgroup2 is the node's
    assert "\nmarker\n" in output  # /sys/fs/bpf is the node's own directory
    assert "ROOT" in output and "token 400" in output
    pod = kubectl_json(control_plane, "get", "pod", "agent", "-n", kube_namespace)
    assert pod["status"]["podIP"] == "172.30.0.1"


def sleeper(name: str, namespace: str, node: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "main", "image": "x", "command": ["sleep", "infinity"]}]}}


def test_the_kubelet_relists_after_its_watch_is_gone(control_plane, kube_namespace, sim_node):
    """A compacted etcd and a restarted API server (410 Gone for the old resourceVersion): pods
    made afterwards still run, and the Node stays Ready."""
    names, node, kubelet = sim_node

    def running(name):
        pod = kubectl_json(control_plane, "get", "pod", name, "-n", kube_namespace)
        return pod["status"].get("phase") == "Running"

    create(control_plane, sleeper("before", kube_namespace, node))
    eventually(lambda: running("before"), WAIT, interval=0.2, what="the first pod Running")
    control_plane.compact_etcd()
    create(control_plane, sleeper("after", kube_namespace, node))
    eventually(lambda: running("after"), WAIT, interval=0.2, what="a pod made after the compaction Running")
    ready = [c for c in kubectl_json(control_plane, "get", "node", node)["status"]["conditions"]
             if c["type"] == "Ready"]
    assert ready[0]["status"] == "True"
    assert kubelet.poll() is None


def test_a_restarted_kubelet_gives_its_pods_their_addresses_again(control_plane, kube_namespace, sim_node):
    """Stopping the kubelet stops its pods' processes; started again it runs them with the
    addresses they had (kubelet/<node>/pod-ips.json), in the netns they had."""
    names, node, kubelet = sim_node
    create(control_plane, sleeper("first", kube_namespace, node))
    create(control_plane, sleeper("second", kube_namespace, node))

    def running():
        pods = kubectl_json(control_plane, "get", "pods", "-n", kube_namespace)["items"]
        if len(pods) == 2 and all(p["status"].get("phase") == "Running" for p in pods):
            return {p["metadata"]["name"]: (p["status"]["podIP"], p["status"]["containerStatuses"][0]["containerID"])
                    for p in pods}
        return False  # (None would count as an assertion check that held)

    before = eventually(running, WAIT, interval=0.2, what="both pods Running")
    kubelet.stop()
    for _, container in before.values():
        assert start_time(int(container.removeprefix("sim://"))) is None  # stopped with the kubelet
    kubelet.start()
    after = eventually(lambda: (r := running()) and r != before and all(
        r[name][1] != before[name][1] for name in r) and r, WAIT, interval=0.2,
        what="both pods Running again, with new processes")
    assert {name: ip for name, (ip, _) in after.items()} == {name: ip for name, (ip, _) in before.items()}
    assert sorted(ip for ip, _ in after.values()) == ["10.10.1.10", "10.10.1.11"]
