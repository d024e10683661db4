"""The relay (ProxyCore.splice and its pipes) on real loopback sockets, on uvloop."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from typing import Awaitable, Callable

import pytest
import uvloop
from eventually import eventually_async

from nodemesh.agent.proxy.conntrack import OUTBOUND
from nodemesh.agent.proxy.core import Accepted, ProxyCore
from nodemesh.agent.proxy.relay import WRITE_BUFFER_HIGH

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Spliced(Accepted):
    """Accepts like the outbound listener: wait, connect upstream, splice."""

    def __init__(self, proxy: ProxyCore, upstream: tuple[str, int]) -> None:
        super().__init__()
        self.proxy, self.upstream = proxy, upstream

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.task = asyncio.get_running_loop().create_task(self._splice())

    async def _splice(self) -> None:
        sock = socket.socket()
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, self.upstream)
        conn = self.proxy.table.open(OUTBOUND, "test", "%s:%d" % self.upstream)
        await self.proxy.splice(conn, self, sock)


async def through_proxy(handler: Handler) -> tuple[ProxyCore, tuple[str, int], list[asyncio.AbstractServer]]:
    loop = asyncio.get_running_loop()
    app = await asyncio.start_server(handler, "127.0.0.1", 0)
    proxy = ProxyCore(view=lambda: None, original_dst=lambda p, l: None, identities=None)  # type: ignore[arg-type]
    front = await loop.create_server(lambda: Spliced(proxy, app.sockets[0].getsockname()), "127.0.0.1", 0)
    return proxy, front.sockets[0].getsockname(), [app, front]


def run(coro: Awaitable[None]) -> None:
    uvloop.run(asyncio.wait_for(coro, 30))  # type: ignore[arg-type]


def test_half_close_each_way_keeps_every_byte() -> None:
    request, reply = os.urandom(3 << 20), os.urandom(2 << 20)

    async def app(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got = await reader.read()  # until the client's EOF, passed on by the proxy
        writer.write(reply if got == request else b"corrupt")
        await writer.drain()
        writer.close()

    async def main() -> None:
        proxy, addr, servers = await through_proxy(app)
        reader, writer = await asyncio.open_connection(*addr)
        writer.write(request)
        writer.write_eof()
        assert await reader.read() == reply
        writer.close()
        await eventually_async(lambda: proxy.table.in_flight == {}, what="the relayed connection to end")
        assert proxy.table.bytes["outbound_from_downstream"] == len(request)
        assert proxy.table.bytes["outbound_from_upstream"] == len(reply)
        for s in servers:
            s.close()

    run(main())


def test_back_pressure_bounds_what_the_proxy_buffers() -> None:
    total = 64 << 20
    release = asyncio.Event

    async def main() -> None:
        gate = release()
        received = 0

        async def slow_app(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal received
            await gate.wait()
            while chunk := await reader.read(1 << 16):
                received += len(chunk)
            writer.close()

        proxy, addr, servers = await through_proxy(slow_app)
        sock = socket.create_connection(addr)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        sender = loop.create_task(loop.sock_sendall(sock, b"x" * total))
        # not a condition: the app reads nothing for a second, long enough for an unbounded proxy
        # to take far more than its watermark; the sender must stall instead
        await asyncio.sleep(1.0)
        assert not sender.done()
        conn = next(iter(proxy.table.in_flight.values()))
        buffered = conn.up.transport.get_write_buffer_size()
        assert buffered <= WRITE_BUFFER_HIGH + (1 << 18), buffered
        gate.set()
        await sender
        sock.shutdown(socket.SHUT_WR)
        await loop.sock_recv(sock, 1)
        sock.close()
        assert received == total
        for s in servers:
            s.close()

    run(main())


def send_reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER on, 0 s), as a crashing peer's kernel would; done here, not
    with the relay's own ``reset``, so that the test does not lean on the code it checks."""
    writer.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                                         struct.pack("ii", 1, 0))
    writer.transport.abort()


@pytest.mark.parametrize("side", ["app", "client"])
def test_a_reset_on_one_side_resets_the_other(side: str) -> None:
    """A reset, not a clean EOF: after an EOF the other side would take a truncated stream as whole."""
    async def main() -> None:
        app_got = bytearray()
        app_saw: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

        async def app(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if side == "app":
                send_reset(writer)
                return
            try:
                while data := await reader.read(65536):
                    app_got.extend(data)
            except OSError as e:
                app_saw.set_result(e)
            else:
                app_saw.set_result(None)  # a clean EOF

        proxy, addr, servers = await through_proxy(app)
        reader, writer = await asyncio.open_connection(*addr)
        if side == "app":
            with pytest.raises(ConnectionResetError):
                await reader.read()
        else:
            writer.write(b"partial")
            await eventually_async(lambda: app_got == b"partial", what="the bytes before the reset to reach the app")
            send_reset(writer)
            saw = await asyncio.wait_for(app_saw, 5)
            assert isinstance(saw, ConnectionResetError), f"the app saw {saw!r}, not a reset"
        await eventually_async(lambda: proxy.table.in_flight == {}, what="the relayed connection to end")
        for s in servers:
            s.close()

    run(main())
