"""A local control plane for tests: etcd, kube-apiserver and (by default) the controller manager
and scheduler, as child processes on 127.0.0.1 with free ports, in one folder.

Real components rather than a fake API server: what nodemesh relies on (TokenReview of bound
tokens carrying the node, EndpointSlices made by the controller manager, RBAC, the Node
authorizer, 410 Gone after a compaction) is exactly what a fake gets subtly wrong.
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Callable

from nodemesh.tools.bench.procstat import rss_mb
from nodemesh.tools.kube import pki
from nodemesh.tools.kube.binaries import KUBECTL, KubeError, bin_dir
from nodemesh.tools.kube.children import Child
from nodemesh.tools.kube.components import (APISERVER, CONTROLLER_MANAGER, ETCD, SCHEDULER, Layout,
                                            apiserver_argv, controller_manager_argv, etcd_argv, prepare,
                                            scheduler_argv)
from nodemesh.tools.kube.health import apiserver_ready, etcd_healthy, healthz, open_direct
from nodemesh.tools.kube.kubeconfig import write_kubeconfig

START_TIMEOUT = 120.0  # the API server is ready in ~20 s alone; a loaded 2-core host needs more


def free_port(ip: str = "127.0.0.1") -> int:
    """A port nobody listens on now (the component binds it a moment later)."""
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def local_layout(root: Path) -> Layout:
    """Everything on 127.0.0.1, on free ports, under ``root``."""
    return Layout(root=root, bin=bin_dir(), apiserver_ip="127.0.0.1", apiserver_port=free_port(),
                  etcd_client_port=free_port(), etcd_peer_port=free_port(),
                  controller_manager_port=free_port(), scheduler_port=free_port())


def _post_json(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with open_direct(request, timeout=30) as r:
        return json.loads(r.read())


class LocalControlPlane:
    """``with LocalControlPlane(tmp) as cp: cp.kubectl("get", "nodes")``; everything stops on exit."""

    def __init__(self, root: Path, controllers: bool = True) -> None:
        self.layout = local_layout(root)
        self.controllers = controllers
        self.pki = prepare(self.layout)
        self.children: dict[str, Child] = {}
        self.started_in: float | None = None  # seconds from the first process to all ready

    # -- where to reach it ------------------------------------------------------------------------

    @property
    def server(self) -> str:
        return self.layout.server

    @property
    def admin_kubeconfig(self) -> Path:
        return self.layout.kubeconfig(pki.ADMIN)

    def kubeconfig_for(self, user: pki.Credentials, name: str | None = None) -> Path:
        """A kubeconfig at this API server for the client certificate ``user``."""
        path = self.layout.root / f"{name or user.cert.stem}.kubeconfig"
        return write_kubeconfig(path, self.server, self.pki.ca_pem, user)

    def node_kubeconfig(self, node: str) -> Path:
        """A kubelet's kubeconfig: ``system:node:<node>`` (the Node authorizer scopes it to its node)."""
        return self.kubeconfig_for(self.pki.node_credentials(node), f"node-{node}")

    def kubectl(self, *args: str, input: str | None = None, kubeconfig: Path | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess:
        """Run kubectl as the cluster admin (or as ``kubeconfig``'s user); the caller checks ``returncode``."""
        return subprocess.run([str(KUBECTL), f"--kubeconfig={kubeconfig or self.admin_kubeconfig}", *args],
                              input=input, capture_output=True, text=True, timeout=timeout)

    # -- life cycle -------------------------------------------------------------------------------

    def __enter__(self) -> "LocalControlPlane":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        began = time.monotonic()
        try:
            self._start(ETCD, etcd_argv(self.layout), self._etcd_ready)
            self._start(APISERVER, apiserver_argv(self.layout), self._apiserver_ready)
            if self.controllers:
                self._start(CONTROLLER_MANAGER, controller_manager_argv(self.layout),
                            self._healthz(self.layout.controller_manager_port))
                self._start(SCHEDULER, scheduler_argv(self.layout), self._healthz(self.layout.scheduler_port))
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - began

    def stop(self) -> None:
        """Stop every component, last started first (etcd outlives the API server)."""
        for name in reversed(list(self.children)):
            self.children.pop(name).stop()

    def restart_apiserver(self) -> None:
        """Stop the API server and start it again (watches break; clients must resume or relist)."""
        self.children.pop(APISERVER).stop()
        self._start(APISERVER, apiserver_argv(self.layout), self._apiserver_ready)

    def compact_etcd(self, restart_apiserver: bool = True) -> int:
        """Compact etcd to its current revision and defragment, so older resourceVersions give 410 Gone.

        Through etcd's JSON gateway (etcd 3.4: /v3/kv/...), so no etcdctl is needed. The API
        server's watch cache still serves a window of recent events (a watch or an exact list
        from an old resourceVersion succeeds from it), so by default the API server is restarted
        too: its new cache starts at the current revision, and both get 410, as after a long
        disconnect from a real cluster. Returns the revision compacted to.
        """
        url = self.layout.etcd_url
        revision = int(_post_json(f"{url}/v3/kv/range",
                                  {"key": base64.b64encode(b"/").decode()})["header"]["revision"])
        _post_json(f"{url}/v3/kv/compaction", {"revision": revision, "physical": True})
        _post_json(f"{url}/v3/maintenance/defragment", {})
        if restart_apiserver:
            self.restart_apiserver()
        return revision

    def rss_mb(self) -> dict[str, float]:
        """Resident memory of each running component, MiB (/proc/<pid>/status VmRSS)."""
        return {name: rss_mb(child.pid) for name, child in self.children.items()}

    # -- starting and readiness -------------------------------------------------------------------

    def _start(self, name: str, argv: list[str], ready: Callable[[], bool]) -> None:
        child = Child(name, argv, self.layout.log(name))
        self.children[name] = child
        deadline = time.monotonic() + START_TIMEOUT
        while not ready():
            if not child.running():
                raise KubeError(f"{name} exited with status {child.process.returncode} while starting; "
                                f"the end of {child.log}:\n{child.tail()}")
            if time.monotonic() > deadline:
                raise KubeError(f"{name} was not ready after {START_TIMEOUT:.0f} s; "
                                f"the end of {child.log}:\n{child.tail()}")
            time.sleep(0.2)

    def _etcd_ready(self) -> bool:
        return etcd_healthy(self.layout.etcd_url)

    def _apiserver_ready(self) -> bool:
        return apiserver_ready(self.server, self.pki)

    def _healthz(self, port: int) -> Callable[[], bool]:
        return lambda: healthz(self.layout.apiserver_ip, port)
