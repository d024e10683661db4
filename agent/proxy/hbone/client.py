"""The client side of an HBONE connection: check who answered, then open CONNECT streams.

The TLS handshake has verified the server's chain against the trust bundle; before anything
is sent, the server's SPIFFE id must be the destination workload's expected identity, or the
connection is dropped (a valid certificate of another workload is not good enough).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Callable, Sequence

import h2.events

from nodemesh.agent.proxy.hbone.stream import StreamTransport
from nodemesh.agent.tls.peer import peer_identity
from nodemesh.agent.proxy.hbone.tunnel import TUNED, Tunnel, Windows
from nodemesh.identity import Identity, IdentityError

STATUS_OK = 200
# The service the client dialled ("namespace/name", empty for a pod's own address), so that the
# destination's agent reports the same service; it checks the claim against its model.
SERVICE_HEADER = b"nodemesh-service"
Headers = Sequence[tuple[bytes, bytes]]


class TunnelError(Exception):
    """A stream could not be opened; ``outcome`` is the short reason conntrack counts."""

    def __init__(self, outcome: str, message: str) -> None:
        super().__init__(message)
        self.outcome = outcome


class ClientTunnel(Tunnel):
    client = True

    def __init__(self, ctx: ssl.SSLContext, source_identity: str, destination_identity: str, peer_node: str,
                 idle_timeout: float, on_change: Callable[["ClientTunnel"], None], windows: Windows = TUNED) -> None:
        super().__init__(idle_timeout, windows)
        self.ctx = ctx  # the source's certificate at the time: a renewed one gets new connections
        self.source_identity = source_identity
        self.destination_identity = destination_identity
        self.peer_node = peer_node
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.ready.add_done_callback(_retrieved)
        self.reserved = 0  # streams open or being opened
        self.failed = False
        self.error: TunnelError | None = None  # why it failed
        self._on_change = on_change  # the pool: a stream slot freed, or the connection is gone
        self._handlers[h2.events.ResponseReceived] = self._response

    @property
    def accepting(self) -> bool:
        """May carry new streams."""
        return not (self.failed or self.lost or self.goaway) and (self.transport is None
                                                                  or not self.transport.is_closing())

    def capacity(self, max_streams: int) -> int:
        return min(max_streams, self.h2.remote_settings.max_concurrent_streams)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        try:
            identity = str(peer_identity(transport, Identity.parse(self.destination_identity).trust_domain))
        except (IdentityError, ValueError) as e:
            self.fail(TunnelError("identity_mismatch", f"{self.peer()} showed no workload identity: {e}"))
            return
        if identity != self.destination_identity:
            self.fail(TunnelError("identity_mismatch", f"{self.peer()} is {identity}, "
                                  f"expected {self.destination_identity}"))
            return
        self.flush()  # the preface and settings, queued since __init__
        self.ready.set_result(None)
        self.idle()  # until the first stream

    def fail(self, error: TunnelError) -> None:
        """The connection could not be made (or was not the right one): fail whoever waits."""
        self.failed = True
        self.error = error
        if not self.ready.done():
            self.ready.set_exception(error)
        if self.transport is not None:
            self.transport.abort()
        self._on_change(self)

    def open_stream(self, authority: str, headers: Headers = ()) -> StreamTransport:
        """Send ``CONNECT authority`` with ``headers``; the stream's ``response`` gets the status."""
        stream_id = self.h2.get_next_available_stream_id()
        self.h2.send_headers(stream_id, [(b":method", b"CONNECT"), (b":authority", authority.encode()), *headers])
        stream = StreamTransport(self, stream_id)
        stream.response = asyncio.get_running_loop().create_future()
        self.add_stream(stream)
        self.flush()
        return stream

    def stream_finished(self, stream: StreamTransport) -> None:
        self.reserved -= 1
        super().stream_finished(stream)
        self._on_change(self)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self.ready.done():
            self.ready.set_exception(TunnelError("tunnel_lost", f"the connection to {self.peer()} closed: {exc}"))
        self._on_change(self)

    def _response(self, event: h2.events.ResponseReceived) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is None or stream.response is None or stream.response.done():
            return
        status = dict(event.headers).get(b":status", b"")
        stream.response.set_result(int(status) if status.isdigit() else 0)


def _retrieved(future: asyncio.Future[None]) -> None:
    """A failure nobody waited for is still a handled one (the pool logs it), not a warning."""
    if not future.cancelled():
        future.exception()
