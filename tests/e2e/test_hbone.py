"""Mutual-TLS HBONE between nodes on a whole simulated cluster, seen from the agents and the CLI.

(What the wire shows is tested in tests/integration/test_hbone_path.py, on the same topology.)
"""

from __future__ import annotations

import json
import subprocess
from typing import Iterator

import pytest

from simcluster import NODEMESH, SimCluster, idle_pod, module_cluster, namespace, nodemesh, server_pod, service

pytestmark = [pytest.mark.e2e, pytest.mark.kernel]

CLUSTER = "".join([
    namespace("shop"),
    namespace("legacy", meshed=False),
    service("far", "catalog-b"),
    service("near", "catalog-a"),
    idle_pod("client", "node-a", "shop", app="client", service_account="client"),
    server_pod("catalog-a", "node-a", {"app": "catalog-a"}, service_account="catalog"),
    server_pod("catalog-b", "node-b", {"app": "catalog-b"}, service_account="catalog"),
    server_pod("batch", "node-b", {"app": "batch"}, namespace="legacy", service_account="default"),
    idle_pod("old-client", "node-a", "legacy", app="old-client"),
])

CLIENT_SA = "spiffe://cluster.local/ns/shop/sa/client"
CATALOG_SA = "spiffe://cluster.local/ns/shop/sa/catalog"

@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimCluster]:
    yield from module_cluster(request, tmp_path_factory, "e2ehbone", CLUSTER)


def test_the_destination_agent_sees_the_client_identity(cluster: SimCluster) -> None:
    vip = cluster.vip("shop/far")
    hold = subprocess.Popen(
        [NODEMESH, "sim", "exec", "--name", cluster.name, "shop/client", "--", "python3", "-c",
         f"import socket,time; s=socket.create_connection(('{vip}',80)); s.recv(100); print('open', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert hold.stdout.readline().strip() == "open"
        inbound = [c for c in cluster.admin("node-b", "/connections")["in_flight"] if c["direction"] == "inbound"]
        outbound = [c for c in cluster.admin("node-a", "/connections")["in_flight"] if c["direction"] == "outbound"]
        assert inbound and outbound, (inbound, outbound)
        assert inbound[0]["source_identity"] == CLIENT_SA
        assert inbound[0]["connection_security_policy"] == "mutual_tls"
        assert outbound[0]["destination_identity"] == CATALOG_SA
        assert outbound[0]["via"] == "hbone"
    finally:
        hold.kill()
        hold.wait()


def test_same_node_skips_tls_but_keeps_identity(cluster: SimCluster) -> None:
    before = cluster.admin("node-a", "/tunnels")["handshakes"]
    tally = cluster.client("shop/client", f"{cluster.vip('shop/near')}:80", count=5)
    assert tally["servers"] == {"catalog-a": 5}, tally
    assert cluster.admin("node-a", "/tunnels")["handshakes"] == before  # no TLS for the same node
    local = [e for e in cluster.admin("node-a", "/connections")["by_destination"]
             if e["destination"] == "shop/catalog-a" and e["direction"] == "outbound"]
    assert local and local[0]["count"] >= 5


def test_sequential_connections_share_a_bounded_number_of_tunnels(cluster: SimCluster) -> None:
    before = cluster.admin("node-a", "/tunnels")["handshakes"]
    tally = cluster.client("shop/client", f"{cluster.vip('shop/far')}:80", count=200)
    assert tally["ok"] == 200, tally
    handshakes = cluster.admin("node-a", "/tunnels")["handshakes"] - before
    assert handshakes <= 2, f"200 connections cost {handshakes} TLS handshakes"
    tunnels = [t for t in cluster.admin("node-a", "/tunnels")["tunnels"] if t["direction"] == "outbound"]
    assert 1 <= len(tunnels) <= 4 and sum(t["streams_total"] for t in tunnels) >= 200, tunnels


def test_the_cli_shows_tunnels_and_certificates(cluster: SimCluster) -> None:
    cluster.client("shop/client", f"{cluster.vip('shop/far')}:80", count=1)
    table = nodemesh("tunnels", "--sim", cluster.name).stdout
    assert "node node-a:" in table and CLIENT_SA in table and "TLSv1.3" in table, table
    tunnels = json.loads(nodemesh("tunnels", "--sim", cluster.name, "--node", "node-b", "-o", "json").stdout)
    assert any(t["source_identity"] == CLIENT_SA for t in tunnels["node-b"])
    certs = json.loads(nodemesh("certs", "--sim", cluster.name, "-o", "json").stdout)
    identities = {c["identity"] for node in certs.values() for c in node}
    assert identities == {CLIENT_SA, CATALOG_SA}  # legacy pods are not meshed: no certificates
    assert all(c["valid"] and c["renew_in_seconds"] > 0 for node in certs.values() for c in node)
    assert "RENEW IN" in nodemesh("certs", "--sim", cluster.name).stdout
