"""The pool of outbound HBONE connections.

A connection is opened from inside the source pod (so it leaves from the pod's address and is
never steered), presents the source workload's certificate and is kept for more streams. It is
shared by the connections of one source pod to one destination pod whose server proved the
expected identity: key (source workload, destination address, destination identity). A pod,
not only an identity, is part of the key because the connection's socket lives in that pod's
network namespace and carries its address.

Bounds: streams per connection (ours and the server's SETTINGS_MAX_CONCURRENT_STREAMS),
connections per key, connections in all; an opener that finds everything full waits for a
slot (within its connect timeout). A connection with no stream closes after ``idle_timeout``;
one made with a certificate since renewed takes no new streams and closes once idle. A lost
connection resets its streams at once (the relays reset their clients) and is forgotten, so the
next stream gets a fresh one.

TLS session resumption is not used: asyncio's ``create_connection`` offers no way to pass a
saved session to the handshake (``SSLContext.wrap_bio(session=)`` is not reachable through
it), and pooling makes handshakes rare anyway.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections import Counter

import h2.exceptions
from h2.errors import ErrorCodes

from nodemesh.agent.inpod.pod import PodNetns
from nodemesh.agent.ports import HBONE_PORT
from nodemesh.agent.proxy.hbone.client import STATUS_OK, ClientTunnel, Headers, TunnelError
from nodemesh.agent.proxy.hbone.stream import StreamReset, StreamTransport
from nodemesh.agent.tls.contexts import Identities, NoCertificate
from nodemesh.agent.proxy.hbone.tunnel import MAX_CONCURRENT_STREAMS
from nodemesh.metrics import LATENCY_BUCKETS, Buckets
from nodemesh.model import Workload

log = logging.getLogger(__name__)

Key = tuple[str, str, str]  # (source workload uid, destination pod IP, destination identity)


class TunnelPool:
    def __init__(self, identities: Identities, connect_timeout: float = 5.0, idle_timeout: float = 60.0,
                 max_streams: int = MAX_CONCURRENT_STREAMS, max_per_key: int = 128, max_total: int = 1024) -> None:
        self.identities = identities
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.max_streams = max_streams
        self.max_per_key = max_per_key
        self.max_total = max_total
        self.outbound: dict[Key, list[ClientTunnel]] = {}
        # The metrics' outbound handshake results: connections made (their TLS handshake done
        # and the server's identity the expected one), and those that failed, by outcome
        self.handshakes = 0
        self.failures: Counter[str] = Counter()
        # Seconds from the TCP connect to the identity checked, of each connection made
        self.handshake_durations = Buckets(LATENCY_BUCKETS)
        self._total = 0
        self._waiters: list[asyncio.Future[None]] = []

    async def open(self, source: PodNetns, target: Workload, port: int, headers: Headers = (),
                   timeout: float | None = None) -> StreamTransport:
        """A CONNECT stream from ``source`` to ``target``'s ``port`` (sending ``headers`` too),
        answered 200, reading paused, within ``timeout`` seconds (None: the pool's connect timeout;
        a service's traffic policy may set its own).

        Raises ``TunnelError`` with the outcome to count: no_certificate, identity_mismatch,
        upstream_<status>, upstream_timeout, upstream_refused, tls_handshake_failed, tunnel_lost,
        stream_refused.
        """
        try:
            ctx = self.identities.client_context(source.workload.uid)
        except NoCertificate as e:
            raise TunnelError("no_certificate", str(e)) from e
        key = (source.workload.uid, target.ip, target.identity)
        if timeout is None:
            timeout = self.connect_timeout
        try:
            async with asyncio.timeout(timeout):
                tunnel = await self._reserve(key, ctx, source, target)
                stream = tunnel.open_stream(f"{target.ip}:{port}", headers)
                try:
                    status = await stream.response  # type: ignore[misc]
                except BaseException:
                    stream.reset(ErrorCodes.CANCEL)
                    raise
        except TimeoutError as e:
            raise TunnelError("upstream_timeout", f"no answer from {target.ref}'s agent "
                              f"within {timeout:g}s") from e
        except StreamReset as e:
            raise TunnelError("tunnel_lost", str(e)) from e
        except h2.exceptions.ProtocolError as e:  # e.g. the server lowered its stream limit meanwhile
            raise TunnelError("stream_refused", f"{target.ref}'s agent takes no new stream now: {e!r}") from e
        if status != STATUS_OK:
            stream.reset(ErrorCodes.CANCEL)
            raise TunnelError(f"upstream_{status}", f"{target.ref}'s agent answered {status}")
        return stream

    async def _reserve(self, key: Key, ctx: ssl.SSLContext, source: PodNetns, target: Workload) -> ClientTunnel:
        """A ready connection with a stream slot reserved for the caller."""
        while True:
            tunnel = self._pick(key, ctx) or self._create(key, ctx, source, target)
            if tunnel is None:
                waiter = asyncio.get_running_loop().create_future()
                self._waiters.append(waiter)
                await waiter
                continue
            tunnel.reserved += 1
            if not tunnel.ready.done():  # a new connection: wait for its handshake (shielded: shared)
                try:
                    await asyncio.shield(tunnel.ready)
                except BaseException:
                    tunnel.reserved -= 1
                    raise
            if tunnel.accepting:
                return tunnel
            tunnel.reserved -= 1  # lost while we waited: try again

    def _pick(self, key: Key, ctx: ssl.SSLContext) -> ClientTunnel | None:
        for tunnel in self.outbound.get(key, ()):
            if tunnel.ctx is ctx and tunnel.accepting and tunnel.reserved < tunnel.capacity(self.max_streams):
                return tunnel
        return None

    def _create(self, key: Key, ctx: ssl.SSLContext, source: PodNetns, target: Workload) -> ClientTunnel | None:
        tunnels = self.outbound.setdefault(key, [])
        for old in [t for t in tunnels if t.ctx is not ctx and t.reserved == 0]:
            old.close()  # made with a certificate since renewed, and idle
        if len(tunnels) >= self.max_per_key or not self._room():
            return None
        tunnel = ClientTunnel(ctx, source.workload.identity, target.identity, target.node, self.idle_timeout,
                              lambda t: self._changed(key, t))
        tunnels.append(tunnel)
        self._total += 1
        asyncio.get_running_loop().create_task(self._connect(tunnel, ctx, source, target))
        return tunnel

    def _room(self) -> bool:
        """Below the total cap, closing the oldest idle connection if that is what it takes."""
        if self._total < self.max_total:
            return True
        idle = [t for tunnels in self.outbound.values() for t in tunnels if t.reserved == 0 and t.accepting]
        if idle:
            min(idle, key=lambda t: t.started).close()
        return False  # the close frees a slot when the connection is gone; the caller waits

    async def _connect(self, tunnel: ClientTunnel, ctx: ssl.SSLContext, source: PodNetns, target: Workload) -> None:
        """Connect, then shake hands: a failure of each step is told apart (the outcome counted)."""
        loop = asyncio.get_running_loop()
        started = time.monotonic()  # not loop.time(): uvloop's counts milliseconds
        within = f"within {self.connect_timeout:g}s"
        try:
            sock = await source.connect(target.ip, HBONE_PORT, self.connect_timeout)
        except TimeoutError:
            self._failed(tunnel, TunnelError("upstream_timeout", f"no TCP connection to {target.ref}'s agent {within}"))
            return
        except OSError as e:
            self._failed(tunnel, TunnelError("upstream_refused", f"cannot reach {target.ref}'s agent "
                                             f"({target.ip}:{HBONE_PORT}): {e}"))
            return
        try:
            # server_hostname "": no SNI and no host name check (identities are checked instead)
            await loop.create_connection(lambda: tunnel, sock=sock, ssl=ctx, server_hostname="",
                                         ssl_handshake_timeout=self.connect_timeout)
        except (TimeoutError, ConnectionAbortedError):  # the latter: how the loop ends a slow handshake
            self._failed(tunnel, TunnelError("upstream_timeout", f"no TLS handshake with {target.ref}'s agent {within}"))
        except OSError as e:  # ssl.SSLError, or the server dropped us mid-handshake (it had no certificate)
            self._failed(tunnel, TunnelError("tls_handshake_failed", f"TLS with {target.ref}'s agent failed: "
                                             f"{e or type(e).__name__}"))
        else:
            if not tunnel.failed:
                self.handshakes += 1
                self.handshake_durations.observe(time.monotonic() - started)

    def _failed(self, tunnel: ClientTunnel, error: TunnelError) -> None:
        log.info("HBONE connection failed: %s", error)
        tunnel.fail(error)

    def _changed(self, key: Key, tunnel: ClientTunnel) -> None:
        """A stream ended, or the connection failed or was lost: forget the dead, wake waiters."""
        tunnels = self.outbound.get(key, [])
        if (tunnel.failed or tunnel.lost) and tunnel in tunnels:
            tunnels.remove(tunnel)
            self._total -= 1
            if not tunnels:
                del self.outbound[key]
            if tunnel.error is not None:
                self.failures[tunnel.error.outcome] += 1
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def close(self) -> None:
        for tunnels in list(self.outbound.values()):
            for tunnel in list(tunnels):
                tunnel.close()

    def live(self) -> list[ClientTunnel]:
        """The connections that are up (or closing), not those still connecting."""
        return [t for tunnels in self.outbound.values() for t in tunnels if t.transport is not None]

    def snapshot(self) -> dict[str, object]:
        """The outbound half of what ``nodemesh tunnels`` shows: live connections and counts."""
        return {
            "tunnels": [t.info() for t in self.live()],
            "handshakes": self.handshakes,
            "failures": dict(self.failures),
        }
