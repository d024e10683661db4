"""Traffic metrics from the connection table, without sockets: labels, counts, live bytes, bounds."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from nodemesh.agent.proxy.authorizer import Authorizer
from nodemesh.agent.proxy.conntrack import INBOUND, OUTBOUND, ConnectionTable
from nodemesh.agent.proxy.relay import pair
from nodemesh.agent.telemetry.traffic import TrafficCollector
from nodemesh.model import Workload

CLIENT = Workload(uid="u1", name="client-5d8f7c9b4-abcde", namespace="shop", service_account="client",
                  node="node-a", ip="10.10.1.10", meshed=True, identity="spiffe://cluster.local/ns/shop/sa/client",
                  workload_name="client", canonical_service="client", canonical_revision="v1")
SERVER = Workload(uid="u2", name="catalog-b", namespace="shop", service_account="catalog",
                  node="node-b", ip="10.10.2.10", meshed=True, identity="spiffe://cluster.local/ns/shop/sa/catalog",
                  workload_name="catalog", canonical_service="catalog", canonical_revision="latest")


def scrape(table: ConnectionTable) -> dict[str, list[tuple[dict[str, str], float]]]:
    registry = CollectorRegistry()
    registry.register(TrafficCollector(table, Authorizer(lambda: None)))
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def outbound(table: ConnectionTable, via: str = "hbone"):
    conn = table.open(OUTBOUND, CLIENT.ref, "10.96.0.10:80")
    conn.source_workload, conn.source_identity = CLIENT, CLIENT.identity
    conn.destination_workload, conn.destination_identity = SERVER, SERVER.identity
    conn.service, conn.via, conn.connection_security_policy = "shop/catalog", via, "mutual_tls"
    return conn


def test_an_established_connection_counts_with_istio_labels_and_its_bytes_move_while_open() -> None:
    table = ConnectionTable()
    conn = outbound(table)
    conn.down, conn.up = pair(lambda pipe, exc: None)
    table.established(conn)
    conn.down.received, conn.up.received = 100, 2000  # 100 from the client, 2000 toward it
    metrics = scrape(table)
    [(labels, opened)] = metrics["istio_tcp_connections_opened_total"]
    assert opened == 1
    assert labels == {
        "reporter": "source",
        "source_workload": "client", "source_canonical_service": "client", "source_canonical_revision": "v1",
        "source_workload_namespace": "shop", "source_principal": CLIENT.identity, "source_app": "client",
        "source_version": "v1", "source_cluster": "Kubernetes",
        "destination_workload": "catalog", "destination_canonical_service": "catalog",
        "destination_canonical_revision": "latest", "destination_workload_namespace": "shop",
        "destination_principal": SERVER.identity, "destination_app": "catalog", "destination_version": "latest",
        "destination_cluster": "Kubernetes",
        "destination_service": "catalog.shop.svc.cluster.local", "destination_service_name": "catalog",
        "destination_service_namespace": "shop", "request_protocol": "tcp", "response_flags": "-",
        "connection_security_policy": "mutual_tls",
    }
    assert metrics["istio_tcp_received_bytes_total"][0][1] == 100
    assert metrics["istio_tcp_sent_bytes_total"][0][1] == 2000
    assert metrics["istio_tcp_connections_closed_total"][0][1] == 0
    conn.down.received, conn.up.received = 150, 3000
    table.closed(conn)
    metrics = scrape(table)
    assert metrics["istio_tcp_received_bytes_total"][0][1] == 150  # moved into the totals, not counted twice
    assert metrics["istio_tcp_sent_bytes_total"][0][1] == 3000
    assert metrics["istio_tcp_connections_closed_total"][0][1] == 1
    assert [v for l, v in metrics["nodemesh_tcp_connection_duration_seconds_count"]] == [1]
    [(connect_labels, connects)] = metrics["nodemesh_upstream_connect_duration_seconds_count"]
    assert connect_labels == {"reporter": "source", "destination_service": "catalog.shop.svc.cluster.local",
                              "via": "hbone"} and connects == 1


def test_a_failure_counts_opened_failed_and_closed_under_its_response_flag() -> None:
    table = ConnectionTable()
    table.failed(outbound(table), "upstream_refused", "connection refused")
    conn = table.open(INBOUND, "203.0.113.9:4000", "10.10.2.10:8080")
    conn.destination_workload, conn.via, conn.connection_security_policy = SERVER, "plaintext", "none"
    table.failed(conn, "denied")
    metrics = scrape(table)
    failed = {(l["reporter"], l["response_flags"], l["source_workload"], l["connection_security_policy"]): v
              for l, v in metrics["istio_tcp_connections_failed_total"]}
    assert failed == {("source", "CONNECT", "client", "mutual_tls"): 1,
                      ("destination", "DENY", "unknown", "none"): 1}
    for name in ("istio_tcp_connections_opened_total", "istio_tcp_connections_closed_total"):
        assert sorted(v for _, v in metrics[name]) == [1, 1]


def test_label_sets_are_per_workload_pair_not_per_connection_or_pod() -> None:
    """10,000 connections from many ports and two pods of one workload make one series."""
    table = ConnectionTable()
    other_pod = Workload(**{**vars(CLIENT), "uid": "u3", "name": "client-5d8f7c9b4-fghij", "ip": "10.10.1.11"})
    for i in range(10_000):
        conn = outbound(table)
        if i % 2:
            conn.source_workload = other_pod
        conn.down, conn.up = pair(lambda pipe, exc: None)
        table.established(conn)
        conn.down.received = 1
        table.closed(conn)
    metrics = scrape(table)
    assert [v for _, v in metrics["istio_tcp_connections_opened_total"]] == [10_000]
    assert [v for _, v in metrics["istio_tcp_received_bytes_total"]] == [10_000]
    assert len(table.traffic.totals) == 1


def test_with_metrics_off_the_table_keeps_no_label_sets() -> None:
    table = ConnectionTable(metrics=False)
    conn = outbound(table)
    table.established(conn)
    table.closed(conn)
    assert table.traffic is None and dict(table.totals) == {(OUTBOUND, "ok"): 1}


def test_the_same_node_path_counts_under_both_reporters() -> None:
    """One agent is both sides: a workload's inbound view must see its own node's clients too."""
    table = ConnectionTable()
    conn = outbound(table, via="local")
    conn.down, conn.up = pair(lambda pipe, exc: None)
    table.established(conn)
    conn.down.received, conn.up.received = 7, 9
    live = scrape(table)
    assert sorted((l["reporter"], v) for l, v in live["istio_tcp_received_bytes_total"]) == [
        ("destination", 7), ("source", 7)]  # while open, for both
    table.closed(conn)
    table.failed(outbound(table, via="local"), "denied")
    metrics = scrape(table)
    closed = {(l["reporter"], l["response_flags"]): v for l, v in metrics["istio_tcp_connections_closed_total"]}
    assert closed == {("source", "-"): 1, ("destination", "-"): 1, ("source", "DENY"): 1, ("destination", "DENY"): 1}
    assert sorted((l["reporter"], v) for l, v in metrics["istio_tcp_sent_bytes_total"] if l["response_flags"] == "-") == [
        ("destination", 9), ("source", 9)]
