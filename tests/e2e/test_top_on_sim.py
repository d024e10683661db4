"""``nodemesh top`` on a two-node simulated cluster: what it shows is the agents' own metrics
(GET /metrics on 15020 in each node's namespace), while clients run in pods.

Traffic runs steadily in the background (one client run after another), so that whichever
interval top scrapes over has connections in it.
"""

from __future__ import annotations

import json
import subprocess
import threading
from contextlib import contextmanager
from typing import Any, Iterator

import pytest

from simcluster import NODEMESH, SimCluster, idle_pod, module_cluster, namespace, nodemesh, server_pod, service

pytestmark = [pytest.mark.e2e, pytest.mark.kernel]

CATALOG = "catalog.shop.svc.cluster.local"
GHOST = "ghost.shop.svc.cluster.local"

CLUSTER = "".join([
    namespace("shop"),
    idle_pod("client", "node-a", "shop"),
    server_pod("catalog", "node-b", {"app": "catalog"}),
    service("catalog", "catalog"),
    idle_pod("ghost", "node-b", "shop", app="ghost"),  # runs, but nothing listens on 8080
    service("ghost", "ghost"),
])


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimCluster]:
    yield from module_cluster(request, tmp_path_factory, "topx", CLUSTER)


@contextmanager
def steady_traffic(cluster: SimCluster, service_name: str, **client: Any) -> Iterator[None]:
    """shop/client connects to the service, run after run, until the block ends."""
    target = f"{cluster.vip(f'shop/{service_name}')}:80"
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            cluster.client("shop/client", target, **client)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=60)


def top(cluster: SimCluster, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return nodemesh("top", "--name", cluster.name, *args, timeout=60, check=check)


def snapshot(cluster: SimCluster, *args: str) -> dict[str, Any]:
    return json.loads(top(cluster, "-o", "json", "--interval", "3", *args).stdout)


def row_to(found: dict[str, Any], *destinations: str) -> dict[str, Any]:
    """shop/client's one row to any of ``destinations``."""
    rows = [r for r in found["rows"] if r["source"] == "shop/client" and r["destination"] in destinations]
    assert len(rows) == 1, found
    return rows[0]


def busy_row(cluster: SimCluster, *args: str, to: tuple[str, ...] = (CATALOG,)) -> dict[str, Any]:
    """The row of shop/client's traffic to the catalog while it flows, both agents answering."""
    with steady_traffic(cluster, "catalog", count=20, payload=2048):
        def busy() -> dict[str, Any]:
            found = snapshot(cluster, *args)
            assert found["nodes"] == {"node-a": {"reachable": True}, "node-b": {"reachable": True}}
            row = row_to(found, *to)
            assert row["connections_per_second"] > 0, row
            return row

        return cluster.wait_for(f"top {' '.join(args)} to see connections to the catalog", busy, timeout=40)


def test_rates_mtls_and_latency_of_traffic_to_a_service(cluster: SimCluster) -> None:
    row = busy_row(cluster)
    assert row["destination_kind"] == "service"
    assert row["connection_security_policy"] == "mutual_tls"  # node-a to node-b: HBONE
    assert row["bytes_to_destination_per_second"] > 0 and row["bytes_from_destination_per_second"] > 0, row
    assert row["failures_per_second"] == {}, row
    latency = row["connect_latency_seconds"]
    assert 0 < latency["p50"] <= latency["p99"] < 5, row


def test_the_destination_reporter_sees_the_same_connections_from_the_server_side(cluster: SimCluster) -> None:
    """The server's agent names the client from its certificate; whether it knows the service
    the client asked for is its own affair: the row is to the service or to the workload."""
    row = busy_row(cluster, "--reporter", "destination", to=(CATALOG, "shop/catalog"))
    assert row["connection_security_policy"] == "mutual_tls", row
    assert row["bytes_to_destination_per_second"] > 0, row


def test_failures_show_by_response_flag(cluster: SimCluster) -> None:
    with steady_traffic(cluster, "ghost", count=5, timeout=2):
        def failing() -> dict[str, Any]:
            row = row_to(snapshot(cluster), GHOST)
            assert row["failures_per_second"], row
            return row

        row = cluster.wait_for(f"top to see failures to {GHOST}", failing, timeout=40)
    assert set(row["failures_per_second"]) == {"CONNECT"}, row  # refused behind the destination's agent


def test_an_open_connection_is_active(cluster: SimCluster) -> None:
    vip = cluster.vip("shop/catalog")
    hold = subprocess.Popen(
        [NODEMESH, "sim", "exec", "--name", cluster.name, "shop/client", "--", "python3", "-c",
         f"import socket,time; s=socket.create_connection(('{vip}',80)); s.recv(100); print('open', flush=True); "
         "time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert hold.stdout.readline().strip() == "open"
        found = json.loads(top(cluster, "-o", "json", "--interval", "1").stdout)
        assert row_to(found, CATALOG)["active_connections"] >= 1, found
    finally:
        hold.kill()
        hold.wait()


def test_the_table_shows_the_rows(cluster: SimCluster) -> None:
    cluster.client("shop/client", f"{cluster.vip('shop/catalog')}:80", count=1)
    table = top(cluster, "--once", "--interval", "1").stdout
    assert "SOURCE" in table and "P99" in table, table
    assert "shop/client" in table and CATALOG in table, table


def test_an_agent_that_is_down_is_marked_and_the_others_are_shown(cluster: SimCluster) -> None:
    cluster.client("shop/client", f"{cluster.vip('shop/catalog')}:80", count=1)
    cluster.stop("agent/node-b")
    try:
        result = top(cluster, "-o", "json", "--interval", "1", check=False)
    finally:
        cluster.start("agent/node-b")
    assert result.returncode == 1, result
    assert result.stderr == "Error: no answer from the agent on node-b (the reason is above)\n"
    found = json.loads(result.stdout)
    assert found["nodes"]["node-a"] == {"reachable": True}
    assert found["nodes"]["node-b"]["reachable"] is False
    assert "agent metrics endpoint" in found["nodes"]["node-b"]["error"], found
    row_to(found, CATALOG)  # node-a's agent still answers for its client
