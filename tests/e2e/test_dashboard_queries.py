"""Every query of every shipped dashboard returns data from a real cluster's Prometheus.

A cluster with `sim up --prometheus`, traffic of every kind a dashboard shows (meshed across
nodes and on one node, plaintext from outside the mesh, connections that fail), then each
panel target, with the template variables filled in as Grafana would (values taken from the
dashboards' own variable queries), is sent to Prometheus' HTTP API through the port forward:
each must return at least one series. A metric renamed on either side, a label the agents do
not set, a variable that lists nothing: each shows as a named, empty target. Nothing is
rendered: the queries are what a dashboard is.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest
from dashboard_queries import dashboards, fill, targets, variables
from eventually import eventually
from simcluster import NODEMESH, SimCluster, idle_pod, namespace, nodemesh, server_pod

from nodemesh.tools.sim.prometheus import query

pytestmark = [pytest.mark.e2e, pytest.mark.kernel]

SIM = "dash"
CATALOG = """
---
apiVersion: v1
kind: Service
metadata:
  name: catalog
  namespace: shop
spec:
  selector:
    app: catalog
  ports:
    - name: tcp
      port: 80
      targetPort: 8080
    - name: closed  # nobody listens on 9999: connections to it fail at the endpoint
      port: 81
      targetPort: 9999
"""
CLUSTER = (namespace("shop") + namespace("legacy", meshed=False)
           + idle_pod("client", "node-a", "shop", app="client", service_account="client")
           + server_pod("catalog-a", "node-a", {"app": "catalog"}, service_account="catalog")
           + server_pod("catalog-b", "node-b", {"app": "catalog"}, service_account="catalog")
           + idle_pod("batch", "node-b", "legacy", app="batch") + CATALOG)
# What a user would pick. The workload of a bare pod is the agent's call (Istio names a
# workload by its owner, else by the pod): either serves, as catalog-a both serves and calls.
NAMESPACE, WORKLOADS, NODE = "shop", ("catalog", "catalog-a"), "node-a"
_LABEL_VALUES = re.compile(r"label_values\((?P<match>.+),\s*(?P<label>\w+)\)")
_METRIC = re.compile(r"\b(?:istio|nodemesh|process)_[a-z0-9_]+\b")
_FAMILY_SUFFIX = re.compile(r"_(?:total|bucket)$")  # a counter's or a histogram's series


class PrometheusCluster(SimCluster):
    """A sim brought up with its Prometheus, on a free port of the host's loopback."""

    def __init__(self, name: str, file: Path) -> None:
        super().__init__(name, file)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        nodemesh("sim", "up", "-f", str(self.file), "--name", self.name, "--prometheus",
                 "--prometheus-port", str(self.port), timeout=180)

    def api(self, path: str, **params: str) -> Any:
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}",
                                    timeout=10) as response:
            return json.load(response)["data"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusCluster]:
    file = tmp_path_factory.mktemp(SIM) / "cluster.yaml"
    file.write_text(CLUSTER)
    cluster = PrometheusCluster(SIM, file)
    held = None
    try:
        cluster.up()
        _send_traffic(cluster)
        held = _hold_a_tunnel(cluster)
        yield cluster
    finally:
        if held is not None:
            held.kill()
            held.wait()
        cluster.down()


def _hold_a_tunnel(cluster: PrometheusCluster) -> subprocess.Popen[str]:
    """A connection from node-a to node-b kept open, so that the tunnel panels have a tunnel to
    show however long the checks take (an idle one closes after a minute)."""
    target = cluster.pod_ip("shop/catalog-b")
    held = subprocess.Popen(
        [NODEMESH, "sim", "exec", "--name", cluster.name, "shop/client", "--", "python3", "-c",
         f"import socket,time; s=socket.create_connection(('{target}',8080)); s.recv(100); "
         "print('open', flush=True); time.sleep(600)"], stdout=subprocess.PIPE, text=True)
    assert held.stdout is not None and held.stdout.readline().strip() == "open"
    return held


def _send_traffic(cluster: PrometheusCluster) -> None:
    vip = cluster.vip("shop/catalog")
    meshed = cluster.client("shop/client", f"{vip}:80", count=20, payload=1024)
    assert meshed["failed"] == 0 and set(meshed["servers"]) == {"catalog-a", "catalog-b"}, meshed
    calls = cluster.client("shop/catalog-a", f"{vip}:80", count=10, payload=1024)
    assert calls["failed"] == 0, calls
    plaintext = cluster.client("legacy/batch", f"{cluster.pod_ip('shop/catalog-a')}:8080", count=5)
    assert plaintext["servers"] == {"catalog-a": 5}, plaintext
    for pod in ("shop/client", "shop/catalog-a"):
        refused = cluster.client(pod, f"{vip}:81", count=4, timeout=5)
        assert refused["failed"] == 4, refused


def _all_up(cluster: PrometheusCluster) -> None:
    targets = cluster.api("targets")["activeTargets"]
    assert len(targets) == 3, targets
    down = [f"{t['labels']['job']} {t['labels']['instance']}: {t['lastError'] or 'not scraped yet'}"
            for t in targets if t["health"] != "up"]
    assert down == [], down


def _wait_until_scraped(cluster: PrometheusCluster) -> None:
    eventually(lambda: _all_up(cluster), timeout=30, interval=1,
               what="every target up (the agents' and the controller's /metrics, docs/telemetry.md)")


def test_prometheus_scrapes_every_agent_and_the_controller(cluster: PrometheusCluster) -> None:
    _wait_until_scraped(cluster)


def _label_values(cluster: PrometheusCluster, variable_query: str) -> list[str]:
    parsed = _LABEL_VALUES.fullmatch(variable_query)
    assert parsed, f"not a label_values() query: {variable_query}"
    return cluster.api(f"label/{parsed['label']}/values", **{"match[]": parsed["match"]})


def _chosen_values(cluster: PrometheusCluster) -> dict[str, str]:
    """The variables' values, each checked to be among what its own query lists."""
    chosen = {"namespace": NAMESPACE, "node": NODE}
    for name, board in dashboards().items():
        for variable in variables(board).values():
            if variable["type"] != "query":
                continue
            listed = _label_values(cluster, fill(variable["query"], chosen))
            if variable["name"] == "workload":
                chosen["workload"] = next((w for w in WORKLOADS if w in listed), "")
            assert chosen.get(variable["name"]) in listed, (name, variable["name"], listed)
    return chosen


def test_every_panel_query_of_every_dashboard_returns_data(cluster: PrometheusCluster) -> None:
    _wait_until_scraped(cluster)
    values = eventually(lambda: _chosen_values(cluster), timeout=30, interval=1,
                        what="the variables' queries to list the cluster's namespace, workload and node")
    all_targets = [t for name, board in dashboards().items() for t in targets(name, board)]

    def none_empty() -> None:
        empty = [str(t) for t in all_targets if not query(cluster.url, fill(t.expr, values))]
        assert empty == [], f"{len(empty)} of {len(all_targets)} targets empty: {empty}"

    # as soon as every series has been scraped twice (rate() needs two samples)
    eventually(none_empty, timeout=60, interval=2, what="every panel to show data")


def test_every_metric_the_dashboards_name_is_one_prometheus_scraped(cluster: PrometheusCluster) -> None:
    """Also the ones only an `or vector(0)` fallback would hide (a refusal never happened)."""
    _wait_until_scraped(cluster)
    named = {metric for board in dashboards().values() for t in targets("", board)
             for metric in _METRIC.findall(t.expr)}
    families = set(cluster.api("metadata"))  # as the targets' TYPE lines name them
    assert {m for m in named if m not in families and _FAMILY_SUFFIX.sub("", m) not in families} == set()
