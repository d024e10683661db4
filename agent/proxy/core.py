"""What every listener of the node proxy shares, and the one way connections are spliced.

``ProxyCore`` holds what the handlers of the outbound, HBONE and plaintext listeners read:
the current view, routing, the outbound tunnel pool, the registry of inbound tunnels, the
connection table and this node's served pods (for the same-node path). The listeners
themselves are opened by ``nodemesh.agent.proxy.node.NodeProxy``, above the handlers, so
that no handler module imports the one that opens it.

Both directions start and end the same way: an accepted connection (or an accepted HBONE
stream) waits (``Accepted``) while its upstream is opened, then the two become a relayed pair
(``NodeProxy.splice``), so the waiting, the relay set-up, its accounting and its failure
handling exist once. An upstream is a connected socket, or an HBONE stream (a transport of its
own, see ``nodemesh.agent.proxy.hbone.stream``).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Callable

from nodemesh.agent.inpod.pod import PodNetns
from nodemesh.agent.proxy import relay
from nodemesh.agent.proxy.authorizer import Authorizer
from nodemesh.agent.proxy.balance import idle
from nodemesh.agent.proxy.conntrack import Connection, ConnectionTable
from nodemesh.agent.proxy.hbone.pool import TunnelPool
from nodemesh.agent.proxy.hbone.server import ServerTunnels
from nodemesh.agent.proxy.hbone.stream import StreamTransport
from nodemesh.agent.proxy.route import Router
from nodemesh.agent.state.store import View
from nodemesh.agent.tls.contexts import Identities

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


class PodAccepted(Accepted):
    """An ``Accepted`` on one of a pod's listeners: it knows the proxy and the pod."""

    __slots__ = ("proxy", "pod")

    def __init__(self, proxy: "ProxyCore", pod: PodNetns) -> None:
        super().__init__()
        self.proxy = proxy
        self.pod = pod


class ProxyCore:
    def __init__(
        self,
        view: Callable[[], View | None],
        original_dst: OriginalDst,
        identities: Identities,
        connect_timeout: float = 5.0,
        metrics: bool = True,
    ) -> None:
        self.view = view
        self.original_dst = original_dst
        self.identities = identities
        self.pool = TunnelPool(identities, connect_timeout)  # outbound HBONE connections
        self.server_tunnels = ServerTunnels()  # inbound ones, on the pods' 15008 listeners
        self.connect_timeout = connect_timeout
        # Decides every connection into a local pod (``delivery.connect_app``), over the view
        self.authorizer = Authorizer(view)
        # Whether this agent exports spans: the traceparent it sends says "sampled" then.
        self.tracing = False
        self.router = Router(connect_timeout)
        self._idle_sweep: asyncio.TimerHandle | None = None  # scheduled while a connection has an idle timeout
        self.table = ConnectionTable(metrics)
        # This node's served pods by IP: traffic between two of them takes the same-node path,
        # without TLS. Only ``NodeProxy`` changes it, through serve/unserve.
        self._pods: dict[str, PodNetns] = {}

    def local_pod(self, ip: str) -> PodNetns | None:
        """The pod served on this node at ``ip``, if any."""
        return self._pods.get(ip)

    def serve(self, pod: PodNetns) -> None:
        self._pods[pod.workload.ip] = pod

    def unserve(self, pod: PodNetns) -> None:
        if self._pods.get(pod.workload.ip) is pod:
            del self._pods[pod.workload.ip]

    async def splice(
        self,
        conn: Connection,
        accepted: Accepted,
        upstream: socket.socket | StreamTransport,
    ) -> None:
        """Relay between a waiting accepted connection and its upstream, from now on."""
        loop = asyncio.get_running_loop()
        downstream = accepted.transport
        assert downstream is not None

        def on_lost(pipe: relay.Pipe, exc: Exception | None) -> None:
            if down.lost and up.lost:
                self.table.closed(conn)

        down, up = relay.pair(on_lost)
        conn.down, conn.up = down, up
        down.attach(downstream)
        if isinstance(upstream, socket.socket):
            try:
                await loop.create_connection(lambda: up, sock=upstream)
            except BaseException:
                upstream.close()
                raise
        else:
            upstream.connect(up)
        if downstream.is_closing():  # lost meanwhile; the task's cancellation would come too late
            self.table.failed(conn, "downstream_closed")
            relay.reset(up.transport)  # type: ignore[arg-type]
            return
        if conn.authorization is not None and not self.authorizer.current(conn):
            # the policies changed while the app was being connected: not one byte reaches it
            relay.reset(up.transport)  # type: ignore[arg-type]
            self.fail(conn, downstream, "denied", conn.authorization.reason)
            return
        if accepted.early:
            down.received += len(accepted.early)
            up.transport.write(bytes(accepted.early))  # type: ignore[union-attr]
        downstream.set_protocol(down)
        self.table.established(conn)
        if conn.idle_timeout:
            conn.idle_since = time.monotonic()
            if self._idle_sweep is None:
                self._idle_sweep = loop.call_later(idle.interval(conn.idle_timeout), self._sweep_idle)
        if accepted.eof:
            down.eof_received()
        elif not up.writing_paused:  # writing ``early`` may already have filled the buffer
            downstream.resume_reading()
        if not isinstance(upstream, socket.socket):
            upstream.resume_reading()  # what the stream received meanwhile, then the rest

    def _sweep_idle(self) -> None:
        """Close connections idle past their timeout (gracefully: what is buffered is sent)."""
        expired, interval = idle.sweep(self.table.in_flight.values(), time.monotonic())
        for conn in expired:
            log.info("%s %s -> %s closed: idle for %gs", conn.direction, conn.source, conn.upstream, conn.idle_timeout)
            conn.closed_by = "idle_timeout"
            for pipe in (conn.down, conn.up):
                if pipe is not None and pipe.transport is not None:
                    pipe.transport.close()
        self._idle_sweep = asyncio.get_running_loop().call_later(interval, self._sweep_idle) if interval else None

    def fail(self, conn: Connection, downstream: asyncio.Transport, reason: str, detail: object) -> None:
        """Give up on a connection: count why, log it, reset the client so it knows at once."""
        log.info("%s %s -> %s failed: %s: %s", conn.direction, conn.source, conn.original_dst, reason, detail)
        self.table.failed(conn, reason, detail)
        relay.reset(downstream)
