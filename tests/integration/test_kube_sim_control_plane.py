"""The sim's control plane (tools/kube/sim.py) started as the sim starts its processes: its specs
become ``ProcessRecord``s, ``spawn`` starts them in a namespace holding 172.30.0.254 (like the
sim's controller namespace), the sim's own probes wait for them, and the host reaches the API
server through the forward with the admin kubeconfig."""

from __future__ import annotations

import subprocess
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

import pytest

from eventually import eventually
from nodemesh import cgroups
from nodemesh.tools.kube import sim
from nodemesh.tools.kube.binaries import KUBECTL
from nodemesh.tools.kube.controlplane import free_port
from nodemesh.tools.sim.cleanup import remove_cgroup_tree
from nodemesh.tools.sim.process import process_env, spawn, terminate
from nodemesh.tools.sim.ready import wait_ready
from nodemesh.tools.sim.state import ProcessRecord

pytestmark = [pytest.mark.kernel, pytest.mark.slow]


@pytest.fixture
def controller_netns() -> Iterator[str]:
    """A namespace like the sim's controller one: 172.30.0.254/24 on an interface that is up."""
    name = f"kcp-{uuid.uuid4().hex[:6]}-cp"
    try:
        for args in (["netns", "add", name],
                     ["-n", name, "link", "add", "cp0", "type", "veth", "peer", "name", "cp1"],
                     ["-n", name, "addr", "add", "172.30.0.254/24", "dev", "cp0"],
                     ["-n", name, "link", "set", "cp0", "up"], ["-n", name, "link", "set", "cp1", "up"],
                     ["-n", name, "link", "set", "lo", "up"]):
            subprocess.run(["ip", *args], check=True, capture_output=True)
        yield f"/run/netns/{name}"
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


@pytest.fixture
def cgroup() -> Iterator[Path]:
    """A cgroup of this test's processes (the sim puts each component in one of its own)."""
    root = cgroups.unified_root()
    assert root is not None
    path = root / f"kcp-test-{uuid.uuid4().hex[:6]}"
    path.mkdir()
    yield path
    remove_cgroup_tree(path)  # waits for the components' last processes to leave it


def test_the_sims_control_plane_serves_the_host_through_the_forward(controller_netns: str, cgroup: Path,
                                                                    tmp_path: Path) -> None:
    host_port = free_port()
    kubeconfig = tmp_path / "kubeconfig"
    layout = sim.prepare_sim(tmp_path / "kube", kubeconfig, host_port)
    records: dict[str, ProcessRecord] = {}

    def log(component: str) -> Path:
        return tmp_path / "logs" / f"{component.replace('/', '.')}.log"

    def start(specs: dict[str, sim.ProcessSpec]) -> None:
        started = {name: ProcessRecord(**{**asdict(spec), "env": process_env(spec.env)}, cgroup=str(cgroup))
                   for name, spec in specs.items()}
        records.update(started)
        for record in started.values():
            spawn(record)
        wait_ready(started, timeout=120)

    def kubectl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(KUBECTL), f"--kubeconfig={kubeconfig}", *args], capture_output=True, text=True)

    try:
        start(sim.apiserver_specs(layout, controller_netns, host_port, log))
        sim.wait_apiserver_ready(layout, host_port)
        start(sim.controller_specs(layout, controller_netns, log))
        # the `kubernetes` Service's endpoint is the address the sim's nodes reach
        eventually(lambda: kubectl("get", "endpointslice", "-n", "default", "kubernetes", "-o",
                                   "jsonpath={.endpoints[0].addresses[0]}:{.ports[0].port}").stdout
                   == "172.30.0.254:6443", 60, interval=0.5, what="the kubernetes Service's EndpointSlice")
        # made by the controller manager, which reached the API server at 172.30.0.254:6443
        eventually(lambda: kubectl("get", "serviceaccount", "default", "-n", "default").returncode == 0, 60,
                   interval=0.5, what="the default ServiceAccount")
    finally:
        terminate([r.pid for r in reversed(records.values()) if r.pid is not None])
