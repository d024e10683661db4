"""The inbound listener (15008 in each meshed pod): hop connections from other agents.

Read the CONNECT head, connect to the application inside the pod, answer 200 and relay; or
answer 400 (not a CONNECT for this pod) or 503 (the application did not accept). A peer that
does not finish its request in time is dropped, so a silent client holds nothing for long.
"""

from __future__ import annotations

import asyncio
import logging

from nodemesh.agent.inpod.pod import PodNetns
from nodemesh.agent.proxy.connect import (
    STATUS_BAD_REQUEST,
    STATUS_OK,
    STATUS_UNAVAILABLE,
    ConnectRequest,
    HandshakeError,
    ServerHandshake,
)
from nodemesh.agent.proxy.conntrack import INBOUND, Connection
from nodemesh.agent.proxy.proxy import Accepted, NodeProxy

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 10.0


class InboundAccept(Accepted):
    """Reads the handshake, then waits (as ``Accepted``) while the app is connected."""

    __slots__ = ("proxy", "pod", "handshake", "timer")

    def __init__(self, proxy: NodeProxy, pod: PodNetns) -> None:
        super().__init__()
        self.proxy = proxy
        self.pod = pod
        self.handshake: ServerHandshake | None = ServerHandshake()
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # read: the handshake comes first
        self.timer = asyncio.get_running_loop().call_later(HANDSHAKE_TIMEOUT, self._timed_out)

    def data_received(self, data: bytes) -> None:
        if self.handshake is None or self.task is not None:
            super().data_received(data)
        else:
            self._feed(data)

    def eof_received(self) -> bool:
        if self.task is not None:
            return super().eof_received()
        if self.handshake is not None:
            self._feed(b"")
        return False

    def _feed(self, data: bytes) -> None:
        handshake = self.handshake
        assert handshake is not None and self.transport is not None
        try:
            request = handshake.feed(data)
        except HandshakeError as e:
            self._refuse(e.status, str(e))
            return
        if request is None:
            return
        self._cancel_timer()
        self.transport.pause_reading()
        if request.host != self.pod.workload.ip:
            self._refuse(STATUS_BAD_REQUEST, f"CONNECT to {request.host} reached pod {self.pod.workload.ip}")
            return
        self.early += handshake.leftover()
        conn = self.proxy.table.open(INBOUND, request.source, f"{request.host}:{request.port}")
        self.task = asyncio.get_running_loop().create_task(self._deliver(conn, request, handshake))

    async def _deliver(self, conn: Connection, request: ConnectRequest, handshake: ServerHandshake) -> None:
        transport = self.transport
        assert transport is not None
        conn.destination = self.pod.workload.ref
        conn.upstream = f"{request.host}:{request.port}"
        conn.via = "app"
        try:
            sock = await self.pod.connect(request.host, request.port, self.proxy.connect_timeout)
        except asyncio.CancelledError:
            self.proxy.table.failed(conn, "downstream_closed")
            raise
        except OSError as e:  # TimeoutError included
            self.proxy.table.failed(conn, "app_unavailable")
            log.info("inbound %s -> %s: application did not accept: %s", conn.source, conn.upstream, e)
            transport.write(handshake.respond(STATUS_UNAVAILABLE))
            transport.close()
            return
        await self.proxy.splice(conn, self, sock, to_downstream=handshake.respond(STATUS_OK))

    def _refuse(self, status: int, why: str) -> None:
        self._cancel_timer()
        self.proxy.table.totals[(INBOUND, f"refused_{status}")] += 1
        log.info("inbound connection refused with %d: %s", status, why)
        assert self.handshake is not None and self.transport is not None
        self.transport.write(self.handshake.respond(status))
        self.handshake = None  # ignore anything more the peer sends
        self.transport.close()

    def _timed_out(self) -> None:
        self.proxy.table.totals[(INBOUND, "handshake_timeout")] += 1
        self.transport.abort()  # type: ignore[union-attr]

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        super().connection_lost(exc)
