"""The access log: one JSON line per ended connection, written by a thread, never by the loop."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from nodemesh.agent.proxy.conntrack import OUTBOUND, ConnectionTable
from nodemesh.agent.proxy.relay import pair
from nodemesh.agent.telemetry import accesslog
from nodemesh.agent.telemetry.accesslog import AccessLog, AccessLogError
from nodemesh.model import Workload

CLIENT = Workload(uid="u1", name="client-x", namespace="shop", service_account="client", node="node-a",
                  ip="10.10.1.10", meshed=True, identity="spiffe://cluster.local/ns/shop/sa/client",
                  workload_name="client")


def connection(table: ConnectionTable):
    conn = table.open(OUTBOUND, CLIENT.ref, "10.96.0.10:80")
    conn.source_workload, conn.source_identity = CLIENT, CLIENT.identity
    conn.service, conn.via, conn.upstream = "shop/catalog", "hbone", "10.10.2.10:8080"
    return conn


def test_each_connection_is_one_json_line_with_bytes_flags_and_the_failure(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog(str(path))
    table = ConnectionTable()
    table.observers.append(log)
    conn = connection(table)
    conn.down, conn.up = pair(lambda pipe, exc: None)
    table.established(conn)
    conn.down.received, conn.up.received = 11, 22
    table.closed(conn)
    table.failed(connection(table), "upstream_refused", "connection refused")
    log.close()
    first, second = [json.loads(line) for line in path.read_text().splitlines()]
    assert (first["src"], first["dst"]["service"], first["dst"]["upstream"], first["bytes_received"],
            first["bytes_sent"], first["response_flags"], first["via"]) == (
        {"addr": "10.10.1.10", "workload": "client", "namespace": "shop", "identity": CLIENT.identity},
        "shop/catalog", "10.10.2.10:8080", 11, 22, "-", "hbone")
    assert first["start"].endswith("Z") and first["duration_ms"] >= 0 and "error" not in first
    assert (second["outcome"], second["response_flags"], second["error"]) == (
        "upstream_refused", "CONNECT", "connection refused")


def test_a_writer_that_falls_behind_drops_and_counts_lines_instead_of_blocking(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accesslog, "QUEUE_BATCHES", 5)
    monkeypatch.setattr(accesslog, "BATCH", 1)  # each line a batch of its own
    log = AccessLog(str(tmp_path / "access.log"))
    gate = threading.Event()
    original = log._out.write
    log._out.write = lambda text: (gate.wait(10), original(text))  # a stuck disk
    table = ConnectionTable()
    table.observers.append(log)
    for _ in range(50):
        table.failed(connection(table), "no_route", "no endpoints")
    assert log.dropped >= 50 - 5 - 1  # the queue's 5, and the one the writer holds
    gate.set()
    log.close()
    assert len((tmp_path / "access.log").read_text().splitlines()) == 50 - log.dropped


def test_on_the_loop_lines_are_handed_over_in_batches_not_one_by_one(tmp_path: Path) -> None:
    import asyncio

    log = AccessLog(str(tmp_path / "access.log"))
    handed: list[int] = []
    put = log._batches.put_nowait
    log._batches.put_nowait = lambda batch: (handed.append(len(batch)), put(batch))

    async def burst() -> None:
        table = ConnectionTable()
        table.observers.append(log)
        for _ in range(accesslog.BATCH + 10):
            table.failed(connection(table), "no_route", "no endpoints")
        assert handed == [accesslog.BATCH]  # a full batch at once, the rest waits for the timer
        await asyncio.sleep(accesslog.FLUSH_SECONDS * 2)
        assert handed == [accesslog.BATCH, 10]

    asyncio.run(burst())
    log.close()
    assert len((tmp_path / "access.log").read_text().splitlines()) == accesslog.BATCH + 10


def test_an_access_log_that_cannot_be_opened_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(AccessLogError, match="cannot open the access log .*--access-log"):
        AccessLog(str(tmp_path / "missing" / "access.log"))
