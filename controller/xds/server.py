"""The controller's gRPC API on grpc.aio: MeshConfig.StreamConfig, the CA, and ``serve``.

Each stream: the agent says hello with its node name, gets a snapshot of its node's view, then
a delta for every model version that changes that view; meanwhile its acks are read on a task of
their own and recorded in its AgentSession.

There is no plaintext mode: the port always serves TLS (a certificate from the controller's CA)
and every call must carry a node token (``auth``); a stream's hello must name the token's node.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import logging
import socket
from dataclasses import dataclass
from typing import AsyncIterator, Callable, Protocol

import grpc

from nodemesh.api import mesh_pb2 as pb
from nodemesh.api import mesh_pb2_grpc
from nodemesh.controller.ca.authority import Authority
from nodemesh.controller.ca.service import CaServicer
from nodemesh.controller.ca.tokens import NodeTokens
from nodemesh.controller.xds.auth import authenticate
from nodemesh.controller.xds.feed import ModelFeed
from nodemesh.controller.xds.tls import server_credentials
from nodemesh.controller.xds.session import AckResult, AgentSession
from nodemesh.errors import UserError
from nodemesh.model import MeshModel

log = logging.getLogger(__name__)

DEFAULT_PORT = 15012
DEFAULT_CERT_LIFETIME = dt.timedelta(hours=24)
STOP_GRACE_SECONDS = 2.0


class ModelSource(Protocol):
    """Where the model comes from (the file source; later the Kubernetes API)."""

    def load(self) -> MeshModel:
        """The model now; raises ConfigError when the objects are unusable."""

    async def watch(self, publish: Callable[[MeshModel], None]) -> None:
        """Call ``publish`` with each new valid model; runs until cancelled."""


class ListenError(UserError):
    """The server cannot listen where it was asked to; the message says what to do."""


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) -> (host, port); ValueError with the reason."""
    host, sep, port_text = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT (e.g. 0.0.0.0:{DEFAULT_PORT}, "
                         f"127.0.0.1:0 for any free port)")
    return host, int(port_text)


def _check_bindable(host: str, port: int) -> None:
    """Fail with the real reason (port in use, address not here) before gRPC's vaguer error."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror}; give an address of "
                          "this host with --listen HOST:PORT") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            hint = (f"another process holds port {port}: stop it (`ss -ltnp 'sport = :{port}'` "
                    "shows which) or choose another port with --listen HOST:PORT"
                    if exc.errno == errno.EADDRINUSE else "give an address of this host with --listen HOST:PORT")
            raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror}; {hint}") from None


class ConfigServicer(mesh_pb2_grpc.MeshConfigServicer):
    def __init__(self, feed: ModelFeed, tokens: NodeTokens, trust_bundle: bytes) -> None:
        self.feed = feed
        self.tokens = tokens
        self.trust_bundle = trust_bundle
        self.sessions: set[AgentSession] = set()

    async def StreamConfig(self, request_iterator: AsyncIterator[pb.AgentMessage],
                           context: grpc.aio.ServicerContext) -> AsyncIterator[pb.ConfigUpdate]:
        node = await authenticate(context, self.tokens)
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("msg") != "hello" or not first.hello.node:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "open the stream with AgentHello{node: <this node's name>}")
        if first.hello.node != node:
            log.warning("refused a config stream from %s: hello for node %s with node %s's token",
                        context.peer(), first.hello.node, node)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                f"this token belongs to node {node}, not to node {first.hello.node}: "
                                "give each agent its own node's token")
        session = AgentSession(node=node, peer=context.peer())
        self.sessions.add(session)
        log.info("agent connected: node %s from %s (agent version %r, last applied version %d)",
                 session.node, session.peer, first.hello.agent_version, first.hello.last_version)
        acks = asyncio.create_task(self._read_acks(session, request_iterator))
        try:
            current = self.feed.current
            yield session.update_for(current.version, current.model, self.trust_bundle)
            while (current := await self.feed.next_after(current.version)) is not None:
                update = session.update_for(current.version, current.model, self.trust_bundle)
                if update is not None:
                    yield update
        finally:
            acks.cancel()
            self.sessions.discard(session)
            log.info("agent disconnected: node %s from %s", session.node, session.peer)

    async def _read_acks(self, session: AgentSession,
                         request_iterator: AsyncIterator[pb.AgentMessage]) -> None:
        async for message in request_iterator:
            if message.WhichOneof("msg") != "ack":
                log.warning("agent of node %s sent a second hello; ignored", session.node)
                continue
            ack = message.ack
            result = session.on_ack(ack)
            if result is AckResult.ACCEPTED:
                log.info("agent of node %s accepted version %d", session.node, ack.version)
            elif result is AckResult.REJECTED:
                log.warning("agent of node %s rejected version %d: %s", session.node,
                            ack.version, ack.reason)
            else:
                log.warning("agent of node %s acked version %d, which it was never sent "
                            "(last sent: %d); ignored", session.node, ack.version,
                            session.sent_version)


@dataclass
class RunningServer:
    """A started controller server; ``port`` is the bound one (useful with port 0)."""

    host: str
    port: int
    feed: ModelFeed
    servicer: ConfigServicer
    watcher: asyncio.Task[None]
    _server: grpc.aio.Server

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def agents(self) -> list[AgentSession]:
        return sorted(self.servicer.sessions, key=lambda s: (s.node, s.peer))

    async def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """End every stream cleanly (OK status), stop watching the source, close the port."""
        self.watcher.cancel()
        self.feed.close()
        await self._server.stop(grace)


async def serve(source: ModelSource, listen: str, authority: Authority, tokens: NodeTokens,
                cert_lifetime: dt.timedelta = DEFAULT_CERT_LIFETIME) -> RunningServer:
    """Load the model, listen on ``listen`` (HOST:PORT, TLS) and serve agents until ``stop()``:
    config streams, and workload certificates from ``authority`` valid for ``cert_lifetime``.

    Raises ConfigError if the source's objects are unusable, ListenError if the address is not
    available.
    """
    host, port = parse_listen(listen)
    feed = ModelFeed(source.load())
    _check_bindable(host, port)
    # No SO_REUSEPORT: a second controller on the same port must fail, not share the traffic.
    # Agents ping every 10 s to notice a vanished controller; gRPC servers refuse pings more
    # often than every 5 minutes by default ("too many pings" then GOAWAY): accept theirs.
    server = grpc.aio.server(options=[
        ("grpc.so_reuseport", 0),
        ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
        ("grpc.keepalive_permit_without_calls", 1),
    ])
    servicer = ConfigServicer(feed, tokens, authority.bundle_pem)
    mesh_pb2_grpc.add_MeshConfigServicer_to_server(servicer, server)
    mesh_pb2_grpc.add_CertificateAuthorityServicer_to_server(
        CaServicer(feed, authority, tokens, cert_lifetime), server)
    try:
        bound = server.add_secure_port(listen, server_credentials(authority, host))
    except RuntimeError as exc:
        raise ListenError(f"cannot listen on {listen}: {exc}") from None
    await server.start()
    watcher = asyncio.create_task(source.watch(feed.publish), name="model-source")
    running = RunningServer(host=host, port=bound, feed=feed, servicer=servicer, watcher=watcher,
                            _server=server)
    log.info("listening on %s", running.address)
    return running
