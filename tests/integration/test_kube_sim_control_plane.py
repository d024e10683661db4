"""The sim's control plane (tools/kube/sim.py) as the sim starts it: every component in one
network namespace holding 172.30.0.254, the host reaching the API server through the forward at
127.0.0.1:<port>, kubectl on the host working with the admin kubeconfig."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from eventually import eventually
from nodemesh.tools.kube import sim
from nodemesh.tools.kube.binaries import KUBECTL, KubeError
from nodemesh.tools.kube.children import Child
from nodemesh.tools.kube.controlplane import free_port

pytestmark = [pytest.mark.kernel, pytest.mark.slow]


@pytest.fixture
def controller_netns() -> Iterator[str]:
    """A namespace like the sim's controller one: 172.30.0.254/24 on an interface that is up."""
    name = f"kcp-{uuid.uuid4().hex[:6]}-cp"
    try:
        for args in (["netns", "add", name], ["-n", name, "link", "add", "cp0", "type", "veth", "peer", "name", "cp1"],
                     ["-n", name, "addr", "add", "172.30.0.254/24", "dev", "cp0"],
                     ["-n", name, "link", "set", "cp0", "up"], ["-n", name, "link", "set", "cp1", "up"],
                     ["-n", name, "link", "set", "lo", "up"]):
            subprocess.run(["ip", *args], check=True, capture_output=True)
        yield f"/run/netns/{name}"
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def test_the_sims_control_plane_serves_the_host_through_the_forward(controller_netns: str, tmp_path: Path) -> None:
    host_port = free_port()
    kubeconfig = tmp_path / "kubeconfig"
    layout = sim.prepare_sim(tmp_path / "kube", kubeconfig, host_port)
    children: list[Child] = []

    def log(component: str) -> Path:
        return tmp_path / "logs" / f"{component}.log"

    def start(specs: dict[str, sim.ProcessSpec]) -> None:
        for name, spec in specs.items():
            # what the sim's spawn does (setns before exec), done by ip netns exec here
            enter = [] if spec.netns == sim.CALLER_NETNS else ["ip", "netns", "exec", Path(spec.netns).name]
            children.append(Child(name, [*enter, *spec.argv], Path(spec.log)))

    try:
        start(sim.apiserver_specs(layout, controller_netns, host_port, log))
        sim.wait_apiserver_ready(layout, host_port)
        start(sim.controller_specs(layout, controller_netns, log))

        def kubectl(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([str(KUBECTL), f"--kubeconfig={kubeconfig}", *args], capture_output=True, text=True)

        # the `kubernetes` Service's endpoint is the address the sim's nodes reach
        eventually(lambda: kubectl("get", "endpointslice", "-n", "default", "kubernetes", "-o",
                                   "jsonpath={.endpoints[0].addresses[0]}:{.ports[0].port}").stdout
                   == "172.30.0.254:6443", 60, interval=0.5, what="the kubernetes Service's EndpointSlice")
        # made by the controller manager, which reached the API server at 172.30.0.254:6443
        eventually(lambda: kubectl("get", "serviceaccount", "default", "-n", "default").returncode == 0, 60,
                   interval=0.5, what="the default ServiceAccount")
    except (AssertionError, KubeError) as e:
        raise AssertionError(f"{e}\n" + "\n".join(f"--- {c.name}:\n{c.tail(10)}" for c in children)) from None
    finally:
        for child in reversed(children):
            child.stop()
