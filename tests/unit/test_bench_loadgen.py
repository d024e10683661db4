"""The load generator against real servers on loopback: the example server, and slow or counting
ones to check that what it reports follows what the server really did."""

from __future__ import annotations

import asyncio
import json
import queue
import resource
import socket
import subprocess
import sys
import threading
from contextlib import contextmanager
from typing import Awaitable, Callable, Iterator

import pytest
import uvloop
from click.testing import CliRunner

from nodemesh.tools.apps import server
from nodemesh.tools.bench import loadgen

HOST = "127.0.0.1"
DELAY = 0.02  # what the slow server waits before each echo


@contextmanager
def serving(start: Callable[[], Awaitable[asyncio.Server]]) -> Iterator[int]:
    """Run a server on its own loop in a thread, so that a slow server cannot stall the
    generator's loop nor the other way round; yields its port."""
    started: queue.Queue = queue.Queue()

    async def main() -> None:
        stop = asyncio.Event()
        async with await start() as srv:
            started.put((asyncio.get_running_loop(), stop, srv.sockets[0].getsockname()[1]))
            await stop.wait()

    thread = threading.Thread(target=asyncio.run, args=(main(),))
    thread.start()
    loop, stop, port = started.get(timeout=5)
    try:
        yield port
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)


@pytest.fixture
def echo_port() -> Iterator[int]:
    with serving(lambda: server.start(HOST, 0, "echo")) as port:
        yield port


@pytest.fixture
def slow_port() -> Iterator[int]:
    async def slow_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"slow\n")
        while data := await reader.read(65536):
            await asyncio.sleep(DELAY)  # not a condition: the slowness the latency figures must show
            writer.write(data)
        writer.close()

    with serving(lambda: asyncio.start_server(slow_echo, HOST, 0)) as port:
        yield port


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:  # bound, never listening: connections are refused
        s.bind((HOST, 0))
        return s.getsockname()[1]


def test_conn_counts_connections_for_the_time_given(echo_port):
    result = uvloop.run(loadgen.connection_rate(HOST, echo_port, 0.5, 4))
    assert set(result) == {"connections", "failed", "seconds", "per_second"}
    assert result["failed"] == 0 and result["connections"] > 50
    assert 0.5 <= result["seconds"] < 1.5
    assert result["per_second"] == pytest.approx(result["connections"] / result["seconds"])


def test_churn_makes_exactly_the_connections_asked(echo_port):
    result = uvloop.run(loadgen.churn(HOST, echo_port, 300, 8))
    assert (result["connections"], result["failed"]) == (300, 0)
    assert result["per_second"] == pytest.approx(300 / result["seconds"])


def test_churn_counts_refused_connections_as_failed(closed_port):
    result = uvloop.run(loadgen.churn(HOST, closed_port, 20, 4))
    assert (result["connections"], result["failed"]) == (0, 20)


def test_rr_latencies_are_ordered_and_follow_the_server(echo_port, slow_port):
    fast = uvloop.run(loadgen.request_response(HOST, echo_port, 200, 64))
    assert list(fast) == ["count", "size", "p50_us", "p90_us", "p99_us", "max_us"]
    assert 0 < fast["p50_us"] <= fast["p90_us"] <= fast["p99_us"] <= fast["max_us"] < 50_000
    slow = uvloop.run(loadgen.request_response(HOST, slow_port, 5, 64))
    assert slow["p50_us"] >= DELAY * 1e6


@pytest.mark.parametrize("streams", [1, 8])
def test_bulk_echoes_everything_over_the_streams(echo_port, streams):
    result = uvloop.run(loadgen.bulk(HOST, echo_port, 8, streams))
    assert result["received"] == 8 << 20 and result["streams"] == streams
    assert result["mb_per_s"] == pytest.approx(8 / result["seconds"])
    assert len(result["per_stream_mb_per_s"]) == streams
    # each stream finished no later than all of them did
    assert sum(result["per_stream_mb_per_s"]) >= result["mb_per_s"] * 0.999


class EndsAtEof(asyncio.Protocol):
    """A peer that ends the connection at the client's FIN, dropping the echo still to come:
    what the HAProxy reference did now and then to the tail of data followed by a FIN."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        transport.write(b"strict\n")  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        asyncio.get_running_loop().call_later(DELAY, self.transport.write, data)  # the echo lags

    def eof_received(self) -> bool:
        self.transport.abort()  # type: ignore[attr-defined]
        return False


@pytest.mark.parametrize("streams", [1, 8])
def test_bulk_gets_everything_back_before_it_closes(streams):
    async def ends_at_eof() -> asyncio.Server:
        return await asyncio.get_running_loop().create_server(EndsAtEof, HOST, 0)

    with serving(ends_at_eof) as port:
        result = uvloop.run(loadgen.bulk(HOST, port, 1, streams))
    assert result["received"] == 1 << 20


def test_bulk_fails_when_the_echo_comes_back_short():
    async def short_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"short\n")
        writer.write(await reader.read(1000))
        writer.close()

    with serving(lambda: asyncio.start_server(short_echo, HOST, 0)) as port:
        with pytest.raises(ConnectionError, match="bytes came back, then the connection closed"):
            uvloop.run(loadgen.bulk(HOST, port, 1, 1))


def test_latency_keeps_the_rate_on_a_fast_server(echo_port):
    result = uvloop.run(loadgen.latency(HOST, echo_port, 500, 4, 1024, 0.5))
    assert (result["count"], result["errors"]) == (250, 0)
    assert result["achieved_rate"] == pytest.approx(500, rel=0.1)
    keys = ["p50_us", "p90_us", "p99_us", "p99_9_us", "max_us"]
    values = [result[k] for k in keys]
    assert values == sorted(values) and 0 < values[0] < 50_000


def test_latency_charges_a_slow_server_but_keeps_the_rate_when_connections_suffice(slow_port):
    # 200/s over 10 connections: each sees a request every 50 ms and answers in 20 ms: no queue
    result = uvloop.run(loadgen.latency(HOST, slow_port, 200, 10, 64, 1.0))
    assert (result["count"], result["errors"]) == (200, 0)
    assert result["achieved_rate"] == pytest.approx(200, rel=0.1)
    assert DELAY * 1e6 <= result["p50_us"] and result["p99_us"] < 2 * DELAY * 1e6


def test_latency_counts_queueing_from_when_requests_were_due(slow_port):
    # 100/s on one connection that can do 50/s: request i waits for the i before it, so its
    # latency is about 20 ms + i * 10 ms. A closed loop would have reported 20 ms throughout.
    result = uvloop.run(loadgen.latency(HOST, slow_port, 100, 1, 64, 0.5))
    assert (result["count"], result["errors"]) == (50, 0)
    assert result["p50_us"] > 200_000 and result["max_us"] > 450_000
    assert result["achieved_rate"] == pytest.approx(50, rel=0.15)


def test_latency_counts_unanswered_requests_as_errors(closed_port):
    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"mute\n")
        await reader.read(10)
        writer.close()  # closes after its first request, unanswered

    with serving(lambda: asyncio.start_server(mute, HOST, 0)) as port:
        result = uvloop.run(loadgen.latency(HOST, port, 100, 2, 64, 0.2))
    assert (result["count"], result["errors"]) == (0, 20)
    assert result["p50_us"] is None and result["achieved_rate"] == 0


def test_percentiles_are_exact_nearest_rank():
    samples = [i / 1e6 for i in range(1000, 0, -1)]  # 1 .. 1000 us, unordered
    got = loadgen.percentiles(samples, (50, 99.9))
    assert got == pytest.approx({"p50_us": 500, "p99_9_us": 999, "max_us": 1000})
    assert loadgen.percentiles([], (50,)) == {"p50_us": None, "max_us": None}


def limit_descriptors(soft: int, hard: int) -> Callable[[], None]:
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def loadgen_process(*args: str, soft: int, hard: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "nodemesh.tools.bench.loadgen", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=limit_descriptors(soft, hard))


def test_hold_reports_while_holding_and_raises_its_descriptor_limit():
    active = 0

    async def counting(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal active
        active += 1
        writer.write(b"held\n")
        await reader.read()
        active -= 1
        writer.close()

    with serving(lambda: asyncio.start_server(counting, HOST, 0, backlog=512)) as port:
        # 500 connections with a soft limit of 256: only works if hold raises it to the hard one
        proc = loadgen_process("hold", f"{HOST}:{port}", "--connections", "500", "--seconds", "1",
                               "--concurrency", "16", soft=256, hard=4096)
        try:
            first = json.loads(proc.stdout.readline())
            assert proc.poll() is None, "the first line must come while the connections are held"
            assert first == {"open": 500, "failed": 0} and active == 500
            out, err = proc.communicate(timeout=10)
        finally:
            proc.kill()
    assert proc.returncode == 0, err
    assert json.loads(out) == {"open": 500, "failed": 0}


def test_hold_says_when_the_hard_descriptor_limit_is_too_low(closed_port):
    proc = loadgen_process("hold", f"{HOST}:{closed_port}", "--connections", "5000",
                           soft=1024, hard=4096)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 1 and out == ""
    assert "hard RLIMIT_NOFILE" in err and "ulimit -Hn" in err


def test_cli_prints_one_json_object(echo_port):
    result = CliRunner().invoke(loadgen.main, ["rr", f"{HOST}:{echo_port}", "--count", "10"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["count"] == 10


def test_cli_errors_say_what_went_wrong(closed_port):
    refused = CliRunner().invoke(loadgen.main, ["rr", f"{HOST}:{closed_port}"])
    assert refused.exit_code == 1 and f"rr against {HOST}:{closed_port}: ConnectionRefusedError" in refused.output
    malformed = CliRunner().invoke(loadgen.main, ["rr", "no-port"])
    assert malformed.exit_code == 2 and "expected HOST:PORT" in malformed.output


def test_a_server_that_never_says_its_name_is_a_timeout_that_says_so(monkeypatch):
    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accepts, says nothing
        writer.close()

    monkeypatch.setattr(loadgen, "CONNECT_TIMEOUT", 0.2)
    with serving(lambda: asyncio.start_server(mute, HOST, 0)) as port:
        result = CliRunner().invoke(loadgen.main, ["bulk", f"{HOST}:{port}", "--streams", "8"])
    assert result.exit_code == 1
    assert "bulk against" in result.output and "TimeoutError: no connection with a name line within 0.2 s" in result.output
