"""QoS classes and the kubelet's cgroupfs layout of pods, which the agent's discovery reads."""

from pathlib import Path

import pytest

from nodemesh.tools.sim.kubelet.qos import BEST_EFFORT, BURSTABLE, GUARANTEED, pod_cgroup, qos_class


def spec(*resources):
    return {"containers": [{"name": f"c{i}", "resources": r} for i, r in enumerate(resources)]}


BOTH = {"cpu": "100m", "memory": "64Mi"}


@pytest.mark.parametrize("pod,expected", [
    (spec({}), BEST_EFFORT),
    (spec({}, {}), BEST_EFFORT),
    (spec({"requests": {"cpu": "100m"}}), BURSTABLE),
    (spec({"limits": BOTH}), GUARANTEED),  # requests default to limits
    (spec({"limits": BOTH, "requests": BOTH}), GUARANTEED),
    (spec({"limits": BOTH, "requests": {"cpu": "50m", "memory": "64Mi"}}), BURSTABLE),
    (spec({"limits": {"cpu": "100m"}}), BURSTABLE),  # no memory limit
    (spec({"limits": BOTH}, {}), BURSTABLE),  # one container without
    (spec({"limits": {"nvidia.com/gpu": "1"}}), BEST_EFFORT),  # only cpu and memory count
])
def test_qos_class(pod, expected):
    assert qos_class(pod) == expected


def test_pod_cgroups_follow_the_cgroupfs_driver():
    node = Path("/sys/fs/cgroup/nodemesh-s/node-a")
    assert pod_cgroup(node, spec({}), "u1") == node / "kubepods/besteffort/podu1"
    assert pod_cgroup(node, spec({"requests": BOTH}), "u1") == node / "kubepods/burstable/podu1"
    assert pod_cgroup(node, spec({"limits": BOTH}), "u1") == node / "kubepods/podu1"
