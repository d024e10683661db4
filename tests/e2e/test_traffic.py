"""Traffic on a two-node simulated cluster: steering, original destinations, failures.

Proof that a connection went through the agents is what the agents saw (their admin API),
not what the client hoped.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest

from simcluster import SimCluster, idle_pod, module_cluster, namespace, server_pod, service

pytestmark = [pytest.mark.e2e, pytest.mark.kernel]


ECHOES = {"echo-1": "node-a", "echo-2": "node-b", "echo-3": "node-a", "echo-4": "node-b"}

CLUSTER = "".join([
    namespace("shop"),
    namespace("legacy", meshed=False),
    idle_pod("client", "node-a", "shop"),
    idle_pod("client2", "node-b", "shop"),
    server_pod("catalog-a", "node-a", {"app": "catalog"}),
    server_pod("catalog-b", "node-b", {"app": "catalog"}),
    service("catalog", "catalog"),
    *[server_pod(name, node, {"app": name}) + service(name, name) for name, node in ECHOES.items()],
    idle_pod("ghost", "node-b", "shop", app="ghost"),  # runs, but nothing listens on 8080
    service("ghost", "ghost"),
    server_pod("batch", "node-b", {"app": "batch"}, namespace="legacy"),
    idle_pod("legacy-client", "node-a", "legacy"),
])


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimCluster]:
    yield from module_cluster(request, tmp_path_factory, "e2etraffic", CLUSTER)


def test_cross_node_service_traffic_goes_through_both_agents(cluster: SimCluster) -> None:
    before_out = cluster.outbound_to("node-a", "shop/catalog-b")
    before_in = cluster.inbound_to("node-b", "shop/catalog-b")
    tally = cluster.client("shop/client", f"{cluster.vip('shop/catalog')}:80", count=20, payload=4096)
    assert tally["failed"] == 0, tally
    assert set(tally["servers"]) == {"catalog-a", "catalog-b"}, tally  # round robin over both nodes
    to_b = tally["servers"]["catalog-b"]
    assert cluster.outbound_to("node-a", "shop/catalog-b") - before_out == to_b
    assert cluster.inbound_to("node-b", "shop/catalog-b") - before_in == to_b


def test_destination_agent_names_the_source(cluster: SimCluster) -> None:
    """Hold a connection open and look at it in flight on both agents."""
    vip = cluster.vip("shop/echo-2")
    hold = subprocess.Popen(
        [*exec_argv(cluster, "shop/client"), "python3", "-c",
         f"import socket,time; s=socket.create_connection(('{vip}',80)); s.recv(100); print('open', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert hold.stdout.readline().strip() == "open"
        outbound = [c for c in cluster.admin("node-a", "/connections")["in_flight"]
                    if c["direction"] == "outbound" and c["destination"] == "shop/echo-2"]
        inbound = [c for c in cluster.admin("node-b", "/connections")["in_flight"]
                   if c["direction"] == "inbound" and c["destination"] == "shop/echo-2"]
        assert outbound and outbound[0]["original_dst"] == f"{vip}:80" and outbound[0]["via"] == "hbone"
        # idle pods here run as the namespace's default service account
        assert inbound and inbound[0]["source_identity"] == "spiffe://cluster.local/ns/shop/sa/default"
    finally:
        hold.kill()
        hold.wait()


def exec_argv(cluster: SimCluster, pod: str) -> list[str]:
    from simcluster import NODEMESH

    return [NODEMESH, "sim", "exec", "--name", cluster.name, pod, "--"]


def test_meshed_pod_to_a_non_mesh_address_is_not_steered(cluster: SimCluster) -> None:
    before = cluster.totals("node-a")
    tally = cluster.client("shop/client", f"{cluster.pod_ip('legacy/batch')}:8080", count=5)
    assert tally["failed"] == 0 and tally["servers"] == {"batch": 5}, tally
    assert cluster.totals("node-a") == before  # the agent saw none of them


def test_pod_in_a_non_meshed_namespace_is_not_steered(cluster: SimCluster) -> None:
    before_a = cluster.totals("node-a")
    before_plaintext = cluster.inbound_to("node-b", "shop/catalog-b")
    tally = cluster.client("legacy/legacy-client", f"{cluster.pod_ip('shop/catalog-b')}:8080", count=5)
    assert tally["failed"] == 0 and tally["servers"] == {"catalog-b": 5}, tally
    assert cluster.totals("node-a") == before_a  # its own node's agent never saw them
    # the destination's agent takes them as plaintext from outside the mesh (PERMISSIVE)
    assert cluster.inbound_to("node-b", "shop/catalog-b") - before_plaintext == 5
    # and a service VIP means nothing to it: only the mesh makes VIPs work
    unsteered = cluster.client("legacy/legacy-client", f"{cluster.vip('shop/catalog')}:80", count=1, timeout=2)
    assert unsteered["failed"] == 1, unsteered


def test_original_destinations_under_500_concurrent_connections(cluster: SimCluster) -> None:
    """Two pods, four destinations each, all at once: every connection reaches the pod it asked for."""
    vips = {name: cluster.vip(f"shop/{name}") for name in ECHOES}
    jobs = [(pod, name) for pod in ("shop/client", "shop/client2") for name in ECHOES]
    per_job = 63  # 8 jobs x 63 = 504 connections, each job's all open together

    def run(job: tuple[str, str]) -> tuple[str, dict]:
        pod, name = job
        return name, cluster.client(pod, f"{vips[name]}:80", count=per_job, concurrency=per_job,
                                    payload=2048, timeout=20)

    with ThreadPoolExecutor(len(jobs)) as pool:
        results = list(pool.map(run, jobs))
    for name, tally in results:
        # on failure: the client's reasons and each agent's counted outcomes say where it broke
        why = (name, tally["errors"], {n: cluster.totals(n) for n in ("node-a", "node-b")})
        assert tally["failed"] == 0, why
        assert tally["servers"] == {name: per_job}, (name, tally)


def test_an_endpoint_that_is_not_listening_fails_fast(cluster: SimCluster) -> None:
    tally = cluster.client("shop/client", f"{cluster.vip('shop/ghost')}:80", count=3, timeout=15)
    assert tally["failed"] == 3 and tally["ok"] == 0, tally
    assert tally["seconds"] < 3, f"3 failures took {tally['seconds']}s: something waits for a timeout"
    assert cluster.totals("node-b").get(("inbound", "app_unavailable"), 0) >= 3


def test_a_service_port_that_does_not_exist_is_refused(cluster: SimCluster) -> None:
    tally = cluster.client("shop/client", f"{cluster.vip('shop/catalog')}:81", count=1, timeout=10)
    assert tally["failed"] == 1 and tally["seconds"] < 2, tally


def attached_programs(cluster: SimCluster, node: str) -> set[str]:
    """Names of the programs attached to the node's cgroup, as bpftool reports them."""
    cgroup = str(cluster.names.node_cgroup(node))
    out = subprocess.run(["bpftool", "-j", "cgroup", "show", cgroup], capture_output=True, text=True,
                         check=True).stdout
    return {p["name"] for p in json.loads(out)} if out.strip() else set()


def test_agents_hold_the_programs_without_the_compiler(cluster: SimCluster) -> None:
    """bcc and LLVM stay in the loader child: a running, steering agent has neither mapped."""
    for node in ("node-a", "node-b"):
        pid = cluster.status()["processes"][f"agent/{node}"]["pid"]
        libraries = {line.split()[-1] for line in Path(f"/proc/{pid}/maps").read_text().splitlines()
                     if "/" in line}
        assert not [lib for lib in libraries if "libbcc" in lib or "LLVM" in lib or "clang" in lib], libraries
        assert attached_programs(cluster, node) == {"steer_connect4", "steer_sockops", "steer_getpeername4"}


def test_stopping_an_agent_detaches_its_programs(cluster: SimCluster) -> None:
    """Last in this module: it stops and restarts node-a's agent."""
    assert attached_programs(cluster, "node-a") == {"steer_connect4", "steer_sockops", "steer_getpeername4"}
    catalog_b = f"{cluster.pod_ip('shop/catalog-b')}:8080"
    cluster.stop("agent/node-a")
    try:
        assert attached_programs(cluster, "node-a") == set()
        # with nothing attached, the client's connections go straight to the pod
        tally = cluster.client("shop/client", catalog_b, count=3)
        assert tally["servers"] == {"catalog-b": 3}, tally
    finally:
        cluster.start("agent/node-a")
    before = cluster.inbound_to("node-b", "shop/catalog-b")
    tally = cluster.client("shop/client", catalog_b, count=3)
    assert tally["servers"] == {"catalog-b": 3}, tally
    assert cluster.inbound_to("node-b", "shop/catalog-b") - before == 3  # steered again


def test_a_crashed_agent_fails_closed_and_a_restarted_one_takes_over(cluster: SimCluster) -> None:
    """kill -9 leaves the programs attached: meshed traffic is refused (not leaked around the
    mesh) until the agent restarts and replaces them."""
    os.kill(cluster.status()["processes"]["agent/node-b"]["pid"], signal.SIGKILL)
    cluster.wait_for("the agent to die", lambda: not cluster.status()["processes"]["agent/node-b"]["alive"])
    try:
        assert attached_programs(cluster, "node-b")  # still there: nobody detached them
        tally = cluster.client("shop/client2", f"{cluster.vip('shop/catalog')}:80", count=2, timeout=5)
        assert tally["ok"] == 0 and tally["seconds"] < 3, tally
    finally:
        cluster.start("agent/node-b")
    assert attached_programs(cluster, "node-b") == {"steer_connect4", "steer_sockops", "steer_getpeername4"}
    tally = cluster.client("shop/client2", f"{cluster.vip('shop/catalog')}:80", count=4)
    assert tally["failed"] == 0 and set(tally["servers"]) == {"catalog-a", "catalog-b"}, tally
