"""Per-namespace mTLS mode on a simulated cluster: plaintext from outside the mesh, captured into 15006.

Clients in a namespace without the mesh dial meshed pods' IPs directly. STRICT refuses them at
once; PERMISSIVE lets them through, and the destination agent shows them as plaintext. The
proof is what the agents recorded (their admin API), not only what the client saw. With the
destination's agent killed or stopped, STRICT still refuses (the pinned capture links do), and
a restarted agent takes over.
"""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Callable, Iterator

import pytest

from simcluster import SimCluster, idle_pod, module_cluster, namespace, server_pod
from test_traffic import exec_argv

from nodemesh.agent.ebpf.capture import links_dir, pinned
from nodemesh.tools.sim.cleanup import leftovers

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


def kill_agent(cluster: SimCluster, node: str) -> None:
    """kill -9: nothing of the agent's own shutdown runs."""
    os.kill(cluster.status()["processes"][f"agent/{node}"]["pid"], signal.SIGKILL)
    cluster.wait_for("the agent to die", lambda: not cluster.status()["processes"][f"agent/{node}"]["alive"])


def stop_agent(cluster: SimCluster, node: str) -> None:
    """`nodemesh sim stop`: SIGTERM, the agent's own shutdown."""
    cluster.stop(f"agent/{node}")


@pytest.mark.parametrize("agent_goes", [kill_agent, stop_agent], ids=["kill -9", "SIGTERM"])
def test_without_its_agent_a_strict_pod_refuses_plaintext_until_a_new_agent_takes_over(
        cluster: SimCluster, agent_goes: Callable[[SimCluster, str], None]) -> None:
    """Last in this module: each case takes node-b's agent away and starts it again."""
    safe, store = f"{cluster.pod_ip('vault/safe')}:8080", f"{cluster.pod_ip('shop/store')}:8080"
    agent_goes(cluster, "node-b")
    try:
        assert pinned(links_dir(cluster.names.node_bpf_dir("node-b"))) == sorted(
            cluster.pod_ip(p) for p in ("vault/safe", "shop/store"))
        assert any(item.startswith("BPF pins") for item in leftovers(cluster.names))  # what `down` removes
        for client in PLAINTEXT_CLIENTS:
            tally = cluster.client(client, safe, count=6, timeout=3)
            assert tally["ok"] == 0 and tally["failed"] == 6, tally
            assert all(reason.startswith("ConnectionRefusedError") for reason in tally["errors"]), tally
            tally = cluster.client(client, store, count=3, timeout=3)  # PERMISSIVE: the app, directly
            assert tally["servers"] == {"store": 3}, tally
    finally:
        cluster.start("agent/node-b")  # waits until it is ready: every pod enrolled
    for client in PLAINTEXT_CLIENTS:
        tally = cluster.client(client, safe, count=3, timeout=3)
        assert tally["ok"] == 0 and tally["failed"] == 3, tally
    assert cluster.totals("node-b").get(("inbound", "refused_plaintext"), 0) == 6  # the new agent refused them
    test_permissive_lets_plaintext_through(cluster, PLAINTEXT_CLIENTS[0])  # captured into 15006 again
    test_meshed_clients_still_reach_a_strict_pod(cluster)
