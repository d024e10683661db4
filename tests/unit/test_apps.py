"""The example apps against each other on loopback (real sockets)."""

import asyncio
import json
import socket
import struct
import subprocess
import sys
import time

from nodemesh.tools.apps import client, server


def test_client_tallies_the_servers_name_and_checks_the_echo():
    async def main():
        catalog = await server.start("127.0.0.1", 0, "catalog-a")
        async with catalog:
            return await client.run("127.0.0.1", catalog.sockets[0].getsockname()[1], count=20,
                                    concurrency=5, payload_size=300_000)

    tally = asyncio.run(main())
    assert tally.to_dict()["servers"] == {"catalog-a": 20}
    assert tally.failed == 0


def test_a_burst_of_connects_waits_in_the_servers_accept_queue():
    """300 connects at once while the server is busy: the kernel queues them all, none is dropped."""
    async def main():
        srv = await server.start("127.0.0.1", 0, "burst")
        async with srv:
            listener = srv.sockets[0]
            clients = [socket.socket() for _ in range(300)]
            try:
                for c in clients:  # no await until they are counted: the server accepts none
                    c.setblocking(False)
                    c.connect_ex(listener.getsockname())
                deadline = time.monotonic() + 0.5  # handshakes on loopback take microseconds
                while accept_queue(listener) < len(clients) and time.monotonic() < deadline:
                    time.sleep(0.01)
                return accept_queue(listener)
            finally:
                for c in clients:
                    c.close()

    assert asyncio.run(main()) == 300


def accept_queue(listener) -> int:
    """Connections waiting in a listener's accept queue (TCP_INFO's tcpi_unacked, for a listener)."""
    return struct.unpack_from("=I", listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 32), 24)[0]


def test_failures_are_counted_by_reason():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tally = asyncio.run(client.run("127.0.0.1", port, count=3, concurrency=3))
    assert tally.ok == 0 and tally.failed == 3
    (reason,) = tally.errors
    assert reason.startswith("ConnectionRefusedError")


def test_a_silent_server_times_out():
    async def main():
        silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        async with silent:
            return await client.run("127.0.0.1", silent.sockets[0].getsockname()[1], count=2,
                                    concurrency=2, timeout=0.2)

    tally = asyncio.run(main())
    assert dict(tally.errors) == {"timeout after 0.2 s": 2}


def test_a_server_that_garbles_the_echo_is_caught():
    async def garble(reader, writer):
        writer.write(b"liar\n")
        data = await reader.read(10)
        writer.write(bytes(len(data)))
        writer.close()

    async def main():
        liar = await asyncio.start_server(garble, "127.0.0.1", 0)
        async with liar:
            return await client.run("127.0.0.1", liar.sockets[0].getsockname()[1], count=1,
                                    concurrency=1, payload_size=10)

    tally = asyncio.run(main())
    assert dict(tally.errors) == {"echo differs from what was sent": 1}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_command_lines_work_together():
    port = _free_port()
    srv = subprocess.Popen([sys.executable, "-m", "nodemesh.tools.apps.server", "--host", "127.0.0.1",
                            "--port", str(port)], env={"POD_NAME": "from-env"}, stdout=subprocess.PIPE,
                           text=True)
    try:
        assert srv.stdout.readline().startswith("from-env listening")
        out = subprocess.run([sys.executable, "-m", "nodemesh.tools.apps.client", f"127.0.0.1:{port}",
                              "--count", "4", "--concurrency", "2", "--payload", "64", "-o", "json"],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        result = json.loads(out.stdout)
        assert (result["ok"], result["failed"], result["servers"]) == (4, 0, {"from-env": 4})
        text = subprocess.run([sys.executable, "-m", "nodemesh.tools.apps.client", f"127.0.0.1:{port}"],
                              capture_output=True, text=True, timeout=30).stdout
        assert "1 ok, 0 failed" in text and "from-env  1" in text
    finally:
        srv.terminate()
        srv.wait()


def test_client_exits_non_zero_on_failures_and_rejects_bad_targets():
    port = _free_port()
    failed = subprocess.run([sys.executable, "-m", "nodemesh.tools.apps.client", f"127.0.0.1:{port}"],
                            capture_output=True, text=True, timeout=30)
    assert failed.returncode == 1 and "0 ok, 1 failed" in failed.stdout
    bad = subprocess.run([sys.executable, "-m", "nodemesh.tools.apps.client", "no-port"],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "expected HOST:PORT" in bad.stderr


def test_server_needs_a_name():
    out = subprocess.run([sys.executable, "-m", "nodemesh.tools.apps.server", "--port", "0"],
                         env={}, capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "--name" in out.stderr


def test_a_delayed_server_says_its_name_after_the_delay_and_still_echoes():
    """--delay holds each connection before the name line (a slow endpoint), concurrently."""
    delay = 0.3

    async def main():
        slow = await server.start("127.0.0.1", 0, "slow", delay=delay)
        async with slow:
            start = time.monotonic()
            tally = await client.run("127.0.0.1", slow.sockets[0].getsockname()[1], count=10, concurrency=10,
                                     payload_size=1000)
            return tally, time.monotonic() - start

    tally, seconds = asyncio.run(main())
    assert tally.to_dict()["servers"] == {"slow": 10} and tally.failed == 0
    assert delay <= seconds < 10 * delay  # each waited the delay, all at once rather than in turn


def test_the_server_command_takes_a_delay():
    result = subprocess.run([sys.executable, "-m", "nodemesh.tools.apps.server", "--port", "0", "--name", "x",
                             "--delay", "-1"], capture_output=True, text=True)
    assert result.returncode == 2 and "--delay" in result.stderr
