"""HBONE connections and streams on real loopback TLS sockets, on uvloop, without namespaces.

The server side answers with a test acceptor; the client side is the agent's own
``ClientTunnel``. What is checked is what the relay relies on: bytes both ways with half-closes,
flow control that stops a sender when the reader stops, resets both ways, a lost connection
failing its streams at once, and the server's refusals.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from dataclasses import dataclass, field
from typing import Awaitable, Callable

import pytest
import uvloop
from eventually import eventually_async
from hbone_pki import TestCa, spiffe

from nodemesh.agent.proxy.hbone.client import ClientTunnel, TunnelError
from nodemesh.agent.proxy.hbone.server import ServerTunnel
from nodemesh.agent.proxy.hbone.stream import StreamReset, StreamTransport
from nodemesh.agent.proxy.hbone.tunnel import TUNED

CLIENT_ID = spiffe("shop", "client")
SERVER_ID = spiffe("shop", "catalog")
POD_IP = "127.0.0.1"


class Sink(asyncio.Protocol):
    """Collects what a stream delivers; reading can be held back (a slow reader)."""

    def __init__(self) -> None:
        self.transport: StreamTransport | None = None
        self.data = bytearray()
        self.eof = asyncio.get_running_loop().create_future()
        self.lost = asyncio.get_running_loop().create_future()
        self.paused = 0  # pause_writing calls: the stream's window closed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.data += data

    def eof_received(self) -> bool:
        self.eof.set_result(bytes(self.data))
        return True

    def pause_writing(self) -> None:
        self.paused += 1

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


class Echo(Sink):
    """Sends back what it gets, and EOF after EOF."""

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self.transport.write(data)  # type: ignore[union-attr]

    def eof_received(self) -> bool:
        self.transport.write_eof()  # type: ignore[union-attr]
        super().eof_received()
        return False  # both ways done: the stream closes


@dataclass
class Acceptor:
    """The server's acceptor: hands each stream to ``make()``'s protocol after answering ``status``."""

    make: Callable[[], Sink] = Echo
    status: int = 200
    pod_ip: str = POD_IP
    identity: str = SERVER_ID
    tunnels: list[ServerTunnel] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    protocols: list[Sink] = field(default_factory=list)

    def peer_node(self, tunnel: ServerTunnel) -> str:
        return "node-a"

    def opened(self, tunnel: ServerTunnel) -> None:
        self.tunnels.append(tunnel)

    def closed(self, tunnel: ServerTunnel) -> None:
        self.tunnels.remove(tunnel)

    def refused(self, outcome: str, detail: str) -> None:
        self.refusals.append(outcome)

    def stream(self, tunnel: ServerTunnel, stream: StreamTransport, port: int, headers: dict[bytes, bytes]) -> None:
        stream.respond(self.status)
        if self.status == 200:
            protocol = self.make()
            self.protocols.append(protocol)
            stream.connect(protocol)
            stream.resume_reading()


@dataclass
class Setup:
    ca: TestCa
    acceptor: Acceptor
    port: int
    server: asyncio.AbstractServer

    async def tunnel(self, expected: str = SERVER_ID, ctx: ssl.SSLContext | None = None) -> ClientTunnel:
        loop = asyncio.get_running_loop()
        ctx = ctx or self.ca.client_context(CLIENT_ID)
        tunnel = ClientTunnel(ctx, CLIENT_ID, expected, "node-b", 60.0, lambda t: None)
        await loop.create_connection(lambda: tunnel, POD_IP, self.port, ssl=ctx, server_hostname="")
        await tunnel.ready
        return tunnel

    async def forgotten(self, tunnel: ClientTunnel) -> None:
        """Wait until both ends of ``tunnel`` hold no stream: an ended stream must not linger."""
        await eventually_async(lambda: tunnel.streams == {} and self.acceptor.tunnels[0].streams == {},
                               what="both ends to forget the ended stream")

    async def stream(self, tunnel: ClientTunnel, protocol: Sink, port: int = 8080) -> int:
        stream = tunnel.open_stream(f"{POD_IP}:{port}")
        status = await stream.response  # type: ignore[misc]
        if status == 200:
            stream.connect(protocol)
            stream.resume_reading()
        return status


def run(test: Callable[[Setup], Awaitable[None]], acceptor: Acceptor | None = None) -> None:
    async def main() -> None:
        ca = TestCa()
        acceptor_ = acceptor or Acceptor()
        server = await asyncio.get_running_loop().create_server(
            lambda: ServerTunnel(acceptor_), POD_IP, 0, ssl=ca.server_context(SERVER_ID))
        try:
            await test(Setup(ca, acceptor_, server.sockets[0].getsockname()[1], server))
        finally:
            server.close()
            for t in list(acceptor_.tunnels):
                t.transport.abort()  # type: ignore[union-attr]

    uvloop.run(asyncio.wait_for(main(), 30))


def test_bytes_both_ways_with_half_close() -> None:
    payload = os.urandom(9 << 20)  # more than a stream window: needs WINDOW_UPDATEs

    async def test(s: Setup) -> None:
        tunnel = await s.tunnel()
        sink = Sink()
        assert await s.stream(tunnel, sink) == 200
        sink.transport.write(payload)  # type: ignore[union-attr]
        sink.transport.write_eof()  # type: ignore[union-attr]
        assert await sink.eof == payload  # the echo's EOF came after all of it
        sink.transport.close()  # type: ignore[union-attr]
        assert await sink.lost is None
        await s.forgotten(tunnel)
        assert tunnel.streams_total == 1

    run(test)


def test_many_streams_share_one_connection() -> None:
    async def test(s: Setup) -> None:
        tunnel = await s.tunnel()

        async def one(i: int) -> bytes:
            sink = Sink()
            assert await s.stream(tunnel, sink) == 200
            sink.transport.write(b"hello %d" % i)  # type: ignore[union-attr]
            sink.transport.write_eof()  # type: ignore[union-attr]
            got = await sink.eof
            sink.transport.close()  # type: ignore[union-attr]
            return got

        got = await asyncio.gather(*(one(i) for i in range(50)))
        assert got == [b"hello %d" % i for i in range(50)]
        assert len(s.acceptor.tunnels) == 1 and tunnel.streams_total == 50

    run(test)


def test_a_slow_reader_stops_the_sender_within_the_window() -> None:
    """The server's reader holds back: DATA waits unacknowledged, the client is told to pause."""
    held: list[Sink] = []

    def held_back() -> Sink:
        sink = Sink()
        held.append(sink)
        return sink

    async def test(s: Setup) -> None:
        tunnel = await s.tunnel()
        sink = Sink()
        assert await s.stream(tunnel, sink) == 200
        [server_side] = await eventually_async(lambda: held, what="the server's end of the stream")
        server_stream = server_side.transport
        server_stream.pause_reading()  # type: ignore[union-attr]
        chunk = b"x" * (1 << 20)
        writes = 0
        while not sink.paused and writes < 64:  # as the relay does: stop when told to
            sink.transport.write(chunk)  # type: ignore[union-attr]
            writes += 1
            await asyncio.sleep(0)  # one loop pass, as between the relay's reads: the window's news arrives
        assert sink.paused, "the sender was never told to pause"
        await asyncio.sleep(0.2)  # not a condition: time for bytes beyond the window to show up if sent
        waiting = sum(len(d) for d, _ in server_stream._inbox)  # type: ignore[union-attr]
        assert len(server_side.data) + waiting <= TUNED.stream  # nothing beyond the window was sent
        assert sink.transport.get_write_buffer_size() <= len(chunk)  # type: ignore[union-attr]
        server_stream.resume_reading()  # type: ignore[union-attr]
        sink.transport.write_eof()  # type: ignore[union-attr]
        await eventually_async(lambda: len(server_side.data) == writes * len(chunk),
                               what="the held-back bytes to arrive")

    run(test, Acceptor(make=held_back))


@pytest.mark.parametrize("side", ["server", "client"])
def test_a_reset_reaches_the_other_side(side: str) -> None:
    async def test(s: Setup) -> None:
        tunnel = await s.tunnel()
        sink = Sink()
        assert await s.stream(tunnel, sink) == 200
        sink.transport.write(b"ping")  # type: ignore[union-attr]
        await eventually_async(lambda: sink.data == b"ping", what="the echo: the stream works both ways")
        [server_side] = s.acceptor.protocols
        resetter, other = (server_side, sink) if side == "server" else (sink, server_side)
        resetter.transport.abort()  # type: ignore[union-attr]
        assert isinstance(await other.lost, StreamReset)

    run(test)


def test_a_lost_connection_fails_its_streams_at_once() -> None:
    async def test(s: Setup) -> None:
        tunnel = await s.tunnel()
        sinks = [Sink() for _ in range(3)]
        for sink in sinks:
            assert await s.stream(tunnel, sink) == 200
        s.acceptor.tunnels[0].transport.abort()  # type: ignore[union-attr]
        for sink in sinks:
            assert isinstance(await asyncio.wait_for(sink.lost, 2), StreamReset)
        assert tunnel.lost and tunnel.streams == {}

    run(test)


@pytest.mark.parametrize("status", [401, 503])
def test_a_refusal_ends_the_stream(status: int) -> None:
    async def test(s: Setup) -> None:
        tunnel = await s.tunnel()
        assert await s.stream(tunnel, Sink()) == status
        await s.forgotten(tunnel)
        assert await s.stream(tunnel, Sink()) == status  # the connection is still good

    run(test, Acceptor(status=status))


@pytest.mark.parametrize("authority", ["10.9.9.9:8080", "nonsense", f"{POD_IP}:0"])
def test_a_connect_elsewhere_is_a_bad_request(authority: str) -> None:
    async def test(s: Setup) -> None:
        tunnel = await s.tunnel()
        stream = tunnel.open_stream(authority)
        assert await stream.response == 400  # type: ignore[misc]
        assert s.acceptor.refusals == ["refused_400"]

    run(test)


def test_the_client_refuses_a_server_with_another_identity() -> None:
    async def test(s: Setup) -> None:
        with pytest.raises(TunnelError) as e:
            await s.tunnel(expected=spiffe("shop", "someone-else"))
        assert e.value.outcome == "identity_mismatch"
        assert "expected spiffe://cluster.local/ns/shop/sa/someone-else" in str(e.value)

    run(test)


def test_the_server_refuses_a_client_certificate_without_identity() -> None:
    async def test(s: Setup) -> None:
        loop = asyncio.get_running_loop()
        ctx = s.ca.client_context(None)
        tunnel = ClientTunnel(ctx, "", SERVER_ID, "", 60.0, lambda t: None)
        await loop.create_connection(lambda: tunnel, POD_IP, s.port, ssl=ctx, server_hostname="")
        await tunnel.ready
        stream = tunnel.open_stream(f"{POD_IP}:8080")
        with pytest.raises(StreamReset):
            await stream.response  # type: ignore[misc]
        assert s.acceptor.refusals == ["refused_identity"]

    run(test)


def test_the_server_refuses_a_client_of_another_trust_domain() -> None:
    """A valid chain is not enough: ns/shop/sa/client of another mesh is not our client."""
    async def test(s: Setup) -> None:
        foreign = "spiffe://other.mesh/ns/shop/sa/client"
        ctx = s.ca.client_context(foreign)
        tunnel = ClientTunnel(ctx, foreign, SERVER_ID, "", 60.0, lambda t: None)
        await asyncio.get_running_loop().create_connection(lambda: tunnel, POD_IP, s.port, ssl=ctx,
                                                           server_hostname="")
        await tunnel.ready
        with pytest.raises(StreamReset):
            await tunnel.open_stream(f"{POD_IP}:8080").response  # type: ignore[misc]
        assert s.acceptor.refusals == ["refused_identity"] and s.acceptor.tunnels == []

    run(test)


def test_the_client_refuses_a_server_of_another_trust_domain() -> None:
    async def test(s: Setup) -> None:
        with pytest.raises(TunnelError) as e:
            await s.tunnel(expected="spiffe://other.mesh/ns/shop/sa/catalog")
        assert e.value.outcome == "identity_mismatch"
        assert "not in trust domain 'other.mesh'" in str(e.value)

    run(test)


def test_a_certificate_from_another_ca_fails_the_handshake() -> None:
    async def test(s: Setup) -> None:
        with pytest.raises((ssl.SSLError, ConnectionResetError, StreamReset)):
            tunnel = await s.tunnel(ctx=TestCa().client_context(CLIENT_ID))
            # TLS 1.3: the client may finish before the server has refused its certificate
            await tunnel.open_stream(f"{POD_IP}:8080").response  # type: ignore[misc]
        assert s.acceptor.tunnels == []

    run(test)


def test_a_connection_that_sends_no_request_is_closed() -> None:
    async def test(s: Setup) -> None:
        loop = asyncio.get_running_loop()
        reader, writer = await asyncio.open_connection(POD_IP, s.port, ssl=s.ca.client_context(CLIENT_ID),
                                                       server_hostname="")
        start = loop.time()
        while await asyncio.wait_for(reader.read(65536), 5):  # the server's SETTINGS, then EOF
            pass
        assert loop.time() - start < 2
        assert s.acceptor.refusals == ["request_timeout"]
        writer.close()

    async def main() -> None:
        ca = TestCa()
        acceptor = Acceptor()
        server = await asyncio.get_running_loop().create_server(
            lambda: ServerTunnel(acceptor, first_request_timeout=0.3), POD_IP, 0,
            ssl=ca.server_context(SERVER_ID))
        try:
            await test(Setup(ca, acceptor, server.sockets[0].getsockname()[1], server))
        finally:
            server.close()

    uvloop.run(asyncio.wait_for(main(), 30))


def test_data_frames_describe_themselves_without_copying_their_payload() -> None:
    """h2 formats every received frame for its trace log; tunnel.py makes that cheap for DATA."""
    from hyperframe.frame import DataFrame

    assert repr(DataFrame(1, b"x" * 100000)) == "DataFrame(stream_id=1, flags=[]): data=<100000 bytes>"
