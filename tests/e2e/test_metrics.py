"""The agents' traffic metrics on a simulated cluster: exact counts from both reporters.

Real agents, real traffic: a client sends N bytes and the echo server answers its name line and
the same N bytes back, so each side's counters are known to the byte. Scraped from each agent's
:15020 inside its node's namespace, as Prometheus does (tests/e2e/test_dashboard_queries.py covers the
real Prometheus).
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Iterator

import pytest

from simcluster import NODEMESH, SimCluster, idle_pod, module_cluster, namespace, server_pod, service

from nodemesh.agent.proxy.traffic import LABELS

pytestmark = [pytest.mark.e2e, pytest.mark.kernel]

CLUSTER = "".join([
    namespace("shop"),
    namespace("legacy", meshed=False),
    idle_pod("client", "node-a", "shop", service_account="client"),
    server_pod("far", "node-b", {"app": "far", "version": "v2"}),
    service("far", "far"),
    server_pod("near", "node-a", {"app": "near"}),
    service("near", "near"),
    idle_pod("ghost", "node-b", "shop", app="ghost"),  # runs, but nothing listens on 8080
    service("ghost", "ghost"),
    idle_pod("outsider", "node-b", "legacy"),  # on the server's node: its agent knows it by IP
])
SHOP = "spiffe://cluster.local/ns/shop/sa"


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimCluster]:
    yield from module_cluster(request, tmp_path_factory, "e2emetrics", CLUSTER)


def series(cluster: SimCluster, node: str, name: str, **match: str) -> dict[tuple[str, ...], float]:
    """The samples of ``name`` whose labels include ``match``, keyed by all their label values."""
    out = {}
    for family in cluster.metrics(node):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in match.items()):
                out[tuple(sample.labels[k] for k in LABELS)] = sample.value
    return out


def total(cluster: SimCluster, node: str, name: str, **match: str) -> float:
    return sum(series(cluster, node, name, **match).values())


def test_cross_node_bytes_and_labels_from_both_reporters(cluster: SimCluster) -> None:
    count, payload = 5, 3000
    tally = cluster.client("shop/client", f"{cluster.vip('shop/far')}:80", count=count, payload=payload)
    assert tally["failed"] == 0, tally
    received = count * payload  # from the client
    sent = count * (len("far\n") + payload)  # toward it: the name line, then the echo
    match = {"destination_service": "far.shop.svc.cluster.local", "source_workload": "client"}
    for node, reporter in (("node-a", "source"), ("node-b", "destination")):
        def counted() -> None:
            closed = total(cluster, node, "istio_tcp_connections_closed_total", reporter=reporter, **match)
            assert closed == count, (node, closed)
        cluster.wait_for(f"{node} to count {count} closed", counted)
        [labels] = series(cluster, node, "istio_tcp_connections_opened_total", reporter=reporter, **match)
        values = dict(zip(LABELS, labels))
        assert {k: values[k] for k in (
            "source_workload_namespace", "source_principal", "destination_workload", "destination_principal",
            "destination_app", "destination_version", "destination_service_name",
            "destination_service_namespace", "connection_security_policy", "response_flags", "request_protocol",
        )} == {
            "source_workload_namespace": "shop", "source_principal": f"{SHOP}/client",
            "destination_workload": "far", "destination_principal": f"{SHOP}/far", "destination_app": "far",
            "destination_version": "v2", "destination_service_name": "far", "destination_service_namespace": "shop",
            "connection_security_policy": "mutual_tls", "response_flags": "-", "request_protocol": "tcp",
        }, node
        assert total(cluster, node, "istio_tcp_received_bytes_total", reporter=reporter, **match) == received
        assert total(cluster, node, "istio_tcp_sent_bytes_total", reporter=reporter, **match) == sent


def test_same_node_traffic_is_reported_by_the_one_agent_as_both_reporters(cluster: SimCluster) -> None:
    count, payload = 4, 1000
    tally = cluster.client("shop/client", f"{cluster.vip('shop/near')}:80", count=count, payload=payload)
    assert tally["failed"] == 0, tally
    match = {"destination_service": "near.shop.svc.cluster.local", "connection_security_policy": "mutual_tls"}
    for reporter in ("source", "destination"):
        cluster.wait_for(f"the {reporter}'s count", lambda: _assert_equal(
            total(cluster, "node-a", "istio_tcp_connections_closed_total", reporter=reporter, **match), count))
        assert total(cluster, "node-a", "istio_tcp_received_bytes_total", reporter=reporter, **match) == count * payload
        assert total(cluster, "node-a", "istio_tcp_sent_bytes_total", reporter=reporter, **match) == count * (
            len("near\n") + payload)
    assert total(cluster, "node-b", "istio_tcp_connections_opened_total", **match) == 0  # no other agent saw it


def test_plaintext_from_outside_the_mesh_is_security_policy_none(cluster: SimCluster) -> None:
    tally = cluster.client("legacy/outsider", f"{cluster.pod_ip('shop/far')}:8080", count=3, payload=10)
    assert tally["failed"] == 0, tally
    match = {"reporter": "destination", "destination_workload": "far", "connection_security_policy": "none"}
    cluster.wait_for("plaintext counted", lambda: _assert_equal(
        total(cluster, "node-b", "istio_tcp_connections_closed_total", **match), 3))
    [labels] = series(cluster, "node-b", "istio_tcp_connections_opened_total", **match)
    values = dict(zip(LABELS, labels))
    # the outsider's pod is in the model (by IP) but has no identity on this connection
    assert (values["source_workload"], values["source_workload_namespace"], values["source_principal"],
            values["destination_service"]) == ("outsider", "legacy", "unknown", "far.shop.svc.cluster.local")
    assert total(cluster, "node-b", "istio_tcp_received_bytes_total", **match) == 30


def test_a_refused_upstream_is_a_failure_with_a_response_flag_on_both_sides(cluster: SimCluster) -> None:
    tally = cluster.client("shop/client", f"{cluster.vip('shop/ghost')}:80", count=2, timeout=3)
    assert tally["failed"] == 2, tally
    match = {"destination_workload": "ghost", "response_flags": "CONNECT"}
    for node, reporter in (("node-a", "source"), ("node-b", "destination")):
        cluster.wait_for(f"{node} failure", lambda: _assert_equal(
            total(cluster, node, "istio_tcp_connections_failed_total", reporter=reporter, **match), 2))


def test_a_scrape_during_a_long_transfer_shows_its_bytes(cluster: SimCluster) -> None:
    """Bytes move while the connection is open, not only when it closes."""
    vip = cluster.vip("shop/far")
    chunk, chunks = 10_000, 3
    script = (f"import socket,sys,time; s=socket.create_connection(('{vip}',80)); s.recv(100)\n"
              f"for _ in range({chunks}):\n s.sendall(b'x'*{chunk}); sys.stdin.readline()\n"
              "s.close()")
    match = {"reporter": "source", "destination_service": "far.shop.svc.cluster.local"}
    before = total(cluster, "node-a", "istio_tcp_received_bytes_total", **match)
    hold = subprocess.Popen([NODEMESH, "sim", "exec", "--name", cluster.name, "shop/client", "--", "python3", "-c",
                             script], stdin=subprocess.PIPE, text=True)
    try:
        for sent in range(1, chunks + 1):
            cluster.wait_for(f"{sent} chunks counted while open", lambda: _assert_equal(
                total(cluster, "node-a", "istio_tcp_received_bytes_total", **match) - before, sent * chunk))
            assert hold.poll() is None  # still open
            hold.stdin.write("\n")
            hold.stdin.flush()
        assert hold.wait(30) == 0
    finally:
        hold.kill()
        hold.wait()
    assert total(cluster, "node-a", "istio_tcp_received_bytes_total", **match) - before == chunks * chunk


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool comes with scripts/setup.sh")
def test_promtool_accepts_every_agent_endpoint(cluster: SimCluster) -> None:
    for node in ("node-a", "node-b"):
        for path in ("/metrics", "/stats/prometheus"):
            text = cluster.metrics_text(node, path)
            result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
            # promtool's lint only warns (exit 0) about style; a malformed exposition fails
            assert result.returncode == 0, (node, path, result.stdout, result.stderr)


def _assert_equal(actual: float, expected: float) -> None:
    assert actual == expected, (actual, expected)
