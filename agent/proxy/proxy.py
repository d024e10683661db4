"""The node proxy: what outbound and inbound listeners share, and the one way they splice.

Both directions start and end the same way: an accepted connection waits (``Accepted``)
while its upstream is opened, then the two become a relayed pair (``NodeProxy.splice``), so
the waiting, the relay set-up, its accounting and its failure handling exist once.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Callable

from nodemesh.agent.proxy import relay
from nodemesh.agent.proxy.conntrack import Connection, ConnectionTable
from nodemesh.agent.proxy.hop import Hop
from nodemesh.agent.proxy.route import Router
from nodemesh.agent.state.store import View

log = logging.getLogger(__name__)

OriginalDst = Callable[[tuple[str, int], tuple[str, int]], "tuple[str, int] | None"]


class Accepted(asyncio.Protocol):
    """A just-accepted connection waiting for its upstream.

    Reading is paused, but uvloop starts reading right after ``connection_made`` whatever
    the protocol did there: so what arrives meanwhile is kept (one read at most, reading is
    paused again at once) and sent upstream first, and an early EOF is passed on after it.
    Losing the connection cancels the upstream work.
    """

    __slots__ = ("transport", "early", "eof", "task")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.early = bytearray()
        self.eof = False
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.pause_reading()  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.early += data
        self.transport.pause_reading()  # type: ignore[union-attr]

    def eof_received(self) -> bool:
        self.eof = True
        return True  # keep the transport: the reply direction has not even started

    def connection_lost(self, exc: Exception | None) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()


class NodeProxy:
    def __init__(
        self,
        view: Callable[[], View | None],
        original_dst: OriginalDst,
        hop: Hop,
        connect_timeout: float = 5.0,
    ) -> None:
        self.view = view
        self.original_dst = original_dst
        self.hop = hop
        self.connect_timeout = connect_timeout
        self.router = Router()
        self.table = ConnectionTable()

    async def splice(
        self,
        conn: Connection,
        accepted: Accepted,
        upstream_sock: socket.socket,
        to_downstream: bytes = b"",
    ) -> None:
        """Relay between a waiting accepted connection and a connected socket, from now on.

        ``to_downstream`` is what the upstream already sent during a handshake; it is written
        first, as the bytes the client sent while waiting are written upstream first.
        """
        loop = asyncio.get_running_loop()
        downstream = accepted.transport
        assert downstream is not None

        def on_lost(pipe: relay.Pipe, exc: Exception | None) -> None:
            if down.lost and up.lost:
                self.table.closed(conn)

        down, up = relay.pair(on_lost)
        conn.down, conn.up = down, up
        down.attach(downstream)
        if to_downstream:
            downstream.write(to_downstream)
        try:
            await loop.create_connection(lambda: up, sock=upstream_sock)
        except BaseException:
            upstream_sock.close()
            raise
        if accepted.early:
            down.received += len(accepted.early)
            up.transport.write(bytes(accepted.early))  # type: ignore[union-attr]
        downstream.set_protocol(down)
        self.table.established(conn)
        if accepted.eof:
            down.eof_received()
        elif not up.writing_paused:  # writing ``early`` may already have filled the buffer
            downstream.resume_reading()

    def fail(self, conn: Connection, downstream: asyncio.Transport, reason: str, detail: object) -> None:
        """Give up on a connection: count why, log it, reset the client so it knows at once."""
        log.info("%s %s -> %s failed: %s: %s", conn.direction, conn.source, conn.original_dst, reason, detail)
        self.table.failed(conn, reason)
        relay.reset(downstream)
