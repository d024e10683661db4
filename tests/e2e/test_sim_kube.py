"""`nodemesh sim up --kube`: a real control plane drives three sim nodes, as a user drives it.

The real scheduler places a Deployment's pods on the sim nodes, the sim kubelets run them and
report them Ready, the real controller-manager makes the EndpointSlice, an unmeshed client pod
reaches the Service's ClusterIP through kube-proxy, scaling to 4 gives 4 endpoints, and
`sim down` leaves nothing behind.
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any, Iterator

import pytest
from eventually import eventually
from simcluster import nodemesh

from nodemesh.tools.kube.binaries import KUBECTL
from nodemesh.tools.sim.kubectl import Kubectl
from nodemesh.tools.kubedemo import APP  # the demo's application: a Deployment catalog and its Service
from nodemesh.tools.sim.cleanup import leftovers
from nodemesh.tools.sim.names import SimNames

pytestmark = [pytest.mark.e2e, pytest.mark.kernel, pytest.mark.slow]

SIM = "klkube"
WAIT = 90.0


IN_CLUSTER = """
import asyncio
from kubernetes_asyncio import client
from nodemesh.controller.apiclient import connect
async def main():
    async with await connect(None) as api:
        print("version", (await client.VersionApi(api).get_code()).git_version)
asyncio.run(main())
"""


def one_shot(name: str, *command: str, **spec: Any) -> str:
    """A Pod (as JSON, which kubectl applies) that runs ``command`` once in shop."""
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "shop"},
                       "spec": {"restartPolicy": "Never", **spec, "containers": [
                           {"name": "main", "image": "nodemesh/app", "command": list(command)}]}})


def finished(name: str) -> str:
    """The log of one-shot pod ``name`` once it is done; fails the test with it unless it succeeded."""
    phase = eventually(lambda: kubectl("get", "pod", name, "-n", "shop", "-o", "json")["status"].get("phase")
                       in ("Succeeded", "Failed") and kubectl("get", "pod", name, "-n", "shop", "-o",
                                                              "json")["status"]["phase"],
                       WAIT, interval=0.2, what=f"pod {name} to finish")
    output = SimNames(SIM).pod_log("shop", name, "main").read_text()
    assert phase == "Succeeded", output
    return output


def sim(*args: str) -> subprocess.CompletedProcess[str]:
    return nodemesh("sim", *args, "--name", SIM, timeout=300)


def kubectl(*args: str, input: str | None = None) -> Any:
    """kubectl as the sim's user (tools/sim/kubectl.py), its JSON decoded when asked for."""
    out = Kubectl(SimNames(SIM), timeout=60).run(*args, input=input)
    return json.loads(out) if "json" in args else out


@pytest.fixture
def kube_sim() -> Iterator[SimNames]:
    names = SimNames(SIM)
    nodemesh("sim", "down", "--name", SIM, check=False)  # what an earlier run left
    began = time.monotonic()
    up = sim("up", "--kube", "--kube-port", "0")
    print(f"sim up --kube: {time.monotonic() - began:.1f} s")
    assert f"export KUBECONFIG={names.admin_kubeconfig}" in up.stdout
    try:
        yield names
    finally:  # what the test saw, shown when it failed
        print(subprocess.run([str(KUBECTL), f"--kubeconfig={names.admin_kubeconfig}", "get", "pods", "-A",
                              "-o", "wide"], capture_output=True, text=True).stdout)
        for log in sorted(names.logs_dir.glob("kubelet.*.log")):
            print(log.name, "".join(log.read_text().splitlines(keepends=True)[-15:]))
        sim("down")
        assert leftovers(names) == []


def ready_endpoints() -> list[str]:
    slices = kubectl("get", "endpointslices", "-n", "shop", "-l", "kubernetes.io/service-name=catalog",
                     "-o", "json")["items"]
    return sorted(e["addresses"][0] for s in slices for e in s.get("endpoints") or []
                  if e.get("conditions", {}).get("ready"))


def proxied_everywhere(names: SimNames, endpoints: list[str]) -> bool:
    """Whether every node's kube-proxy has programmed DNAT to each of ``endpoints``: a ready
    EndpointSlice is not yet a synced proxy (kube-proxy syncs at most once a second)."""
    for node in ("node-a", "node-b", "node-c"):
        rules = subprocess.run(["ip", "netns", "exec", names.node_netns(node), "iptables-save", "-t", "nat"],
                               capture_output=True, text=True, check=True).stdout
        if not all(f"--to-destination {ip}:8080" in rules for ip in endpoints):
            return False
    return True


def running_pods(app: str) -> list[dict]:
    pods = kubectl("get", "pods", "-n", "shop", "-l", f"app={app}", "-o", "json")["items"]
    return [p for p in pods if p["status"].get("phase") == "Running"
            and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"]["conditions"])]


def test_a_deployment_runs_on_sim_nodes_and_its_service_answers(kube_sim: SimNames) -> None:
    nodes = kubectl("get", "nodes", "-o", "json")["items"]
    assert {n["metadata"]["name"]: n["metadata"]["labels"]["topology.kubernetes.io/zone"] for n in nodes} == {
        "node-a": "zone-1", "node-b": "zone-1", "node-c": "zone-2"}
    status = json.loads(sim("status", "-o", "json").stdout)
    assert all(p["alive"] for p in status["processes"].values()), status["processes"]

    began = time.monotonic()
    kubectl("apply", "-f", "-", input=APP)
    pods = eventually(lambda: len(running_pods("catalog")) == 2 and running_pods("catalog"), WAIT,
                      interval=0.2, what="2 catalog pods Running and Ready")
    print(f"2 pods Ready {time.monotonic() - began:.1f} s after kubectl apply")
    assert all(p["spec"]["nodeName"] in ("node-a", "node-b", "node-c") for p in pods)
    ips = sorted(p["status"]["podIP"] for p in pods)
    eventually(lambda: ready_endpoints() == ips, WAIT, interval=0.2, what="an EndpointSlice of the 2 pods")

    eventually(lambda: proxied_everywhere(kube_sim, ips), WAIT, interval=0.2,
               what="kube-proxy's rules for the 2 endpoints on every node")
    client = ("python3", "-m", "nodemesh.tools.apps.client", "$(CATALOG_SERVICE_HOST):$(CATALOG_SERVICE_PORT)",
              "--count", "20", "-o", "json")
    kubectl("apply", "-f", "-", input=one_shot("client", *client))
    # a host-network process too (as the agent reaching the controller's Service)
    kubectl("apply", "-f", "-", input=one_shot("hostclient", *client, hostNetwork=True))
    for name in ("client", "hostclient"):
        tally = json.loads(finished(name).splitlines()[-1])
        assert tally["ok"] == 20 and tally["failed"] == 0, tally
        assert set(tally["servers"]) <= {p["metadata"]["name"] for p in pods}

    # the injected kube-api-access volume and KUBERNETES_SERVICE_HOST: an in-cluster client works
    kubectl("apply", "-f", "-", input=one_shot("incluster", "python3", "-c", IN_CLUSTER))
    output = finished("incluster")
    assert "version v1.36.3" in output, output

    began = time.monotonic()
    kubectl("scale", "-n", "shop", "deployment/catalog", "--replicas=4")
    eventually(lambda: len(ready_endpoints()) == 4, WAIT, interval=0.2, what="4 ready endpoints")
    print(f"scaled to 4 endpoints in {time.monotonic() - began:.1f} s")
    kubectl("scale", "-n", "shop", "deployment/catalog", "--replicas=8")
    eventually(lambda: len(ready_endpoints()) == 8, WAIT, interval=0.2, what="8 ready endpoints")
    status = json.loads(sim("status", "-o", "json").stdout)
    assert all(p["alive"] for p in status["processes"].values()), status["processes"]  # kubelets too
