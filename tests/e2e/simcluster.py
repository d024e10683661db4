"""A whole simulated cluster for end-to-end tests, driven as a user drives it: the CLI.

``SimCluster`` brings a cluster up from YAML with ``nodemesh sim up``, runs clients in pods
with ``nodemesh sim exec``, reads the agents' admin API, and always tears down with
``nodemesh sim down``, checking that nothing is left behind.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
from eventually import eventually

from nodemesh.model import MESH_LABEL, MTLS_MODE_LABEL
from nodemesh.agent.ports import METRICS_PORT
from nodemesh.tools.admin_client import fetch, get_text
from nodemesh.tools.sim.cleanup import leftovers
from nodemesh.tools.sim.names import SimNames

NODEMESH = str(Path(sys.executable).parent / "nodemesh")

SERVER = '[python3, -m, nodemesh.tools.apps.server, --port, "8080"]'
IDLE = "[sleep, infinity]"


# -- cluster YAML, one way for every e2e module ---------------------------------------------
def namespace(name: str, meshed: bool = True, mtls_mode: str | None = None) -> str:
    """A Namespace document: in the mesh unless told otherwise, with an mTLS mode if given."""
    labels = {MESH_LABEL: "enabled"} if meshed else {}
    if mtls_mode:
        labels[MTLS_MODE_LABEL] = mtls_mode
    label_lines = "".join(f"\n    {k}: {v}" for k, v in labels.items())
    return f"""
---
apiVersion: v1
kind: Namespace
metadata:
  name: {name}""" + (f"\n  labels:{label_lines}" if labels else "") + "\n"


def pod_yaml(name: str, namespace: str, node: str, labels: dict[str, str], command: str,
             service_account: str | None = None) -> str:
    """A Pod document; no service account means the namespace's default one."""
    label_lines = "".join(f"\n    {k}: {v}" for k, v in labels.items())
    account = f"\n  serviceAccountName: {service_account}" if service_account else ""
    return f"""
---
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: {namespace}
  labels:{label_lines}
spec:
  nodeName: {node}{account}
  containers:
    - name: main
      command: {command}
"""


def server_pod(name: str, node: str, labels: dict[str, str], namespace: str = "shop",
               service_account: str | None = None) -> str:
    """The example server on 8080; its service account is its own name unless given."""
    return pod_yaml(name, namespace, node, labels, SERVER, service_account or name)


def idle_pod(name: str, node: str, namespace: str, app: str = "idle", service_account: str | None = None) -> str:
    return pod_yaml(name, namespace, node, {"app": app}, IDLE, service_account)


def service(name: str, selector: str, namespace: str = "shop") -> str:
    return f"""
---
apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: {namespace}
spec:
  selector:
    app: {selector}
  ports:
    - port: 80
      targetPort: 8080
"""


def nodemesh(*args: str, timeout: float = 120, check: bool = True, input: str | None = None
             ) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([NODEMESH, *args], capture_output=True, text=True, timeout=timeout, input=input)
    if check and result.returncode != 0:
        raise AssertionError(f"nodemesh {' '.join(args)} exited {result.returncode}\n"
                             f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


class SimCluster:
    def __init__(self, name: str, file: Path, controller_args: tuple[str, ...] = ()) -> None:
        self.name = name
        self.file = file
        self.names = SimNames(name)
        self.controller_args = controller_args

    def up(self) -> None:
        nodemesh("sim", "up", "-f", str(self.file), "--name", self.name,
                 *(f"--controller-arg={a}" for a in self.controller_args), timeout=180)

    def down(self) -> None:
        nodemesh("sim", "down", "--name", self.name, timeout=120)
        left = leftovers(self.names)
        assert left == [], f"sim down left {left}"

    def status(self) -> dict[str, Any]:
        return json.loads(nodemesh("sim", "status", "--name", self.name, "-o", "json").stdout)

    def vip(self, service: str) -> str:
        return self.status()["services"][service]["vip"]

    def pod_ip(self, pod: str) -> str:
        return self.status()["pods"][pod]["ip"]

    def exec(self, pod: str, *command: str, timeout: float = 60, check: bool = True
             ) -> subprocess.CompletedProcess[str]:
        return nodemesh("sim", "exec", "--name", self.name, pod, "--", *command, timeout=timeout, check=check)

    def client(self, pod: str, target: str, count: int = 10, concurrency: int = 1, payload: int = 0,
               timeout: float = 5.0) -> dict[str, Any]:
        """Run the example client in ``pod``; its JSON tally."""
        result = self.exec(pod, "python3", "-m", "nodemesh.tools.apps.client", target,
                           "--count", str(count), "--concurrency", str(concurrency),
                           "--payload", str(payload), "--timeout", str(timeout), "-o", "json",
                           check=False, timeout=timeout * count + 60)
        try:
            return json.loads(result.stdout)
        except json.JSONDecodeError:
            raise AssertionError(f"client in {pod} printed no tally:\n{result.stdout}\n{result.stderr}")

    def admin(self, node: str, path: str) -> Any:
        return fetch(SimNames.netns_path(self.names.node_netns(node)), path)

    def metrics_text(self, node: str, path: str = "/metrics") -> str:
        """The agent's Prometheus exposition, fetched inside its node's namespace as Prometheus would."""
        return get_text(SimNames.netns_path(self.names.node_netns(node)), path, METRICS_PORT, timeout=10)

    def metrics(self, node: str) -> list[Any]:
        from prometheus_client.parser import text_string_to_metric_families

        return list(text_string_to_metric_families(self.metrics_text(node)))

    def outbound_to(self, node: str, destination: str) -> int:
        return self._count(node, "outbound", destination)

    def inbound_to(self, node: str, destination: str) -> int:
        return self._count(node, "inbound", destination)

    def _count(self, node: str, direction: str, destination: str) -> int:
        table = self.admin(node, "/connections")
        return sum(e["count"] for e in table["by_destination"]
                   if e["direction"] == direction and e["destination"] == destination)

    def totals(self, node: str) -> dict[tuple[str, str], int]:
        return {(t["direction"], t["outcome"]): t["count"] for t in self.admin(node, "/connections")["totals"]}

    def stop(self, component: str) -> None:
        nodemesh("sim", "stop", "--name", self.name, component)

    def start(self, component: str) -> None:
        nodemesh("sim", "start", "--name", self.name, component)

    def log(self, component: str) -> str:
        return nodemesh("sim", "logs", "--name", self.name, component).stdout

    def wait_for(self, what: str, predicate: Any, timeout: float = 15.0, interval: float = 0.2) -> Any:
        """``eventually``, paced for a cluster: each try runs commands in pods or asks agents."""
        return eventually(predicate, timeout=timeout, interval=interval, what=what)


def module_cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                   name: str, yaml_text: str, controller_args: tuple[str, ...] = ()) -> Iterator[SimCluster]:
    """One cluster shared by a module's tests (bringing one up costs seconds)."""
    file = tmp_path_factory.mktemp(name) / "cluster.yaml"
    file.write_text(yaml_text)
    cluster = SimCluster(name, file, controller_args)
    try:
        cluster.up()
        yield cluster
    finally:
        cluster.down()
