"""The node metrics of the BPF maps and enrolled pods, on the real kernel.

The real steering programs (on an empty cgroup of the test's own), the real plaintext capture
(pinned under a bpffs directory of the test's own) and the real enroller enroll one pod, in a
network namespace made for the test, as the agent does; the steering maps then get thousands
of destinations and original destinations, as on a busy node. The scrape must count each map
as the kernel holds it, with its capacity.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from contextlib import ExitStack
from pathlib import Path
from typing import Iterator

import pytest
import uvloop

from hbone_pki import TestCa, spiffe  # tests/: the test CA
from node_metrics import Scrape, idle_config  # tests/: a scrape as Prometheus reads it

from nodemesh.agent.ebpf.capture import PlaintextCapture  # noqa: E402
from nodemesh.agent.ebpf.steering import Steering  # noqa: E402
from nodemesh.agent.identity.manager import CertManager  # noqa: E402
from nodemesh.agent.inpod.discovery import PathTemplate  # noqa: E402
from nodemesh.agent.inpod.enroller import Enroller  # noqa: E402
from nodemesh.agent.proxy.node import NodeProxy  # noqa: E402
from nodemesh.agent.state.store import View  # noqa: E402
from nodemesh.agent.telemetry.looplag import LoopLag  # noqa: E402
from nodemesh.agent.telemetry.node import NodeCollector, NodeParts  # noqa: E402
from nodemesh.cgroups import unified_root  # noqa: E402
from nodemesh.model import MeshModel, Workload  # noqa: E402

pytestmark = pytest.mark.kernel

PREFIX = f"nmtest-met{os.getpid()}"
POD = Workload(uid="uid-pod", name="pod", namespace="ns", service_account="default", node="n1",
               ip="10.205.0.2", meshed=True, identity=spiffe("ns"))
DESTINATIONS = 3000


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@pytest.fixture
def netns_template(kernel_prerequisites: None) -> Iterator[str]:
    """The pod's network namespace (the pod IP on its loopback), as the enroller's template."""
    name = f"{PREFIX}-{POD.name}"
    ip("netns", "add", name)
    try:
        ip("-n", name, "link", "set", "lo", "up")
        ip("-n", name, "addr", "add", f"{POD.ip}/32", "dev", "lo")
        yield f"/run/netns/{PREFIX}-{{name}}"
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


@pytest.fixture
def programs(kernel_prerequisites: None) -> Iterator[tuple[Steering, PlaintextCapture]]:
    """Steering on a cgroup and capture pinned in a bpffs directory, both the test's own and
    removed after it, whatever happened."""
    root = unified_root()
    assert root is not None
    cgroup, pins = root / PREFIX, Path(f"/sys/fs/bpf/{PREFIX}")
    with ExitStack() as stack:
        cgroup.mkdir()
        stack.callback(cgroup.rmdir)
        stack.callback(shutil.rmtree, pins, ignore_errors=True)
        steering = Steering(cgroup)
        stack.callback(steering.close)
        capture = PlaintextCapture(pins)
        stack.callback(capture.close)
        yield steering, capture


def test_each_map_is_counted_as_the_kernel_holds_it(netns_template: str,
                                                    programs: tuple[Steering, PlaintextCapture]) -> None:
    steering, capture = programs
    ca = TestCa()
    view = View.build(1, MeshModel(workloads={POD.uid: POD}, services={}, nodes={}), ca.bundle)

    async def main() -> None:
        certs = CertManager(ca.sign)
        proxy = NodeProxy(lambda: view, steering.original_dst, certs)
        enroller = Enroller("n1", PathTemplate(netns_template), steering, proxy, capture)
        try:
            certs.update([POD], ca.bundle)
            assert await certs.wait_ready(POD.uid, 5)
            await enroller.reconcile(view)
            assert enroller.pending == {}
            steering.set_destinations({f"10.99.{i >> 8}.{i & 255}": "pod" for i in range(DESTINATIONS)})
            originals = steering.maps()["orig_by_tuple"]
            for i in range(DESTINATIONS):  # as sockops writes them: a 4-tuple, an address
                originals.update(i.to_bytes(originals.key_size, "little"), bytes(originals.value_size))
            parts = NodeParts(proxy, certs, idle_config("n1"), enroller, steering, capture, lambda: True)
            s = Scrape(NodeCollector(parts, LoopLag()))
            by_map = {name: {labels["map"]: s.value(name, **labels) for labels in s.labels(name)}
                      for name in ("nodemesh_bpf_map_entries", "nodemesh_bpf_map_capacity")}
            assert by_map == {
                "nodemesh_bpf_map_entries": {"enrolled_pods": 1, "mesh_destinations": DESTINATIONS,
                                             "orig_by_tuple": DESTINATIONS, "plaintext_listeners": 1,
                                             "pod_modes": 1},
                "nodemesh_bpf_map_capacity": {"enrolled_pods": 4096, "mesh_destinations": 65536,
                                              "orig_by_tuple": 65536, "plaintext_listeners": 4096,
                                              "pod_modes": 4096},
            }
            assert (s.value("nodemesh_enrolled_pods"), s.value("nodemesh_pending_pods")) == (1, 0)
        finally:
            await enroller.reconcile(View.build(2, MeshModel(workloads={}, services={}, nodes={})))  # unpins
            enroller.close()
            proxy.close()
            certs.close()

    uvloop.run(asyncio.wait_for(main(), 60))
