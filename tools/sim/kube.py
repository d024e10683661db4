"""``nodemesh sim up --kube``: the sim's nodes driven by a real Kubernetes control plane.

The topology is the file mode's with nodes only (no pods from a file: pods come from the API
server). Node i (0-based) is ``node-<letter>`` at 172.30.0.<i+1> with podCIDR
10.10.<i+1>.0/24 (as controller/model/ipam.py) in zone ``zone-<i // 2 + 1>``: nodes pair up
in zones (node-a and node-b in zone-1, node-c in zone-2), so locality has a same-zone and a
cross-zone peer from three nodes on. Routes a real cluster has and the file mode must not:
the controller's netns to every pod CIDR (pods reach the API server), each node's netns the
Service CIDR to its uplink (kube-proxy rewrites host-network connects to ClusterIPs after the
route lookup). Steps, each recorded in state.json before it is taken: etcd and the API server
in the controller's netns with a forward from the host's 127.0.0.1:PORT (the admin
kubeconfig points there), the controller-manager and scheduler (after /readyz: RBAC must be
bootstrapped), a sim kubelet per node (in the node's netns, as ``system:node:<node>``),
waiting until every Node is Ready and untainted, then kube-proxy per node (it reads its
Node's InternalIP). Anything failing tears down what was made.
"""

from __future__ import annotations

import string
import sys
import time
from dataclasses import asdict
from typing import Callable

from nodemesh.tools.kube import sim as kube
from nodemesh.tools.kube.components import SERVICE_CIDR, Layout
from nodemesh.tools.kube.controlplane import free_port
from nodemesh.tools.kube.kubeconfig import write_kubeconfig
from nodemesh.tools.kube.pki import ClusterPki
from nodemesh.tools.sim import topology
from nodemesh.tools.sim.cluster import making, mark_ready, start_components
from nodemesh.tools.sim.kubectl import Kubectl
from nodemesh.tools.sim.names import CONTROLLER_IP, SimError, SimNames
from nodemesh.tools.sim.plan import ClusterPlan, NodePlan
from nodemesh.tools.sim.process import process_env
from nodemesh.tools.sim.state import ProcessRecord, SimState

NODES_READY_TIMEOUT = 120.0
KUBE_FILE = "(kube)"  # what state.json's "file" says of a sim driven by the API server
NOT_READY_TAINT = "node.kubernetes.io/not-ready"


def kubelet_component(node: str) -> str:
    return f"kubelet/{node}"


def node_plan(count: int) -> tuple[tuple[NodePlan, str], ...]:
    """The nodes of a kube-mode sim and their zones."""
    if not 1 <= count <= len(string.ascii_lowercase):
        raise SimError(f"--nodes {count}: give 1 to {len(string.ascii_lowercase)} nodes")
    return tuple((NodePlan(f"node-{string.ascii_lowercase[i]}", f"172.30.0.{i + 1}", f"10.10.{i + 1}.0/24"),
                  f"zone-{i // 2 + 1}") for i in range(count))


def _record(spec: kube.ProcessSpec, cgroup: str) -> ProcessRecord:
    return ProcessRecord(**{**asdict(spec), "env": process_env(spec.env)}, cgroup=cgroup)


def _kubelet_record(names: SimNames, layout: Layout, node: NodePlan, zone: str) -> ProcessRecord:
    creds = ClusterPki(layout.pki_dir).node_credentials(node.name)
    kubeconfig = write_kubeconfig(names.kubelet_dir(node.name) / "kubeconfig", layout.server,
                                  ClusterPki(layout.pki_dir).ca_pem, creds)
    return ProcessRecord(
        argv=[sys.executable, "-m", "nodemesh.tools.sim.kubelet", "--sim", names.sim,
              "--node", node.name, "--node-ip", node.ip, "--pod-cidr", node.pod_cidr, "--zone", zone,
              "--kubeconfig", str(kubeconfig)],
        env=process_env({}), netns=names.netns_path(names.node_netns(node.name)),
        cgroup=str(names.kubelet_cgroup(node.name)), log=str(names.component_log(kubelet_component(node.name))))


def _ready_nodes(names: SimNames) -> set[str]:
    try:
        nodes = Kubectl(names, timeout=30).get("nodes")["items"]
    except SimError:  # the API server not answering yet is "none ready yet"
        return set()
    return {n["metadata"]["name"] for n in nodes if _schedulable(n)}


def _schedulable(node: dict) -> bool:
    """Ready, and the not-ready taint the API server puts on a new Node lifted by the node
    lifecycle controller: only then does the scheduler place pods there."""
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", []))
    return ready and not any(t["key"] == NOT_READY_TAINT for t in node["spec"].get("taints") or [])


def _wait_nodes(names: SimNames, state: SimState, nodes: list[str]) -> None:
    deadline = time.monotonic() + NODES_READY_TIMEOUT
    while (missing := set(nodes) - _ready_nodes(names)):
        if time.monotonic() > deadline:
            node = sorted(missing)[0]
            raise SimError(f"Node {node} is not Ready (and untainted) after {NODES_READY_TIMEOUT:g} s: see "
                           f"{state.processes[kubelet_component(node)].log}")
        time.sleep(0.5)


def up_kube(names: SimNames, say: Callable[[str], None], nodes: int, kube_port: int) -> SimState:
    """Bring a kube-mode sim up; on any failure leave nothing behind."""
    planned = node_plan(nodes)
    host_port = kube_port or free_port()
    with making(names):
        plan = ClusterPlan(nodes=tuple(n for n, _ in planned), pods=())
        state = SimState(sim=names.sim, file=KUBE_FILE,
                         controller={"address": f"{CONTROLLER_IP}:{kube.APISERVER_PORT}",
                                     "netns": names.controller_netns,
                                     "kubeconfig": str(names.admin_kubeconfig),
                                     "kube_port": str(host_port)})
        for node, zone in planned:
            state.nodes[node.name] = {"ip": node.ip, "pod_cidr": node.pod_cidr, "zone": zone,
                                      "netns": names.node_netns(node.name),
                                      "cgroup": str(names.node_cgroup(node.name))}
        state.save(names)
        topology.build(plan, names)
        topology.route_pods_from_controller(plan, names)
        topology.route_services_from_nodes(plan, names, SERVICE_CIDR)
        layout = kube.prepare_sim(names.kube_dir, names.admin_kubeconfig, host_port)
        cp_netns = names.netns_path(names.controller_netns)

        def start(records: dict[str, ProcessRecord], wait: bool = True) -> None:
            state.processes.update(records)
            state.save(names)
            start_components(state, names, list(records), wait)

        cp_cgroup = str(names.controller_cgroup)
        start({k: _record(s, cp_cgroup) for k, s in
               kube.apiserver_specs(layout, cp_netns, host_port, names.component_log).items()})
        kube.wait_apiserver_ready(layout, host_port)
        start({k: _record(s, cp_cgroup) for k, s in
               kube.controller_specs(layout, cp_netns, names.component_log).items()})
        say(f"control plane ready at {layout.server} (host: https://127.0.0.1:{host_port})")
        for node, _ in planned:
            names.kubelet_cgroup(node.name).mkdir(parents=True, exist_ok=True)
        start({kubelet_component(n.name): _kubelet_record(names, layout, n, z) for n, z in planned},
              wait=False)
        _wait_nodes(names, state, [n.name for n, _ in planned])
        say(f"nodes Ready: {', '.join(n.name for n, _ in planned)}")
        proxies = {}
        for node, _ in planned:
            cgroup = names.node_cgroup(node.name) / "kube-proxy"
            cgroup.mkdir(parents=True, exist_ok=True)
            proxies[kube.kube_proxy_component(node.name)] = _record(
                kube.kube_proxy_spec(layout, node.name, names.netns_path(names.node_netns(node.name)),
                                     names.component_log), str(cgroup))
        start(proxies)
        say("kube-proxy ready on every node")
        return mark_ready(state, names)
