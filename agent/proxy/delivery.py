"""Delivery into a meshed pod: authorize, connect to the app from inside the pod, relay.

Three ways in, one way to the app (``connect_app``), so that no path skips authorization:
HBONE streams that other nodes' agents open to the pod's 15008 listener (``HboneAcceptor``,
the acceptor of ``nodemesh.agent.proxy.hbone.server``); connections from pods on this same
node, which skip TLS (``outbound`` calls ``connect_app`` itself); and plaintext from outside
the mesh that the capture program hands to 15006 (``plaintext``). The source identity is
known on the first two (the client certificate, or the source pod's own); plaintext has
none, only an address.
"""

from __future__ import annotations

import asyncio
import logging
import socket

from nodemesh.agent.inpod.pod import PodNetns
from nodemesh.agent.proxy.conntrack import INBOUND, Connection
from nodemesh.agent.proxy.core import Accepted, ProxyCore
from nodemesh.agent.proxy.hbone.client import SERVICE_HEADER
from nodemesh.agent.proxy.hbone.server import STATUS_DENIED, STATUS_UNAVAILABLE, ServerTunnel
from nodemesh.agent.proxy.hbone.stream import StreamTransport
from nodemesh.agent.proxy.tracecontext import TRACEPARENT_HEADER, new_ids, parse_traceparent
from nodemesh.model import Workload

log = logging.getLogger(__name__)

STATUS_OK = 200


class Refused(Exception):
    """Not delivered: ``status`` is the HBONE answer, ``outcome`` what conntrack counts."""

    def __init__(self, status: int, outcome: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.outcome = outcome


async def connect_app(proxy: ProxyCore, pod: PodNetns, conn: Connection, source_ip: str,
                      port: int, timeout: float | None = None) -> socket.socket:
    """A socket connected to ``port`` of the pod's app, from inside the pod, if policy allows.

    ``conn.source_identity`` is "" for plaintext from outside the mesh; ``source_ip`` is where
    the connection comes from (the source pod, or the plaintext client). Both and the port stay
    on ``conn``, with the decision, for the re-check when policies change. ``timeout``: the
    connect's, None for the agent's (the same-node path passes its service's).
    """
    workload = pod.workload
    conn.source_ip, conn.app_port = source_ip, port
    decision = proxy.authorizer.decide(conn, workload)
    if not decision.allowed:
        raise Refused(STATUS_DENIED, "denied", f"{conn.source_identity or source_ip} may not connect "
                      f"to {workload.ref} port {port}: {decision.reason}")
    try:
        return await pod.connect(workload.ip, port, proxy.connect_timeout if timeout is None else timeout)
    except OSError as e:  # TimeoutError included
        raise Refused(STATUS_UNAVAILABLE, "app_unavailable",
                      f"{workload.ref} did not accept on port {port}: {e or 'timed out'}") from e


class HboneAcceptor:
    """The acceptor of one pod's HBONE listener: conntrack, the tunnel registry, delivery."""

    def __init__(self, proxy: ProxyCore, pod: PodNetns) -> None:
        self.proxy = proxy
        self.pod = pod

    @property
    def pod_ip(self) -> str:
        return self.pod.workload.ip

    @property
    def identity(self) -> str:
        return self.pod.workload.identity

    def peer_node(self, tunnel: ServerTunnel) -> str:
        source = self._source(_peer_ip(tunnel))
        return source.node if source is not None else ""

    def opened(self, tunnel: ServerTunnel) -> None:
        self.proxy.server_tunnels.add(tunnel)

    def closed(self, tunnel: ServerTunnel) -> None:
        self.proxy.server_tunnels.discard(tunnel)

    def refused(self, outcome: str, detail: str) -> None:
        self.proxy.table.refused(INBOUND, outcome)
        log.info("inbound HBONE to %s refused (%s): %s", self.pod.workload.ref, outcome, detail)

    def stream(self, tunnel: ServerTunnel, stream: StreamTransport, port: int,
               headers: dict[bytes, bytes]) -> None:
        peer_ip = _peer_ip(tunnel)
        source = self._source(peer_ip)
        workload = self.pod.workload
        conn = self.proxy.table.open(INBOUND, source.ref if source is not None else tunnel.peer(),
                                     f"{workload.ip}:{port}")
        conn.destination = workload.ref
        conn.upstream = conn.original_dst
        conn.via = "hbone"
        conn.connection_security_policy = "mutual_tls"
        conn.source_identity = tunnel.source_identity
        conn.destination_identity = workload.identity
        conn.source_workload, conn.destination_workload = source, workload
        parent = parse_traceparent(headers.get(TRACEPARENT_HEADER, b""))
        conn.trace_id, conn.span_id = new_ids()
        if parent is not None:  # the source agent's span: this one is its child
            conn.trace_id, conn.parent_span_id = parent.trace_id, parent.span_id
        view = self.proxy.view()
        if view is not None:
            claimed = headers.get(SERVICE_HEADER)
            conn.service = view.inbound_service(workload, None if claimed is None else claimed.decode(errors="replace"))
        stream.connect(AcceptedStream(self.proxy, self.pod, conn, peer_ip, port))

    def _source(self, peer_ip: str) -> Workload | None:
        """The workload the connection comes from (its socket lives in the source pod)."""
        view = self.proxy.view()
        return view.by_ip.get(peer_ip) if view is not None and peer_ip else None


def _peer_ip(tunnel: ServerTunnel) -> str:
    peer = tunnel.transport.get_extra_info("peername") if tunnel.transport else None
    return peer[0] if peer else ""


class AcceptedStream(Accepted):
    """One accepted CONNECT stream, waiting (as ``Accepted``) while the app is connected."""

    __slots__ = ("proxy", "pod", "conn", "source_ip", "port")

    def __init__(self, proxy: ProxyCore, pod: PodNetns, conn: Connection, source_ip: str, port: int) -> None:
        super().__init__()
        self.proxy = proxy
        self.pod = pod
        self.conn = conn
        self.source_ip = source_ip
        self.port = port

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.task = asyncio.get_running_loop().create_task(self._deliver())

    async def _deliver(self) -> None:
        stream: StreamTransport = self.transport  # type: ignore[assignment]
        conn = self.conn
        try:
            sock = await connect_app(self.proxy, self.pod, conn, self.source_ip, self.port)
        except asyncio.CancelledError:
            self.proxy.table.failed(conn, "downstream_closed")
            raise
        except Refused as e:
            log.info("inbound %s -> %s: %s", conn.source_identity, conn.upstream, e)
            self.proxy.table.failed(conn, e.outcome, e)
            stream.respond(e.status)
            return
        stream.respond(STATUS_OK)
        await self.proxy.splice(conn, self, sock)
