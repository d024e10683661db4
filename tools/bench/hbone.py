"""HBONE on loopback: one stream's bulk throughput and 64-byte round trips, against TLS and TCP.

Two processes, as two agents would be: this one drives the client side, a child (``serve``)
answers. Every setup runs in the same run, rounds interleaved:
  tcp          plain TCP (reference: what the kernel and the event loop cost)
  tls          TLS 1.3 with the same certificates, no HTTP/2 (reference: what encryption costs)
  hbone        a CONNECT stream with the agent's settings (``tunnel.TUNED``)
  hbone-h2-defaults  the same with h2's default windows and frame size: what tuning buys
The client writes 256 KiB at a time, as the relay does with what it reads from a socket; the
relay's own socket reads are not part of this (see run.py, `nodemesh bench`, for the whole path). Measures;
asserts nothing.

    python -m nodemesh.tools.bench.hbone [--rounds 3] [--mib 256] [--count 5000]
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

from nodemesh.agent.tls import contexts
from nodemesh.agent.proxy.hbone.client import ClientTunnel
from nodemesh.agent.proxy.hbone.server import ServerTunnel
from nodemesh.agent.proxy.hbone.stream import StreamTransport
from nodemesh.agent.proxy.hbone.tunnel import H2_DEFAULTS, TUNED, Windows
from nodemesh.controller.ca.authority import Authority, create_root, pem
from nodemesh.identity import key_pem, new_key

HOST = "127.0.0.1"
CLIENT_ID = "spiffe://cluster.local/ns/bench/sa/client"
SERVER_ID = "spiffe://cluster.local/ns/bench/sa/server"
CHUNK = 256 << 10
SINK, ECHO = b"S", b"E"
SETUPS: dict[str, Windows | None] = {"tcp": None, "tls": None, "hbone": TUNED, "hbone-h2-defaults": H2_DEFAULTS}


class Responder(asyncio.Protocol):
    """The server's side of every setup. The first byte says: echo, or sink (then 8 bytes of
    length; the count is the answer once it has all). TLS transports cannot half-close."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.head = b""
        self.expected = self.count = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self.head:
            self.head, data = data[:1], data[1:]
        if self.head == SINK or (self.head[:1] == SINK and len(self.head) < 9):
            need = 9 - len(self.head)
            self.head, data = self.head + data[:need], data[need:]
            if len(self.head) == 9:
                self.expected = struct.unpack("!Q", self.head[1:])[0]
        if self.head[:1] == ECHO:
            if data:
                self.transport.write(data)  # type: ignore[union-attr]
            return
        self.count += len(data)
        if self.expected and self.count >= self.expected:
            self.transport.write(b"%d" % self.count)  # type: ignore[union-attr]


class Acceptor:
    """Hands every HBONE stream to a ``Responder``."""

    pod_ip = HOST
    identity = SERVER_ID

    def opened(self, tunnel: ServerTunnel) -> None: ...
    def closed(self, tunnel: ServerTunnel) -> None: ...
    def refused(self, outcome: str, detail: str) -> None: ...

    def stream(self, tunnel: ServerTunnel, stream: StreamTransport, port: int) -> None:
        stream.respond(200)
        stream.connect(Responder())
        stream.resume_reading()


class Driver(asyncio.Protocol):
    """The client's side: sends ``total`` bytes (bulk) or round trips of ``size`` bytes (rr)."""

    def __init__(self, total: int = 0, size: int = 0, count: int = 0) -> None:
        loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.total, self.size, self.count = total, size, count
        self.sent = 0
        self.paused = False
        self.reply = bytearray()
        self.done: asyncio.Future[None] = loop.create_future()
        self.latencies: list[float] = []
        self._t = 0.0

    def start(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.total:
            transport.write(SINK + struct.pack("!Q", self.total))  # type: ignore[attr-defined]
            self._push()
        else:
            transport.write(ECHO)  # type: ignore[attr-defined]
            self._ping()

    connection_made = start

    def _push(self) -> None:
        block = b"x" * CHUNK
        while not self.paused and self.sent < self.total:
            self.transport.write(block)  # type: ignore[union-attr]
            self.sent += CHUNK

    def _ping(self) -> None:
        self._t = time.perf_counter()
        self.transport.write(b"p" * self.size)  # type: ignore[union-attr]

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.total:
            self._push()

    def data_received(self, data: bytes) -> None:
        self.reply += data
        if self.total:
            if len(self.reply) >= len(str(self.total)):
                self.done.set_result(None)
            return
        if len(self.reply) < self.size:
            return
        self.latencies.append(time.perf_counter() - self._t)
        self.reply.clear()
        if len(self.latencies) < self.count:
            self._ping()
        else:
            self.done.set_result(None)

    def eof_received(self) -> bool:
        if not self.done.done():
            self.done.set_result(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


class Client:
    def __init__(self, ports: dict[str, int], ctx: ssl.SSLContext) -> None:
        self.ports, self.ctx = ports, ctx
        self.tunnels: dict[str, ClientTunnel] = {}

    async def connect(self, setup: str, driver: Driver) -> None:
        loop = asyncio.get_running_loop()
        port = self.ports[setup]
        windows = SETUPS[setup]
        if windows is None:
            await loop.create_connection(lambda: driver, HOST, port,
                                         ssl=self.ctx if setup == "tls" else None,
                                         server_hostname="" if setup == "tls" else None)
            return
        tunnel = self.tunnels.get(setup)
        if tunnel is None or not tunnel.accepting:
            tunnel = ClientTunnel(self.ctx, CLIENT_ID, SERVER_ID, "", 600.0, lambda t: None, windows)
            await loop.create_connection(lambda: tunnel, HOST, port, ssl=self.ctx, server_hostname="")
            await tunnel.ready
            self.tunnels[setup] = tunnel
        stream = tunnel.open_stream(f"{HOST}:1")
        if await stream.response != 200:  # type: ignore[misc]
            raise RuntimeError("the bench server refused the stream")
        stream.connect(driver)
        stream.resume_reading()

    async def bulk(self, setup: str, mib: int) -> float:
        driver = Driver(total=mib << 20)
        start = time.perf_counter()
        await self.connect(setup, driver)
        await driver.done
        elapsed = time.perf_counter() - start
        driver.transport.close()  # type: ignore[union-attr]
        if int(driver.reply or b"0") != driver.sent:
            raise RuntimeError(f"{setup}: the server counted {driver.reply!r} of {driver.sent} bytes")
        return driver.sent / elapsed / 1e6

    async def rr(self, setup: str, count: int) -> tuple[float, float]:
        driver = Driver(size=64, count=count)
        await self.connect(setup, driver)
        await driver.done
        driver.transport.close()  # type: ignore[union-attr]
        lat = sorted(driver.latencies)
        return lat[len(lat) // 2] * 1e6, lat[int(len(lat) * 0.99)] * 1e6


def write_certs(directory: Path) -> None:
    """A root and two workload certificates, issued as the controller issues them."""
    root_key = new_key()
    root = create_root(root_key)
    authority = Authority(cert=root, key=root_key, intermediates=(), roots=(root,))
    (directory / "bundle.pem").write_bytes(pem(root))
    for name, identity in (("client", CLIENT_ID), ("server", SERVER_ID)):
        key = new_key()
        issued = authority.issue_workload(key.public_key(), identity, dt.timedelta(hours=1))
        (directory / f"{name}.pem").write_bytes(issued.chain_pem)
        (directory / f"{name}-key.pem").write_bytes(key_pem(key))


def context(directory: Path, name: str) -> ssl.SSLContext:
    make = contexts.client_context if name == "client" else contexts.server_context
    return make((directory / f"{name}.pem").read_bytes(), (directory / f"{name}-key.pem").read_bytes(),
                (directory / "bundle.pem").read_bytes())


async def serve(directory: Path) -> None:
    loop = asyncio.get_running_loop()
    ctx = context(directory, "server")
    acceptor = Acceptor()
    ports = {}
    for setup, windows in SETUPS.items():
        if windows is None:
            factory, sslctx = Responder, (ctx if setup == "tls" else None)
        else:
            factory, sslctx = (lambda w=windows: ServerTunnel(acceptor, windows=w)), ctx  # type: ignore[misc]
        server = await loop.create_server(factory, HOST, 0, ssl=sslctx)
        ports[setup] = server.sockets[0].getsockname()[1]
    print(json.dumps(ports), flush=True)
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent goes


async def measure(ports: dict[str, int], directory: Path, rounds: int, mib: int, count: int) -> dict:
    client = Client(ports, context(directory, "client"))
    results: dict[str, dict[str, list[float]]] = {s: {"MB/s": [], "p50 us": [], "p99 us": []} for s in SETUPS}
    for r in range(rounds):
        for setup in SETUPS:
            results[setup]["MB/s"].append(await client.bulk(setup, mib))
            p50, p99 = await client.rr(setup, count)
            results[setup]["p50 us"].append(p50)
            results[setup]["p99 us"].append(p99)
        click.echo(f"round {r + 1}/{rounds} done", err=True)
    return results


def report(results: dict[str, dict[str, list[float]]]) -> str:
    lines = ["| setup | metric | min | median | max | median / tcp |", "|---|---|---|---|---|---|"]
    for setup, metrics in results.items():
        for metric, values in metrics.items():
            median, base = statistics.median(values), statistics.median(results["tcp"][metric])
            lines.append(f"| {setup} | {metric} | {min(values):.0f} | {median:.0f} | {max(values):.0f} "
                         f"| {median / base:.2f} |")
    return "\n".join(lines)


@click.group(invoke_without_command=True)
@click.option("--rounds", default=3, show_default=True)
@click.option("--mib", default=256, show_default=True, help="MiB sent through one stream per bulk run.")
@click.option("--count", default=5000, show_default=True, help="64-byte round trips per latency run.")
@click.pass_context
def main(ctx: click.Context, rounds: int, mib: int, count: int) -> None:
    if ctx.invoked_subcommand is not None:
        return
    import uvloop

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        write_certs(directory)
        child = subprocess.Popen([sys.executable, "-m", "nodemesh.tools.bench.hbone", "serve", tmp],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            ports = json.loads(child.stdout.readline())  # type: ignore[union-attr]
            results = uvloop.run(measure(ports, directory, rounds, mib, count))
        finally:
            child.stdin.close()  # type: ignore[union-attr]
            child.wait(10)
    click.echo(report(results))


@main.command("serve", hidden=True)
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
def serve_command(directory: Path) -> None:
    import uvloop

    uvloop.run(serve(directory))


if __name__ == "__main__":
    main()
