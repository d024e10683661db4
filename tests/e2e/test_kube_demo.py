"""`nodemesh demo --kube`, run as a user runs it: the mesh installed from daemonset/ on a real
control plane, an application meshed by a label, scaled, and nothing left behind."""

import re

import pytest

from simcluster import nodemesh
from nodemesh.tools.sim.cleanup import leftovers
from nodemesh.tools.sim.names import SimNames

pytestmark = [pytest.mark.e2e, pytest.mark.kernel, pytest.mark.slow]


def test_demo_kube_installs_the_mesh_from_the_manifests_and_meshes_by_label() -> None:
    names = SimNames("kdemotest")
    try:
        out = nodemesh("demo", "--kube", "--name", names.sim, timeout=600).stdout
    finally:
        nodemesh("sim", "down", "--name", names.sim)
    assert leftovers(names) == []
    # the manifests' pods, run by the sim kubelets: two controller replicas, an agent per node
    assert len(re.findall(r"nodemesh-agent-\S+ +on node-[abc]  172\.30\.0\.\d", out)) == 3, out
    assert len(re.findall(r"nodemesh-controller-\S+ +on node-[abc]  10\.10\.\d\.\d+", out)) == 2, out
    # before the label nothing is relayed; after it, every connection of the new client is
    assert "10 answered, through kube-proxy; the agents relayed 0" in out, out
    assert len(re.findall(r"catalog-\S+ on node-[abc]: enrolled by its node's agent", out)) == 2, out
    assert re.search(r"20 of 20 answered by .*\n.*its agent steered 20 of them", out), out
    # scaled to 4, round robin over all 4: 10 each of 40
    scaled = re.search(r"all 4 answering .*: (.*)", out)
    assert scaled and re.findall(r"\((\d+)\)", scaled[1]) == ["10"] * 4, out
    assert out.rstrip().endswith("done: nothing left behind."), out
