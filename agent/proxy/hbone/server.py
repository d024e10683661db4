"""The server side of an HBONE connection: the 15008 listener inside a meshed pod.

TLS has verified the client's chain (a certificate is required); the client's SPIFFE id is
read once per connection. Each stream must be ``CONNECT <this pod's IP>:<port>``, else 400;
what follows (authorization, connecting to the app, relaying) is the acceptor's
(``nodemesh.agent.proxy.delivery``). Nothing a peer sends can hold much for long: a connection
that sends no request in time is closed, and so is one idle for long; header lists and frames
are capped (``tunnel``), buffering per stream is bounded by the flow-control windows; h2 turns
a protocol violation into a GOAWAY for that connection only.
"""

from __future__ import annotations

import asyncio
import time
from typing import Iterator, Protocol

import h2.events

from nodemesh.agent.proxy.hbone.stream import StreamTransport
from nodemesh.agent.tls.peer import peer_identity
from nodemesh.agent.proxy.hbone.tunnel import TUNED, Tunnel, Windows
from nodemesh.identity import Identity, IdentityError
from nodemesh.metrics import LATENCY_BUCKETS, Buckets

HANDSHAKE_TIMEOUT = 10.0  # for the listener's TLS handshakes (asyncio's ssl_handshake_timeout)
FIRST_REQUEST_TIMEOUT = 10.0
IDLE_TIMEOUT = 120.0  # longer than clients' pool idle timeout (60 s): they close first

STATUS_BAD_REQUEST = 400
STATUS_DENIED = 401
STATUS_UNAVAILABLE = 503

REFUSED_IDENTITY = "refused_identity"  # the acceptor's outcome for a client certificate of no workload


class BadAuthority(ValueError):
    pass


def parse_authority(value: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port``) of a CONNECT request."""
    host, sep, port = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BadAuthority(f"bad CONNECT authority {value!r}")
    return host, int(port)


class Acceptor(Protocol):
    """What a pod's listener does with the connections and streams the server accepts."""

    @property
    def pod_ip(self) -> str: ...
    @property
    def identity(self) -> str: ...  # the pod's SPIFFE id
    def peer_node(self, tunnel: ServerTunnel) -> str:
        """The node the connection comes from ("" if unknown), for ``nodemesh tunnels``."""
        ...

    def opened(self, tunnel: ServerTunnel) -> None: ...
    def closed(self, tunnel: ServerTunnel) -> None: ...
    def refused(self, outcome: str, detail: str) -> None: ...
    def stream(self, tunnel: ServerTunnel, stream: StreamTransport, port: int,
               headers: dict[bytes, bytes]) -> None:
        """Answer (``stream.respond``) and relay; reading is paused until then. ``headers`` are
        the request's (the client's agent may say more than the authority)."""
        ...


class ServerTunnel(Tunnel):
    client = False

    def __init__(self, acceptor: Acceptor, idle_timeout: float = IDLE_TIMEOUT,
                 first_request_timeout: float = FIRST_REQUEST_TIMEOUT, windows: Windows = TUNED) -> None:
        super().__init__(idle_timeout, windows)
        self.acceptor = acceptor
        self.first_request_timeout = first_request_timeout
        # The listener makes its protocol when it accepts the TCP connection and calls
        # connection_made once the TLS handshake is done (uvloop as asyncio): the time between
        # is the handshake's, as the server sees it.
        self.accepted = time.monotonic()  # not loop.time(): uvloop's counts milliseconds
        self.handshake_seconds = 0.0
        self._opened = False
        self._handlers[h2.events.RequestReceived] = self._request

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.handshake_seconds = time.monotonic() - self.accepted
        super().connection_made(transport)
        try:
            trust_domain = Identity.parse(self.acceptor.identity).trust_domain
            self.source_identity = str(peer_identity(transport, trust_domain))
        except (IdentityError, ValueError) as e:
            self.acceptor.refused(REFUSED_IDENTITY, f"{self.peer()}: {e}")
            transport.abort()
            return
        self.destination_identity = self.acceptor.identity
        self.peer_node = self.acceptor.peer_node(self)
        self._opened = True
        self.acceptor.opened(self)
        self.flush()
        self._idle = asyncio.get_running_loop().call_later(self.first_request_timeout, self._no_request)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._opened:
            self.acceptor.closed(self)

    def _no_request(self) -> None:
        self._idle = None
        self.acceptor.refused("request_timeout", f"{self.peer()} sent no request within "
                              f"{self.first_request_timeout:g}s")
        self.transport.abort()  # type: ignore[union-attr]

    def _request(self, event: h2.events.RequestReceived) -> None:
        stream = StreamTransport(self, event.stream_id)
        self.add_stream(stream)
        headers = dict(event.headers or ())
        method = headers.get(b":method", b"").decode(errors="replace")
        authority = headers.get(b":authority", b"").decode(errors="replace")
        if method != "CONNECT":
            self._refuse(stream, f"{method} is not CONNECT")
            return
        try:
            host, port = parse_authority(authority)
        except BadAuthority as e:
            self._refuse(stream, str(e))
            return
        if host != self.acceptor.pod_ip:
            self._refuse(stream, f"CONNECT to {host} reached pod {self.acceptor.pod_ip}")
            return
        self.acceptor.stream(self, stream, port, headers)

    def _refuse(self, stream: StreamTransport, why: str) -> None:
        self.acceptor.refused(f"refused_{STATUS_BAD_REQUEST}", f"{self.source_identity} from {self.peer()}: {why}")
        stream.respond(STATUS_BAD_REQUEST)


class ServerTunnels:
    """The node's inbound HBONE connections, on every pod's 15008 listener: for ``nodemesh
    tunnels`` and the metrics, and to close them all when the agent stops.

    A connection is added when its handshake is done and its client's identity checked (the
    acceptor's ``opened``), so this is also where those handshakes are counted and timed. A
    handshake that fails never reaches the tunnel: the loop's TLS layer drops the connection
    without calling the protocol (neither ``connection_made`` nor ``connection_lost``), so
    those failures are not counted here; a refused identity is the acceptor's to count.
    """

    def __init__(self) -> None:
        self._live: set[ServerTunnel] = set()
        self.handshakes = 0
        self.handshake_durations = Buckets(LATENCY_BUCKETS)

    def add(self, tunnel: ServerTunnel) -> None:
        self._live.add(tunnel)
        self.handshakes += 1
        self.handshake_durations.observe(tunnel.handshake_seconds)

    def discard(self, tunnel: ServerTunnel) -> None:
        self._live.discard(tunnel)

    def __iter__(self) -> Iterator[ServerTunnel]:
        return iter(list(self._live))

    def snapshot(self) -> list[dict[str, object]]:
        return [t.info() for t in self._live]

    def close(self) -> None:
        for tunnel in list(self._live):
            tunnel.close()
