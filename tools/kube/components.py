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

from dataclasses import dataclass
from pathlib import Path

from nodemesh.tools.kube import pki
from nodemesh.tools.kube.binaries import ETCD
from nodemesh.tools.kube.kubeconfig import write_kubeconfig

SERVICE_CIDR = "10.96.0.0/16"
CLUSTER_CIDR = "10.10.0.0/16"
ISSUER = "https://kubernetes.default.svc.cluster.local"
# every component runs with the same verbosity; 2 keeps the logs short and still says why it failed
VERBOSITY = "--v=2"


@dataclass(frozen=True)
class Layout:
    """Where one control plane lives: its folder, the binaries, addresses and ports."""

    root: Path
    bin: Path
    apiserver_ip: str  # bind and advertise address of the API server
    apiserver_port: int
    etcd_client_port: int
    etcd_peer_port: int
    controller_manager_port: int  # secure port (healthz)
    scheduler_port: int
    etcd_ip: str = "127.0.0.1"

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
    return [str(ETCD), "--name=nodemesh", f"--data-dir={layout.root / 'etcd'}",
            f"--listen-client-urls={layout.etcd_url}", f"--advertise-client-urls={layout.etcd_url}",
            f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=nodemesh={peer}", "--initial-cluster-state=new",
            "--logger=zap", "--log-outputs=stderr"]


def apiserver_argv(layout: Layout) -> list[str]:
    d = layout.pki_dir
    return [str(layout.bin / "kube-apiserver"),
            f"--etcd-servers={layout.etcd_url}",
            f"--bind-address={layout.apiserver_ip}", f"--advertise-address={layout.apiserver_ip}",
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
            "--profiling=false", VERBOSITY]


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
    return [*_controller(layout, "kube-controller-manager", pki.CONTROLLER_MANAGER, layout.controller_manager_port),
            "--controllers=*", "--use-service-account-credentials",
            f"--service-account-private-key-file={d / 'sa.key'}",
            f"--root-ca-file={d / 'ca.crt'}",
            f"--cluster-signing-cert-file={d / 'ca.crt'}", f"--cluster-signing-key-file={d / 'ca.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}", f"--cluster-cidr={CLUSTER_CIDR}"]


def scheduler_argv(layout: Layout) -> list[str]:
    return _controller(layout, "kube-scheduler", pki.SCHEDULER, layout.scheduler_port)
