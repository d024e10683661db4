"""kube-proxy as the sim runs it (tools/kube: iptables mode, in a node's namespace, touching
nothing global) really makes a ClusterIP reach a Service's endpoint in another namespace.

Two network namespaces joined by a veth: the "node" runs kube-proxy, the "pod" listens. The
node's kube-proxy reaches the API server on the host's loopback through the sim's own port
forward, run the other way round (listening on the node's loopback).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from eventually import eventually
from kubeapi import create, register_node, unique_name
from nodemesh.netns import Netns
from nodemesh.tools.kube import pki
from nodemesh.tools.kube.children import Child
from nodemesh.tools.kube.components import kube_proxy_argv
from nodemesh.tools.kube.controlplane import LocalControlPlane, free_port
from nodemesh.tools.kube.kubeconfig import write_kubeconfig

pytestmark = [pytest.mark.kernel, pytest.mark.slow]

NODE_IP = "192.168.231.1"
POD_IP = "192.168.231.2"
POD_PORT = 8080
SERVICE_PORT = 80
GREETING = b"hello from the pod\n"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def node_and_pod() -> Iterator[tuple[str, str]]:
    """Two namespaces (names), node NODE_IP and pod POD_IP on one veth, the node routing via the pod."""
    tag = uuid.uuid4().hex[:6]
    node, pod = f"kcp-{tag}-node", f"kcp-{tag}-pod"
    try:
        _ip("netns", "add", node)
        _ip("netns", "add", pod)
        _ip("link", "add", f"kcp{tag}n", "netns", node, "type", "veth", "peer", "name", f"kcp{tag}p", "netns", pod)
        for ns, dev, address in ((node, f"kcp{tag}n", NODE_IP), (pod, f"kcp{tag}p", POD_IP)):
            _ip("-n", ns, "addr", "add", f"{address}/24", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        # a ClusterIP needs a route before kube-proxy's DNAT rewrites it
        _ip("-n", node, "route", "add", "default", "via", POD_IP)
        yield node, pod
    finally:
        for ns in (node, pod):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _serve(listener: socket.socket) -> None:
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:  # closed: the test is over
            return
        with conn:
            conn.sendall(GREETING)


def _greeting(node_netns: str, address: str) -> bytes:
    with Netns(node_netns) as ns:
        sock = ns.socket()
    with sock:
        sock.settimeout(2.0)
        try:
            sock.connect((address, SERVICE_PORT))
        except OSError as e:
            return f"connect: {e}".encode()
        return sock.recv(100)


def test_a_cluster_ip_reaches_the_endpoint(control_plane: LocalControlPlane, kube_namespace: str,
                                           node_and_pod: tuple[str, str], tmp_path: Path) -> None:
    node_ns, pod_ns = node_and_pod
    node = unique_name("proxy-node")
    register_node(control_plane, node, NODE_IP)
    service = create(control_plane, {"apiVersion": "v1", "kind": "Service",
                                     "metadata": {"name": "greeter", "namespace": kube_namespace},
                                     "spec": {"ports": [{"port": SERVICE_PORT, "targetPort": POD_PORT}]}})
    create(control_plane, {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                           "metadata": {"name": "greeter-1", "namespace": kube_namespace,
                                        "labels": {"kubernetes.io/service-name": "greeter"}},
                           "addressType": "IPv4",
                           "endpoints": [{"addresses": [POD_IP], "conditions": {"ready": True}}],
                           "ports": [{"port": POD_PORT, "protocol": "TCP"}]})
    with Netns(f"/run/netns/{pod_ns}") as ns:
        listener = ns.socket()
    listener.bind((POD_IP, POD_PORT))
    listener.listen()
    threading.Thread(target=_serve, args=(listener,), daemon=True).start()

    forward_port = free_port()
    kubeconfig = write_kubeconfig(tmp_path / "kube-proxy.kubeconfig", f"https://127.0.0.1:{forward_port}",
                                  control_plane.pki.ca_pem, control_plane.pki.client(pki.PROXY))
    api_port = str(control_plane.layout.apiserver_port)
    children = [
        Child("forward", ["ip", "netns", "exec", node_ns, sys.executable, "-m", "nodemesh.tools.sim.forward",
                          "--listen", str(forward_port), "--netns", f"/proc/{os.getpid()}/ns/net",
                          "--to-port", api_port], tmp_path / "forward.log"),
        Child("kube-proxy", ["ip", "netns", "exec", node_ns,
                             *kube_proxy_argv(control_plane.layout.bin, kubeconfig, node)],
              tmp_path / "kube-proxy.log"),
    ]
    try:
        cluster_ip = service["spec"]["clusterIP"]
        eventually(lambda: _greeting(f"/run/netns/{node_ns}", cluster_ip) == GREETING, 60, interval=0.2,
                   what=f"a connect to {cluster_ip}:{SERVICE_PORT} in the node answered by the pod")
    except AssertionError as e:
        raise AssertionError(f"{e}\nkube-proxy's log:\n{children[1].tail()}") from None
    finally:
        listener.close()
        for child in children:
            child.stop()
