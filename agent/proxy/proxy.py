"""The node proxy: what outbound and inbound listeners share, and the one way they splice.

Both directions end the same way: an accepted connection (paused since accept) and a
connected upstream socket become a relayed pair. ``NodeProxy.splice`` is that step, so the
relay set-up, its accounting and its failure handling exist once.
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
        downstream: asyncio.Transport,
        upstream_sock: socket.socket,
        to_downstream: bytes = b"",
        to_upstream: bytes = b"",
        downstream_eof: bool = False,
    ) -> None:
        """Relay between a paused accepted transport and a connected socket, from now on.

        ``to_downstream``/``to_upstream`` are bytes already read by a handshake, written first;
        ``downstream_eof`` says the client already half-closed, which is passed on.
        """
        loop = asyncio.get_running_loop()

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
        if to_upstream:
            up.transport.write(to_upstream)  # type: ignore[union-attr]
        downstream.set_protocol(down)
        self.table.established(conn)
        if downstream_eof:
            down.eof_received()
        else:
            downstream.resume_reading()

    def fail(self, conn: Connection, downstream: asyncio.Transport, reason: str, detail: object) -> None:
        """Give up on a connection: count why, log it, reset the client so it knows at once."""
        log.info("%s %s -> %s failed: %s: %s", conn.direction, conn.source, conn.original_dst, reason, detail)
        self.table.failed(conn, reason)
        relay.reset(downstream)
