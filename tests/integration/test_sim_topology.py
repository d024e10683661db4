"""The simulated cluster's topology and processes on the real kernel, without controller or agents.

The plan is written by hand here, so these tests need nothing from the mesh: only namespaces,
veths, routes, cgroups and the example apps.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pyroute2 import IPRoute

from nodemesh.tools.sim.cleanup import down, leftovers
from nodemesh.tools.sim.cluster import lay_out, pod_containers, start_components
from nodemesh.tools.sim.names import SimError, SimNames
from nodemesh.tools.sim.plan import ClusterPlan, ContainerPlan, NodePlan, PodPlan
from nodemesh.tools.sim.process import alive, process_env, spawn, start_time
from nodemesh.tools.sim.ready import wait_ready
from nodemesh.tools.sim.state import ProcessRecord

pytestmark = pytest.mark.kernel

DEMO = Path(__file__).parents[2] / "tools" / "sim" / "examples" / "demo.yaml"
SERVER_PORT = 8080


def _server(name: str) -> tuple[ContainerPlan, ...]:
    return (ContainerPlan("server", ("python3", "-m", "nodemesh.tools.apps.server", "--port",
                                     str(SERVER_PORT)), {"POD_NAME": name}),)


def _plan(extra_pods: int = 0) -> ClusterPlan:
    nodes = (NodePlan("node-a", "172.30.0.1", "10.10.1.0/24"),
             NodePlan("node-b", "172.30.0.2", "10.10.2.0/24"))
    pods = (PodPlan("shop", "srv-a", "node-a", "10.10.1.10", True, _server("srv-a")),
            PodPlan("shop", "srv-b", "node-b", "10.10.2.10", True, _server("srv-b")),
            PodPlan("shop", "client", "node-a", "10.10.1.11", True,
                    (ContainerPlan("main", ("sleep", "infinity")),)))
    pods += tuple(PodPlan("bulk", f"p{i}", nodes[i % 2].name, f"10.10.{i % 2 + 1}.{20 + i}", False,
                          (ContainerPlan("main", ("sleep", "infinity")),)) for i in range(extra_pods))
    return ClusterPlan(nodes=nodes, pods=pods)


def _root_network() -> tuple[set, set, set]:
    """The host's own links, addresses and routes: the sim must never touch them."""
    with IPRoute() as ipr:
        return ({link.get("ifname") for link in ipr.get_links()},
                {(a.get("index"), a.get("address"), a.get("prefixlen")) for a in ipr.get_addr()},
                {(r.get("table"), r.get("dst"), r.get("dst_len"), r.get("gateway")) for r in ipr.get_routes()})


def _bring_up(names: SimNames, plan: ClusterPlan):
    """What `up` does, minus controller and agents: topology, state file, pods (servers waited for)."""
    names.logs_dir.mkdir(parents=True)
    state = lay_out(plan, names, DEMO)
    for pod in plan.pods:
        if pod.containers[0].name == "server":
            state.processes[f"pod/{pod.ref}/server"].ready = {"tcp": {"host": pod.ip, "port": SERVER_PORT}}
    start_components(state, names, pod_containers(state))
    return state


@pytest.fixture
def cluster(sim_names):
    names = sim_names("t1")
    network_before = _root_network()
    state = _bring_up(names, _plan())
    yield names, state
    down(names)
    assert _root_network() == network_before, "the sim touched the host's own network namespace"


def _exec(cli, names: SimNames, pod: str, *cmd: str, input: str | None = None):
    return cli("sim", "exec", "--name", names.sim, pod, "--", *cmd, input=input)


def _client(cli, names: SimNames, pod: str, target: str, count: int = 4) -> dict:
    out = _exec(cli, names, pod, "python3", "-m", "nodemesh.tools.apps.client", target,
                "--count", str(count), "--concurrency", "2", "--payload", "4096", "-o", "json")
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout)


def test_pods_reach_each_other_across_nodes_by_pod_ip(cluster, cli):
    names, _ = cluster
    assert _client(cli, names, "shop/client", "10.10.2.10:8080")["servers"] == {"srv-b": 4}
    assert _client(cli, names, "shop/client", "10.10.1.10:8080")["servers"] == {"srv-a": 4}
    assert _client(cli, names, "shop/srv-b", "10.10.1.10:8080")["servers"] == {"srv-a": 4}


def test_exec_runs_in_the_pods_netns_and_cgroup_with_its_env(cluster, cli):
    names, _ = cluster
    out = _exec(cli, names, "shop/client", "sh", "-c",
                "cat /proc/self/cgroup; ip -o -4 addr show dev eth0; echo $POD_NAME $POD_IP $NODE_NAME")
    assert out.returncode == 0, out.stderr
    cgroup = "0::/nodemesh-t1/node-a/pods/shop.client"
    assert cgroup in out.stdout.splitlines()
    assert " 10.10.1.11/32 " in out.stdout
    assert out.stdout.splitlines()[-1] == "client 10.10.1.11 node-a"


def test_exec_passes_stdin_and_returns_the_exit_status(cluster, cli):
    names, _ = cluster
    out = _exec(cli, names, "shop/srv-b", "sh", "-c", "tr a-z A-Z; exit 7", input="hello pod\n")
    assert (out.returncode, out.stdout) == (7, "HELLO POD\n")
    missing = _exec(cli, names, "shop/srv-b", "no-such-command")
    assert missing.returncode == 1 and "no-such-command: command not found in pod shop/srv-b" in missing.stderr
    unknown = _exec(cli, names, "shop/nope", "true")
    assert unknown.returncode == 1 and "no pod 'shop/nope'" in unknown.stderr


def test_status_logs_and_restarting_a_process(cluster, cli):
    names, state = cluster
    status = json.loads(cli("sim", "status", "--name", names.sim, "-o", "json").stdout)
    assert status["pods"]["shop/srv-a"] == {"ip": "10.10.1.10", "node": "node-a", "meshed": True,
                                            "containers": 1, "running": 1}
    assert status["processes"]["pod/shop/srv-a/server"]["ready"] is True
    assert status["processes"]["agent/node-a"]["alive"] is False  # never started here
    table = cli("sim", "status", "--name", names.sim).stdout
    assert ["shop/srv-b", "10.10.2.10", "node-b", "yes", "1/1"] in [row.split() for row in table.splitlines()]

    assert "srv-a listening on 0.0.0.0:8080" in cli("sim", "logs", "--name", names.sim,
                                                    "pod/shop/srv-a/server").stdout
    assert cli("sim", "stop", "--name", names.sim, "pod/shop/srv-a/server").returncode == 0
    assert start_time(state.processes["pod/shop/srv-a/server"].pid) is None
    again = cli("sim", "start", "--name", names.sim, "pod/shop/srv-a/server")
    assert again.returncode == 0, again.stderr
    assert _client(cli, names, "shop/client", "10.10.1.10:8080")["servers"] == {"srv-a": 4}
    log = cli("sim", "logs", "--name", names.sim, "pod/shop/srv-a/server").stdout
    assert log.count("--- ") == 2  # one header per start: the restarted process appends


def test_a_component_that_cannot_start_dies_or_is_late_is_reported_clearly(cluster):
    names, state = cluster
    netns = names.netns_path(names.pod_netns("shop", "client"))
    cgroup = str(names.pod_cgroup("node-a", "shop", "client"))

    def record(script: str) -> ProcessRecord:
        return ProcessRecord(argv=["sh", "-c", script], env=process_env({}), netns=netns, cgroup=cgroup,
                             log=str(names.logs_dir / "probe.log"),
                             ready={"tcp": {"host": "127.0.0.1", "port": 9}})

    dying, late = record("echo boom; exit 3"), record("echo slow; sleep 30")
    spawn(dying)
    with pytest.raises(SimError, match=r"(?s)dying exited while starting.*boom"):
        wait_ready({"dying": dying}, timeout=10)
    spawn(late)
    with pytest.raises(SimError, match=r"(?s)late is not ready after 0.5 s.*slow"):
        wait_ready({"late": late}, timeout=0.5)
    state.processes["pod/shop/client/main"].argv = ["no-such-program"]
    with pytest.raises(SimError, match=r"pod/shop/client/main: cannot run 'no-such-program': "
                                       r"No such file or directory \(PATH=/"):
        start_components(state, names, ["pod/shop/client/main"])


def test_up_refuses_a_sim_that_exists(cluster, cli):
    names, _ = cluster
    out = cli("sim", "up", "-f", str(DEMO), "--name", names.sim)
    assert out.returncode == 1
    assert "sim 't1' is already up" in out.stderr and "nodemesh sim down --name t1" in out.stderr
    assert leftovers(names)  # and it did not tear the existing sim down


def _pin_a_map(path: Path) -> None:
    """What an agent may leave: a BPF map pinned under the sim's bpffs directory."""
    from bcc import BPF

    path.parent.mkdir()
    BPF(text=f'BPF_TABLE_PINNED("array", u32, u64, pods, 1, "{path}");'.encode()).cleanup()
    assert path.exists()


def test_down_removes_everything_and_twice_is_safe(sim_names, cli):
    names = sim_names("t2")
    network_before = _root_network()
    state = _bring_up(names, _plan())
    pids = [r.pid for r in state.processes.values() if r.pid]
    _pin_a_map(names.bpf_dir / "pods")
    assert len(pids) == 3 and leftovers(names)
    first = cli("sim", "down", "--name", names.sim)
    assert first.returncode == 0 and "removed" in first.stdout
    assert leftovers(names) == [] and _root_network() == network_before
    assert all(start_time(pid) is None for pid in pids)
    second = cli("sim", "down", "--name", names.sim)
    assert (second.returncode, second.stdout.strip()) == (0, "sim 't2': nothing to remove")


def test_down_without_a_state_file_finds_everything_by_name(sim_names):
    names = sim_names("t3")
    state = _bring_up(names, _plan())
    # Processes the state never knew: one only in a pod's netns, one only in a pod's cgroup.
    strays = [ProcessRecord(argv=["sleep", "60"], env=process_env({}), netns=netns, cgroup=str(cgroup),
                            log=str(names.logs_dir / "stray.log"))
              for netns, cgroup in ((names.netns_path(names.pod_netns("shop", "client")), names.cgroup_root.parent),
                                    ("/proc/self/ns/net", names.pod_cgroup("node-b", "shop", "srv-b")))]
    for stray in strays:
        spawn(stray)
    names.state_path.unlink()
    down(names)
    assert leftovers(names) == []
    assert all(not alive(r) for r in [*state.processes.values(), *strays] if r.pid)


def test_down_after_an_up_killed_midway(sim_names):
    names = sim_names("t4")
    script = ("import sys; sys.path.insert(0, sys.argv[1]); import test_sim_topology as t; "
              "from nodemesh.tools.sim.names import SimNames; "
              "print('go', flush=True); t._bring_up(SimNames('t4'), t._plan(extra_pods=30))")
    for delay in (0.05, 0.3):
        builder = subprocess.Popen([sys.executable, "-c", script, str(Path(__file__).parent)],
                                   stdout=subprocess.PIPE, text=True)
        assert builder.stdout.readline() == "go\n"
        time.sleep(delay)  # not a condition: how far the builder gets before the kill is what varies
        builder.send_signal(signal.SIGKILL)
        builder.wait()
        assert leftovers(names), "the builder made nothing before it was killed: raise the delay"
        down(names)
        assert leftovers(names) == []
