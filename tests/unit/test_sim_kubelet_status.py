"""Pod status, CrashLoop backoff, readiness bookkeeping, pod IPs and the Node the kubelet reports."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from nodemesh.tools.sim.kubelet.addresses import PodAddresses, PodCidrFull, load, save
from nodemesh.tools.sim.kubelet.backoff import Backoff, should_restart
from nodemesh.tools.sim.kubelet.nodeobject import NodeInfo, micro_time
from nodemesh.tools.sim.kubelet.podstatus import ContainerState, phase, pod_status
from nodemesh.tools.sim.kubelet.probes import ProbeState, probe_port

POD = {"metadata": {"name": "p", "namespace": "n", "uid": "u"},
       "spec": {"containers": [{"name": "a"}, {"name": "b"}]}}


def test_phases():
    assert phase([ContainerState("a"), ContainerState("b", started_at=1.0)]) == "Pending"
    assert phase([ContainerState("a", started_at=1.0)]) == "Running"
    crashing = ContainerState("a", restart_count=2, exit_code=1, waiting_reason="CrashLoopBackOff")
    assert phase([crashing]) == "Running"
    first_backoff = ContainerState("a", restart_count=0, exit_code=1, waiting_reason="CrashLoopBackOff")
    assert phase([first_backoff]) == "Running"  # exited once, waiting for its first restart
    assert phase([ContainerState("a", exit_code=0, done=True)]) == "Succeeded"
    assert phase([ContainerState("a", exit_code=0, done=True),
                  ContainerState("b", exit_code=2, done=True)]) == "Failed"


def test_status_reports_addresses_conditions_and_containers():
    status = pod_status(POD, "10.10.1.10", "172.30.0.1", 0.0,
                        [ContainerState("a", started_at=1.0, ready=True, pid=7),
                         ContainerState("b", started_at=1.0, ready=False)], 2.0)
    assert status["podIP"] == "10.10.1.10" and status["podIPs"] == [{"ip": "10.10.1.10"}]
    assert status["hostIP"] == "172.30.0.1" and status["qosClass"] == "BestEffort"
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "PodScheduled": "True", "Initialized": "True", "ContainersReady": "False", "Ready": "False"}
    a, b = status["containerStatuses"]
    assert a["ready"] and a["state"] == {"running": {"startedAt": "1970-01-01T00:00:01Z"}}
    assert a["containerID"] == "sim://7"
    assert not b["ready"]


def test_a_pod_waiting_for_its_volumes_has_no_address_yet():
    status = pod_status(POD, "", "172.30.0.1", 0.0, [ContainerState("a"), ContainerState("b")], 0.0)
    assert "podIP" not in status and "podIPs" not in status  # the API server refuses an empty IP
    assert status["hostIP"] == "172.30.0.1" and status["phase"] == "Pending"
    assert status["containerStatuses"][0]["state"] == {"waiting": {"reason": "ContainerCreating"}}


def test_a_restarting_container_shows_its_last_exit():
    state = ContainerState("a", restart_count=1, exit_code=3, finished_at=5.0,
                           waiting_reason="CrashLoopBackOff").status()
    assert state["state"] == {"waiting": {"reason": "CrashLoopBackOff"}}
    assert state["lastState"]["terminated"]["exitCode"] == 3


@pytest.mark.parametrize("policy,code,restart", [
    ("Always", 0, True), ("Always", 1, True), ("OnFailure", 0, False), ("OnFailure", 1, True),
    ("Never", 1, False)])
def test_restart_policy(policy, code, restart):
    assert should_restart(policy, code) is restart


def test_backoff_doubles_to_five_minutes_and_resets_after_ten_minutes_of_running():
    backoff = Backoff()
    assert [backoff.next_delay(1.0) for _ in range(7)] == [10, 20, 40, 80, 160, 300, 300]
    assert backoff.next_delay(600.0) == 10


def test_readiness_needs_success_after_the_initial_delay_and_failures_beyond_the_threshold():
    state = ProbeState({"initialDelaySeconds": 5, "periodSeconds": 2, "failureThreshold": 2}, 100.0)
    assert not state.ready and not state.due(104.0) and state.due(105.0)
    state.record(True, 105.0)
    assert state.ready and not state.due(106.0) and state.due(107.0)
    state.record(False, 107.0)
    assert state.ready  # one failure is below the threshold
    state.record(False, 109.0)
    assert not state.ready
    assert ProbeState(None, 0.0).ready  # no probe: ready once running


def test_named_probe_ports():
    container = {"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}
    assert probe_port("http", container) == 8080 and probe_port(15021, container) == 15021
    with pytest.raises(ValueError, match="no port named 'grpc'"):
        probe_port("grpc", container)


def test_pod_addresses_are_kept_per_uid_and_reused_once_released():
    ips = PodAddresses("10.10.1.0/24")
    assert ips.assign("a") == "10.10.1.10" and ips.assign("b") == "10.10.1.11"
    assert ips.assign("a") == "10.10.1.10"
    ips.release("a")
    assert ips.assign("c") == "10.10.1.10"
    assert PodAddresses("10.10.1.0/24", ips.assigned).assign("b") == "10.10.1.11"  # a restart


def test_saves_at_the_same_moment_each_replace_the_file_whole(tmp_path):
    # A pod started while another is removed: two saves at once. Each writes its own temporary
    # file; with a shared one, the second rename found nothing and the pod's worker died.
    path = tmp_path / "pod-ips.json"
    ips = PodAddresses("10.10.1.0/24", {"a": "10.10.1.10"})
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: save(path, ips), range(400)))
    assert load(path, "10.10.1.0/24").assigned == {"a": "10.10.1.10"}
    assert [f.name for f in tmp_path.iterdir()] == ["pod-ips.json"]


def test_a_full_pod_cidr_says_so():
    ips = PodAddresses("10.10.1.0/24")
    for i in range(245):
        ips.assign(str(i))
    with pytest.raises(PodCidrFull, match="10.10.1.0/24 has no free address"):
        ips.assign("one-more")


def test_the_node_is_registered_with_labels_pod_cidr_and_ready_status():
    info = NodeInfo("node-a", "172.30.0.1", "10.10.1.0/24", "zone-1")
    node = info.node()
    assert node["metadata"]["labels"]["topology.kubernetes.io/zone"] == "zone-1"
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == "node-a"
    assert node["spec"]["podCIDR"] == "10.10.1.0/24"
    status = info.status(100.0, 50.0)["status"]
    assert {"type": "InternalIP", "address": "172.30.0.1"} in status["addresses"]
    ready = [c for c in status["conditions"] if c["type"] == "Ready"][0]
    assert ready["status"] == "True" and ready["lastHeartbeatTime"] == "1970-01-01T00:01:40Z"
    assert status["allocatable"]["pods"] == "110"
    lease = info.lease(100.5, "uid-1")
    assert lease["spec"]["renewTime"] == micro_time(100.5) == "1970-01-01T00:01:40.500000Z"
    assert lease["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
