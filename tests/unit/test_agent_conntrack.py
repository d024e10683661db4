"""The connection table: what it counts, and that its totals stay bounded by the mesh model."""

from __future__ import annotations

from nodemesh.agent.proxy.conntrack import INBOUND, OUTBOUND, PASSTHROUGH, ConnectionTable
from nodemesh.agent.proxy.relay import pair


def test_a_connection_is_in_flight_until_closed_then_counted_with_its_bytes() -> None:
    table = ConnectionTable()
    conn = table.open(OUTBOUND, "shop/client", "10.96.0.10:80")
    conn.destination, conn.via = "shop/catalog-a", "hbone"
    conn.down, conn.up = pair(lambda pipe, exc: None)
    table.established(conn)
    conn.down.received, conn.up.received = 5, 7
    [row] = table.snapshot()["in_flight"]  # type: ignore[misc]
    assert (row["source"], row["destination"], row["bytes_from_downstream"], row["bytes_from_upstream"]) == (
        "shop/client", "shop/catalog-a", 5, 7)
    table.closed(conn)
    table.closed(conn)  # a second close changes nothing
    snapshot = table.snapshot()
    assert snapshot["in_flight"] == []
    assert snapshot["totals"] == [{"direction": OUTBOUND, "outcome": "ok", "count": 1}]
    assert snapshot["by_destination"] == [{"direction": OUTBOUND, "destination": "shop/catalog-a", "count": 1}]
    assert snapshot["bytes"] == {"outbound_from_downstream": 5, "outbound_from_upstream": 7}


def test_failures_and_refusals_are_counted_by_reason_once() -> None:
    table = ConnectionTable()
    conn = table.open(INBOUND, "shop/client", "10.0.1.5:8080")
    table.failed(conn, "app_unavailable")
    table.failed(conn, "downstream_closed")  # already gone: not counted twice
    table.refused(INBOUND, "refused_identity")
    assert dict(table.totals) == {(INBOUND, "app_unavailable"): 1, (INBOUND, "refused_identity"): 1}


def test_passthrough_traffic_to_many_addresses_keeps_one_destination_key() -> None:
    """An agent relaying to thousands of outside addresses must not grow a key for each."""
    from nodemesh.agent.proxy.route import Target

    table = ConnectionTable()
    for i in range(2000):
        target = Target(f"203.0.113.{i % 250}", 1000 + i, None)
        conn = table.open(OUTBOUND, "shop/client", f"{target.host}:{target.port}")
        conn.destination, conn.upstream, conn.via = target.name, f"{target.host}:{target.port}", "direct"
        table.established(conn)
        table.closed(conn)
    assert dict(table.by_destination) == {(OUTBOUND, PASSTHROUGH): 2000}
