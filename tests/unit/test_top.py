"""``nodemesh top``'s computation, on exposition text from prometheus-client itself: parsing,
rows per workload pair and service across nodes, rates, counter resets, latency quantiles, and
the JSON document. No network: scrapes are built from ``FakeAgent``'s text and a time."""

from __future__ import annotations

import math
from typing import Callable

import pytest
from agent_metrics import SERVICE, FakeAgent

from nodemesh.tools.top.metrics import Scrape, parse
from nodemesh.tools.top.quantile import histogram_quantile
from nodemesh.tools.top.rates import Row, RowKey, increase, rows
from nodemesh.tools.top.view import cells, document

CLIENT_TO_CATALOG = RowKey("shop/client", SERVICE, "service", "mutual_tls")


def scrape(at: float, unreachable: dict[str, str] | None = None, **agents: FakeAgent) -> Scrape:
    """Every agent's text as answered at ``at`` (keyword: node name, with _ for -)."""
    return Scrape({node.replace("_", "-"): parse(agent.text(), at) for node, agent in agents.items()},
                  unreachable or {})


def two_seconds_of(traffic: Callable[[FakeAgent], None], agent: FakeAgent | None = None) -> list[Row]:
    """The rows (reporter source) of node-a's ``agent`` over 2 s in which ``traffic`` happened."""
    agent = agent or FakeAgent()
    before = scrape(0.0, node_a=agent)
    traffic(agent)
    return rows(before, scrape(2.0, node_a=agent), "source")


def only(found: list[Row]) -> Row:
    assert len(found) == 1, found
    return found[0]


def test_parse_keeps_the_traffic_series_by_all_their_labels_and_passes_over_the_rest() -> None:
    agent = FakeAgent()
    agent.connections(3, received=100, connect_seconds=0.002)
    metrics = parse(agent.text(), at=7.0)
    assert metrics.at == 7.0
    assert {what for what, _ in metrics.counters} == {
        "opened", "closed", "failed", "bytes_to_destination", "bytes_from_destination", "connect_latency_bucket"}
    opened = [(dict(series), value) for (what, series), value in metrics.counters.items() if what == "opened"]
    assert opened == [({"reporter": "source", "source_workload": "client", "source_workload_namespace": "shop",
                        "source_principal": "spiffe://cluster.local/ns/shop/sa/default",
                        "destination_workload": "catalog-a", "destination_workload_namespace": "shop",
                        "destination_service": SERVICE, "response_flags": "-",
                        "connection_security_policy": "mutual_tls"}, 3.0)]
    buckets = {dict(series)["le"]: value for (what, series), value in metrics.counters.items()
               if what == "connect_latency_bucket"}
    assert (buckets["0.001"], buckets["0.0025"], buckets["+Inf"]) == (0.0, 3.0, 3.0)


def test_parse_rejects_what_is_not_exposition_text() -> None:
    with pytest.raises(ValueError):
        parse("<html>502 Bad Gateway</html>", at=0.0)


def test_rates_are_per_second_over_each_agents_own_interval_and_summed_over_nodes() -> None:
    a, b = FakeAgent(), FakeAgent()
    before = scrape(10.0, node_a=a, node_b=b)
    a.connections(10, received=1000, sent=4000)  # 5 s between node-a's answers
    b.connections(4, received=500, sent=0)  # 2 s between node-b's
    row = only(rows(before, Scrape({**scrape(15.0, node_a=a).agents, **scrape(12.0, node_b=b).agents}, {}),
                    "source"))
    assert row.key == CLIENT_TO_CATALOG
    assert row.connections_per_second == 10 / 5 + 4 / 2
    assert row.bytes_to_destination_per_second == 10 * 1000 / 5 + 4 * 500 / 2
    assert row.bytes_from_destination_per_second == 10 * 4000 / 5
    assert row.failures_per_second == {} and row.active_connections == 0


def test_series_that_differ_only_in_labels_top_does_not_show_add_up_in_one_row() -> None:
    def traffic(agent: FakeAgent) -> None:
        agent.connections(2, principal="spiffe://cluster.local/ns/shop/sa/a")
        agent.connections(4, principal="spiffe://cluster.local/ns/shop/sa/b")

    assert only(two_seconds_of(traffic)).connections_per_second == 3.0


def test_rows_are_per_source_destination_and_security_policy_busiest_first() -> None:
    def traffic(agent: FakeAgent) -> None:
        agent.connections(2)
        agent.connections(6, policy="none")
        agent.connections(4, source="shop/batch")
        agent.connections(2, service="unknown", workload="shop/catalog-b")  # to the pod's IP

    assert [(r.key, r.connections_per_second) for r in two_seconds_of(traffic)] == [
        (RowKey("shop/client", SERVICE, "service", "none"), 3.0),
        (RowKey("shop/batch", SERVICE, "service", "mutual_tls"), 2.0),
        (CLIENT_TO_CATALOG, 1.0),
        (RowKey("shop/client", "shop/catalog-b", "workload", "mutual_tls"), 1.0),
    ]


def test_only_the_chosen_reporters_series_count() -> None:
    """Each connection between meshed pods is on both agents: one reporter counts it once."""
    a, b = FakeAgent(), FakeAgent()
    before = scrape(0.0, node_a=a, node_b=b)
    a.connections(4, reporter="source")
    b.connections(4, reporter="destination")
    b.connections(2, source="unknown/unknown", policy="none", reporter="destination")  # from outside
    after = scrape(2.0, node_a=a, node_b=b)
    assert only(rows(before, after, "source")).connections_per_second == 2.0
    assert [(r.key.source, r.connections_per_second) for r in rows(before, after, "destination")] == [
        ("shop/client", 2.0), ("unknown", 1.0)]


def test_active_connections_are_opened_minus_closed_now_even_from_an_agent_new_to_top() -> None:
    a, b = FakeAgent(), FakeAgent()
    a.connections(5, open_=2)
    before = scrape(0.0, node_a=a)  # node-b's agent did not answer yet
    b.connections(100, open_=1)
    row = only(rows(before, scrape(2.0, node_a=a, node_b=b), "source"))
    assert row.active_connections == 3
    assert row.connections_per_second == 0.0  # node-b's 100 since its start are not this interval's


def test_failures_per_second_by_response_flag() -> None:
    def traffic(agent: FakeAgent) -> None:
        agent.connections(6)
        agent.connections(3, flag="CONNECT")
        agent.connections(1, flag="NR")

    row = only(two_seconds_of(traffic))
    assert row.connections_per_second == 5.0  # opened counts failed connections too
    assert row.failures_per_second == {"CONNECT": 1.5, "NR": 0.5}


@pytest.mark.parametrize(("before", "after", "grew"), [(None, 5.0, 5.0), (3.0, 5.0, 2.0), (5.0, 5.0, 0.0),
                                                       (9.0, 2.0, 2.0)])
def test_a_counter_that_dropped_was_reset_and_all_its_value_is_new(before, after, grew) -> None:
    assert increase(before, after) == grew


def test_an_agent_that_restarted_gives_no_negative_rate() -> None:
    old = FakeAgent()
    old.connections(50, received=10_000, open_=5, connect_seconds=0.002)
    before = scrape(0.0, node_a=old)
    new = FakeAgent()  # the agent restarted between the scrapes: its counters began again
    new.connections(4, received=100, open_=1, connect_seconds=0.02)
    row = only(rows(before, scrape(2.0, node_a=new), "source"))
    assert row.connections_per_second == 2.0
    assert row.bytes_to_destination_per_second == 200.0
    assert row.active_connections == 1
    assert row.connect_latency_seconds["p50"] == pytest.approx(0.0175)  # the new 0.02 s ones only


def test_latency_quantiles_are_of_the_intervals_observations_only() -> None:
    a, b = FakeAgent(), FakeAgent()
    a.connections(100, connect_seconds=2.0)  # before the interval: slow, and not counted
    before = scrape(0.0, node_a=a, node_b=b)
    a.connections(10, connect_seconds=0.002)  # buckets (0.001, 0.0025]
    b.connections(10, connect_seconds=0.004, via="local")  # (0.0025, 0.005]: summed over nodes and via
    latency = only(rows(before, scrape(2.0, node_a=a, node_b=b), "source")).connect_latency_seconds
    # Prometheus: rank 10 of 20 ends bucket 0.0025; rank 19.8 is 9.8/10 into (0.0025, 0.005]
    assert latency == {"p50": pytest.approx(0.0025), "p99": pytest.approx(0.0025 + 0.0025 * 0.98)}


def test_no_connections_in_the_interval_no_latency() -> None:
    agent = FakeAgent()
    agent.connections(10, connect_seconds=0.002)
    quiet = only(two_seconds_of(lambda agent: None, agent))
    assert quiet.connect_latency_seconds == {"p50": None, "p99": None}


def test_a_destination_that_is_not_a_service_has_no_latency_of_its_own() -> None:
    row = only(two_seconds_of(lambda agent: agent.connections(5, service="unknown", workload="shop/catalog-b",
                                                               connect_seconds=0.002)))
    assert row.key.destination_kind == "workload"
    assert row.connect_latency_seconds == {"p50": None, "p99": None}


@pytest.mark.parametrize(("q", "buckets", "expected"), [
    (0.5, {0.1: 0, 0.2: 4, math.inf: 4}, 0.15),  # interpolated inside (0.1, 0.2]
    (0.25, {0.1: 2, 0.2: 4, math.inf: 4}, 0.05),  # the first bucket's lower bound is 0
    (0.99, {0.1: 1, 0.2: 1, math.inf: 4}, 0.2),  # in +Inf: the highest finite bound
    (0.5, {0.1: 4, 0.2: 2, math.inf: 4}, 0.05),  # not monotonic (a reset): made so, as Prometheus
    (0.5, {0.1: 0, math.inf: 0}, None),  # no observations
    (0.5, {0.1: 1, 0.2: 2}, None),  # no +Inf bucket
    (0.5, {math.inf: 3}, None),  # fewer than two buckets
])
def test_histogram_quantile_as_prometheus(q, buckets, expected) -> None:
    assert histogram_quantile(q, buckets) == (pytest.approx(expected) if expected is not None else None)


def test_the_json_document_names_every_node_and_keeps_full_precision() -> None:
    agent = FakeAgent()
    before = scrape(0.0, node_a=agent)
    agent.connections(1, received=10, sent=20, open_=1, connect_seconds=0.002)
    agent.connections(2, flag="CONNECT")
    after = scrape(3.0, {"node-b": "agent metrics endpoint ... unreachable"}, node_a=agent)
    assert document(rows(before, after, "source"), after, "demo", "source", 3.0) == {
        "sim": "demo", "reporter": "source", "interval_seconds": 3.0,
        "nodes": {"node-a": {"reachable": True},
                  "node-b": {"reachable": False, "error": "agent metrics endpoint ... unreachable"}},
        "rows": [{"source": "shop/client", "destination": SERVICE, "destination_kind": "service",
                  "connection_security_policy": "mutual_tls", "connections_per_second": 1.0,
                  "active_connections": 1, "bytes_to_destination_per_second": 10 / 3,
                  "bytes_from_destination_per_second": 20 / 3, "failures_per_second": {"CONNECT": 2 / 3},
                  "connect_latency_seconds": {"p50": pytest.approx(0.00175), "p99": pytest.approx(0.002485)}}],
    }


def test_table_cells_are_short_and_say_mtls_or_not() -> None:
    row = Row(RowKey("shop/client", SERVICE, "service", "none"), connections_per_second=12.345,
              active_connections=3, bytes_to_destination_per_second=512,
              bytes_from_destination_per_second=3.5 * 1024 * 1024, failures_per_second={"NR": 0.5, "CONNECT": 2},
              connect_latency_seconds={"p50": 0.00075, "p99": 1.5})
    assert cells(row) == ["shop/client", SERVICE, "no", "12.3", "3", "512 B", "3.5 MiB", "CONNECT 2.0 NR 0.5",
                          "0.75 ms", "1.5 s"]
    assert cells(Row(CLIENT_TO_CATALOG))[2:] == ["yes", "0.0", "0", "0 B", "0 B", "-", "-", "-"]
