"""Per-namespace mTLS mode on a simulated cluster: plaintext from outside the mesh, captured into 15006.

Clients in a namespace without the mesh dial meshed pods' IPs directly. STRICT refuses them at
once; PERMISSIVE lets them through, and the destination agent shows them as plaintext. The
proof is what the agents recorded (their admin API), not only what the client saw.
"""

from __future__ import annotations

import subprocess
from typing import Iterator

import pytest

from simcluster import SimCluster, idle_pod, module_cluster, namespace, server_pod
from test_traffic import exec_argv

pytestmark = [pytest.mark.e2e, pytest.mark.kernel]

CLUSTER = "".join([
    namespace("vault", mtls_mode="STRICT"),
    namespace("shop", mtls_mode="PERMISSIVE"),
    namespace("legacy", meshed=False),
    server_pod("safe", "node-b", {"app": "safe"}, namespace="vault"),
    server_pod("store", "node-b", {"app": "store"}, namespace="shop"),
    idle_pod("teller", "node-a", "vault"),
    idle_pod("outsider", "node-a", "legacy"),  # plaintext from another node
    idle_pod("neighbour", "node-b", "legacy"),  # plaintext from the server's own node
])

PLAINTEXT_CLIENTS = ["legacy/outsider", "legacy/neighbour"]


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimCluster]:
    yield from module_cluster(request, tmp_path_factory, "e2emtls", CLUSTER)


@pytest.mark.parametrize("client", PLAINTEXT_CLIENTS)
def test_permissive_lets_plaintext_through(cluster: SimCluster, client: str) -> None:
    before = cluster.totals("node-b").get(("inbound", "ok"), 0)
    tally = cluster.client(client, f"{cluster.pod_ip('shop/store')}:8080", count=5, payload=4096)
    assert tally["failed"] == 0 and tally["servers"] == {"store": 5}, tally
    assert cluster.totals("node-b").get(("inbound", "ok"), 0) - before == 5  # all through 15006


@pytest.mark.parametrize("client", PLAINTEXT_CLIENTS)
def test_strict_refuses_plaintext_at_once(cluster: SimCluster, client: str) -> None:
    before = cluster.totals("node-b").get(("inbound", "refused_plaintext"), 0)
    tally = cluster.client(client, f"{cluster.pod_ip('vault/safe')}:8080", count=3, timeout=5)
    assert tally["ok"] == 0 and tally["failed"] == 3, tally
    assert tally["seconds"] < 2, f"3 refusals took {tally['seconds']}s: something waits for a timeout"
    assert cluster.totals("node-b").get(("inbound", "refused_plaintext"), 0) - before == 3


def test_the_agent_shows_a_plaintext_connection_as_such(cluster: SimCluster) -> None:
    store = cluster.pod_ip("shop/store")
    hold = subprocess.Popen(
        [*exec_argv(cluster, "legacy/outsider"), "python3", "-c",
         f"import socket,time; s=socket.create_connection(('{store}',8080)); s.recv(100); "
         "print('open', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert hold.stdout is not None and hold.stdout.readline().strip() == "open"
        [conn] = [c for c in cluster.admin("node-b", "/connections")["in_flight"] if c["via"] == "plaintext"]
        assert conn["direction"] == "inbound" and conn["connection_security_policy"] == "none"
        assert conn["source"].split(":")[0] == cluster.pod_ip("legacy/outsider")
        assert conn["original_dst"] == f"{store}:8080" and conn["destination"] == "shop/store"
    finally:
        hold.kill()
        hold.wait()


def test_meshed_clients_still_reach_a_strict_pod(cluster: SimCluster) -> None:
    before = cluster.inbound_to("node-b", "vault/safe")
    tally = cluster.client("vault/teller", f"{cluster.pod_ip('vault/safe')}:8080", count=3)
    assert tally["failed"] == 0 and tally["servers"] == {"safe": 3}, tally
    assert cluster.inbound_to("node-b", "vault/safe") - before == 3
