"""The command line of each control-plane component: a pure function of where things are.

``Layout`` says where (folders, addresses, ports); ``prepare`` writes the PKI and the
components' kubeconfigs there once; the ``*_argv`` functions only read the layout, so the same
command lines serve the tests' local control plane (everything on 127.0.0.1, free ports) and
the simulated cluster's (the API server on 172.30.0.254:6443 in the controller's netns).

Flags chosen for nodemesh: the Node authorizer and NodeRestriction (a kubelet sees and changes
only its own node and pods, as in a real cluster), and a service-account issuer, so that
tokens bound to a pod carry its node (``authentication.kubernetes.io/node-name``), which the
controller's TokenReview checks. The controller manager signs service-account tokens with the
same key and publishes the CA (``kube-root-ca.crt`` ConfigMaps); leader election is off (one
of each).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from nodemesh.tools.kube import pki
from nodemesh.tools.kube.binaries import ETCD_BINARY
from nodemesh.tools.kube.kubeconfig import write_kubeconfig

# the components, by the names their logs and records use
ETCD = "etcd"
APISERVER = "kube-apiserver"
CONTROLLER_MANAGER = pki.CONTROLLER_MANAGER
SCHEDULER = pki.SCHEDULER

SERVICE_CIDR = "10.96.0.0/16"
CLUSTER_CIDR = "10.10.0.0/16"
ISSUER = "https://kubernetes.default.svc.cluster.local"
# kube-proxy's health and metrics, on the node's own loopback (its namespace's)
PROXY_HEALTHZ_PORT = 10256
PROXY_METRICS_PORT = 10249
# every component runs with the same verbosity; 2 keeps the logs short and still says why it failed
VERBOSITY = "--v=2"


@dataclass(frozen=True)
class Layout:
    """Where one control plane lives: its folder, the binaries, addresses and ports."""

    root: Path
    bin: Path
    apiserver_ip: str  # the API server's advertised address (the `kubernetes` Service's endpoint)
    apiserver_port: int
    etcd_client_port: int
    etcd_peer_port: int
    controller_manager_port: int  # secure port (healthz)
    scheduler_port: int
    etcd_ip: str = "127.0.0.1"
    # where the API server listens: its address alone by default; the sim's listens on every
    # address of its namespace, so that a forward into the namespace's loopback reaches it too
    apiserver_bind: str | None = None

    @property
    def server(self) -> str:
        return f"https://{self.apiserver_ip}:{self.apiserver_port}"

    @property
    def etcd_url(self) -> str:
        return f"http://{self.etcd_ip}:{self.etcd_client_port}"

    @property
    def pki_dir(self) -> Path:
        return self.root / "pki"

    def kubeconfig(self, component: str) -> Path:
        """The kubeconfig of ``component`` (pki.ADMIN, pki.SCHEDULER, ...) at ``server``."""
        return self.root / f"{component}.kubeconfig"

    def log(self, component: str) -> Path:
        return self.root / "logs" / f"{component}.log"


def prepare(layout: Layout, extra_apiserver_ips: tuple[str, ...] = ()) -> pki.ClusterPki:
    """Create the PKI under the layout's folder and a kubeconfig at ``server`` for each component."""
    (layout.root / "logs").mkdir(parents=True, exist_ok=True)
    cluster = pki.ClusterPki.create(layout.pki_dir, (layout.apiserver_ip, *extra_apiserver_ips))
    for component in (pki.ADMIN, pki.CONTROLLER_MANAGER, pki.SCHEDULER, pki.PROXY):
        write_kubeconfig(layout.kubeconfig(component), layout.server, cluster.ca_pem,
                         cluster.client(component))
    return cluster


def etcd_argv(layout: Layout) -> list[str]:
    peer = f"http://{layout.etcd_ip}:{layout.etcd_peer_port}"
    return [str(ETCD_BINARY), "--name=nodemesh", f"--data-dir={layout.root / 'etcd'}",
            f"--listen-client-urls={layout.etcd_url}", f"--advertise-client-urls={layout.etcd_url}",
            f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=nodemesh={peer}", "--initial-cluster-state=new",
            "--logger=zap", "--log-outputs=stderr"]


def apiserver_argv(layout: Layout) -> list[str]:
    d = layout.pki_dir
    return [str(layout.bin / APISERVER),
            f"--etcd-servers={layout.etcd_url}",
            f"--bind-address={layout.apiserver_bind or layout.apiserver_ip}",
            f"--advertise-address={layout.apiserver_ip}",
            f"--secure-port={layout.apiserver_port}",
            f"--cert-dir={layout.root / 'apiserver-certs'}",
            f"--tls-cert-file={d / 'apiserver.crt'}", f"--tls-private-key-file={d / 'apiserver.key'}",
            f"--client-ca-file={d / 'ca.crt'}",
            f"--kubelet-certificate-authority={d / 'ca.crt'}",
            f"--kubelet-client-certificate={d / (pki.APISERVER_KUBELET_CLIENT + '.crt')}",
            f"--kubelet-client-key={d / (pki.APISERVER_KUBELET_CLIENT + '.key')}",
            f"--service-account-key-file={d / 'sa.pub'}",
            f"--service-account-signing-key-file={d / 'sa.key'}",
            f"--service-account-issuer={ISSUER}", f"--api-audiences={ISSUER}",
            "--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
            # the agent's DaemonSet runs hostNetwork/hostPID pods
            "--allow-privileged=true",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--profiling=false", VERBOSITY,
            # a loopback address may not be an endpoint: the tests' `kubernetes` Service has none
            *(["--endpoint-reconciler-type=none"] if ipaddress.ip_address(layout.apiserver_ip).is_loopback else [])]


def _controller(layout: Layout, binary: str, component: str, port: int) -> list[str]:
    """What the controller manager and the scheduler share: their kubeconfig (also to check who
    asks them), where they serve health and metrics, no leader election."""
    kubeconfig = layout.kubeconfig(component)
    return [str(layout.bin / binary),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}", f"--authorization-kubeconfig={kubeconfig}",
            f"--bind-address={layout.apiserver_ip}", f"--secure-port={port}",
            f"--cert-dir={layout.root / (component + '-certs')}",
            "--leader-elect=false", "--profiling=false", VERBOSITY]


def controller_manager_argv(layout: Layout) -> list[str]:
    d = layout.pki_dir
    return [*_controller(layout, CONTROLLER_MANAGER, pki.CONTROLLER_MANAGER, layout.controller_manager_port),
            "--controllers=*", "--use-service-account-credentials",
            f"--service-account-private-key-file={d / 'sa.key'}",
            f"--root-ca-file={d / 'ca.crt'}",
            f"--cluster-signing-cert-file={d / 'ca.crt'}", f"--cluster-signing-key-file={d / 'ca.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}", f"--cluster-cidr={CLUSTER_CIDR}"]


def scheduler_argv(layout: Layout) -> list[str]:
    return _controller(layout, SCHEDULER, pki.SCHEDULER, layout.scheduler_port)


def kube_proxy_argv(bin: Path, kubeconfig: Path, node: str) -> list[str]:
    """kube-proxy for ``node`` in iptables mode, in the node's network namespace.

    It must change nothing outside that namespace: the conntrack table size and the TCP
    timeouts it would otherwise set are the host's (``nf_conntrack_max`` and the module's
    hashsize are global; 0 means "leave as is"), and its health and metrics listen on the
    node's loopback, where nothing of another node collides with them.
    """
    return [str(bin / "kube-proxy"), f"--kubeconfig={kubeconfig}", f"--hostname-override={node}",
            "--proxy-mode=iptables", "--detect-local-mode=ClusterCIDR", f"--cluster-cidr={CLUSTER_CIDR}",
            # NodePorts on the node's own IP only: on loopback they would need route_localnet
            "--nodeport-addresses=primary",
            "--conntrack-max-per-core=0",
            "--conntrack-tcp-timeout-established=0", "--conntrack-tcp-timeout-close-wait=0",
            f"--healthz-bind-address=127.0.0.1:{PROXY_HEALTHZ_PORT}",
            f"--metrics-bind-address=127.0.0.1:{PROXY_METRICS_PORT}",
            "--profiling=false", VERBOSITY]
