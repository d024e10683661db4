"""The simulated cluster's control plane and kube-proxies, as process specs the sim starts.

Inside the sim's controller namespace: etcd on that namespace's 127.0.0.1, the API server at
172.30.0.254:6443 (the address the nodes reach over the sim's bridge, and the `kubernetes`
Service's endpoint), the controller manager and the scheduler beside it. The host reaches the
API server through a port forward (``nodemesh.tools.sim.forward``, as for the sim's Prometheus)
from its own 127.0.0.1:<host port> into the namespace's loopback, where the API server also
listens. Each node runs a kube-proxy in its namespace, so ClusterIPs work for host-network
processes and unmeshed pods there.

Plain data, so that the sim records and starts these as its other processes: a spec's fields are
``ProcessRecord``'s (tools/sim/state.py) but the cgroup, which is the sim's to choose. ``env``
holds only what the component needs declared; the sim adds its usual environment.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from nodemesh.tools.kube import pki
from nodemesh.tools.kube.binaries import KubeError, bin_dir
from nodemesh.tools.kube.components import (APISERVER, CONTROLLER_MANAGER, ETCD, PROXY_HEALTHZ_PORT, SCHEDULER,
                                            Layout, apiserver_argv, controller_manager_argv, etcd_argv,
                                            kube_proxy_argv, prepare, scheduler_argv)
from nodemesh.tools.kube.health import apiserver_ready
from nodemesh.tools.kube.kubeconfig import write_kubeconfig
from nodemesh.tools.kube.pki import ClusterPki

APISERVER_IP = pki.SIM_APISERVER_IP
APISERVER_PORT = 6443
# the controller namespace is the sim's own: the components' usual ports collide with nothing
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
CONTROLLER_MANAGER_PORT = 10257
SCHEDULER_PORT = 10259
CALLER_NETNS = "/proc/self/ns/net"  # the forward listens where `sim up` runs

APISERVER_FORWARD = "kube-apiserver-forward"


def kube_proxy_component(node: str) -> str:
    return f"kube-proxy/{node}"


@dataclass(frozen=True)
class ProcessSpec:
    """One process of the sim: ``ProcessRecord(**asdict(spec), cgroup=...)`` (env: add the sim's)."""

    argv: list[str]
    env: dict[str, str]
    netns: str  # path of the network namespace file
    log: str
    ready: dict[str, Any] | None


def sim_layout(root: Path) -> Layout:
    """The sim's control plane under ``root`` (the sim's kube folder)."""
    return Layout(root=root, bin=bin_dir(), apiserver_ip=APISERVER_IP, apiserver_port=APISERVER_PORT,
                  apiserver_bind="0.0.0.0", etcd_client_port=ETCD_CLIENT_PORT, etcd_peer_port=ETCD_PEER_PORT,
                  controller_manager_port=CONTROLLER_MANAGER_PORT, scheduler_port=SCHEDULER_PORT)


def prepare_sim(root: Path, host_kubeconfig: Path, host_port: int) -> Layout:
    """Write the PKI and every kubeconfig: the components' (at 172.30.0.254:6443, in the sim) and
    the host's admin one at ``host_kubeconfig`` (at https://127.0.0.1:<host_port>, the forward)."""
    layout = sim_layout(root)
    cluster = prepare(layout)
    write_kubeconfig(host_kubeconfig, f"https://127.0.0.1:{host_port}", cluster.ca_pem, cluster.client(pki.ADMIN))
    return layout


def _spec(component: str, argv: list[str], netns: str, log: Callable[[str], Path],
          ready: dict[str, Any] | None) -> ProcessSpec:
    return ProcessSpec(argv=argv, env={}, netns=netns, log=str(log(component)), ready=ready)


def apiserver_specs(layout: Layout, controller_netns: str, host_port: int,
                    log: Callable[[str], Path]) -> dict[str, ProcessSpec]:
    """Step 1: etcd and the API server in ``controller_netns`` (a path), and the host's forward to it.

    ``log(component)`` names each log file (the sim's ``SimNames.component_log``). Readiness is
    what the sim's probes can check: etcd's /health (JSON), a TCP connect for the others. An
    API server that accepts connections is not ready yet (its RBAC roles are still being
    made), so step 2 waits for ``wait_apiserver_ready``.
    """
    return {
        ETCD: _spec(ETCD, etcd_argv(layout), controller_netns, log,
                    {"http": {"port": layout.etcd_client_port, "path": "/health"}}),
        APISERVER: _spec(APISERVER, apiserver_argv(layout), controller_netns, log,
                         {"tcp": {"host": layout.apiserver_ip, "port": layout.apiserver_port}}),
        APISERVER_FORWARD: _spec(APISERVER_FORWARD,
                                 [sys.executable, "-m", "nodemesh.tools.sim.forward", "--listen", str(host_port),
                                  "--netns", controller_netns, "--to-port", str(layout.apiserver_port)],
                                 CALLER_NETNS, log, {"tcp": {"host": "127.0.0.1", "port": host_port}}),
    }


def wait_apiserver_ready(layout: Layout, host_port: int, timeout: float = 120.0) -> None:
    """Return once the API server answers /readyz through the forward; KubeError naming its log if not.

    Between the two steps: the controller manager exits when the API server is not ready in
    its first seconds (it cannot read its authentication settings yet).
    """
    cluster = ClusterPki(layout.pki_dir)
    deadline = time.monotonic() + timeout
    while not apiserver_ready(f"https://127.0.0.1:{host_port}", cluster):
        if time.monotonic() > deadline:
            raise KubeError(f"the sim's API server was not ready after {timeout:.0f} s; see the "
                            f"{APISERVER} and {APISERVER_FORWARD} logs")
        time.sleep(0.2)


def controller_specs(layout: Layout, controller_netns: str, log: Callable[[str], Path]) -> dict[str, ProcessSpec]:
    """Step 2, once the API server is ready: the controller manager and the scheduler beside it."""
    return {
        CONTROLLER_MANAGER: _spec(CONTROLLER_MANAGER, controller_manager_argv(layout), controller_netns, log,
                                  {"tcp": {"host": layout.apiserver_ip, "port": layout.controller_manager_port}}),
        SCHEDULER: _spec(SCHEDULER, scheduler_argv(layout), controller_netns, log,
                         {"tcp": {"host": layout.apiserver_ip, "port": layout.scheduler_port}}),
    }


def kube_proxy_spec(layout: Layout, node: str, node_netns: str, log: Callable[[str], Path]) -> ProcessSpec:
    """kube-proxy of ``node`` in its namespace (a path), reaching the API server over the sim's bridge.

    Start it once the node's kubelet has registered the Node: kube-proxy takes the node's IP
    from its InternalIP (NodePorts listen there) and otherwise waits for it, then assumes loopback.
    """
    return _spec(kube_proxy_component(node), kube_proxy_argv(layout.bin, layout.kubeconfig(pki.PROXY), node),
                 node_netns, log, {"http": {"port": PROXY_HEALTHZ_PORT, "path": "/healthz"}})
