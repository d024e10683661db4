"""The node proxy: opens each served pod's listeners and owns everything they share.

``NodeProxy.serve_pod`` is the one place that knows which listeners a meshed pod gets
(outbound 15001, HBONE 15008 with the pod's own TLS identity, plaintext 15006) and which
handler each one runs, so a new listener touches only this package. The enroller hands it a
pod whose namespace it has opened and gets back the listeners, whose plaintext socket it
gives to the capture program.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from typing import Callable

from nodemesh.agent.inpod.pod import LISTEN_BACKLOG, PodNetns
from nodemesh.agent.ports import HBONE_PORT, OUTBOUND_PORT, PLAINTEXT_PORT
from nodemesh.agent.proxy.core import OriginalDst, ProxyCore
from nodemesh.agent.proxy.delivery import HboneAcceptor
from nodemesh.agent.proxy.hbone.server import HANDSHAKE_TIMEOUT, ServerTunnel
from nodemesh.agent.proxy.outbound import OutboundAccept
from nodemesh.agent.proxy.plaintext import PlaintextAccept
from nodemesh.agent.state.store import View
from nodemesh.agent.tls.contexts import Identities


@dataclass
class PodListeners:
    """A served pod's listeners, until ``close``: then connections already relayed carry on."""

    pod: PodNetns
    plaintext: socket.socket  # the 15006 listener, for the capture program's socket map
    servers: list[asyncio.AbstractServer]
    _core: ProxyCore

    def close(self) -> None:
        self._core.unserve(self.pod)
        for server in self.servers:
            server.close()


class NodeProxy:
    def __init__(self, view: Callable[[], View | None], original_dst: OriginalDst, identities: Identities,
                 connect_timeout: float = 5.0, metrics: bool = True) -> None:
        """``metrics``: count traffic per label set for the metrics (off: only the admin API's totals)."""
        self.core = ProxyCore(view, original_dst, identities, connect_timeout, metrics)

    async def serve_pod(self, pod: PodNetns) -> PodListeners:
        """Open the pod's listeners inside its namespace and serve them.

        Raises ``NoCertificate`` if the pod has no certificate entry, ``OSError`` if a port is
        taken; nothing stays open then.
        """
        loop = asyncio.get_running_loop()
        core = self.core
        tls = core.identities.server_context(pod.workload.uid)
        acceptor = HboneAcceptor(core, pod)
        handlers: list[tuple[int, Callable[[], asyncio.BaseProtocol], dict[str, object]]] = [
            (OUTBOUND_PORT, lambda: OutboundAccept(core, pod), {}),
            (HBONE_PORT, lambda: ServerTunnel(acceptor), {"ssl": tls, "ssl_handshake_timeout": HANDSHAKE_TIMEOUT}),
            (PLAINTEXT_PORT, lambda: PlaintextAccept(core, pod), {}),
        ]
        servers: list[asyncio.AbstractServer] = []
        sockets: dict[int, socket.socket] = {}
        try:
            for port, factory, options in handlers:
                sockets[port] = pod.listener(port)
                servers.append(await loop.create_server(factory, sock=sockets[port], backlog=LISTEN_BACKLOG,  # type: ignore[arg-type]
                                                        **options))
        except BaseException:
            for server in servers:
                server.close()
            for port, sock in sockets.items():
                sock.close()
            raise
        core.serve(pod)
        return PodListeners(pod, sockets[PLAINTEXT_PORT], servers, core)

    def recheck(self) -> int:
        """After a new view: reset the connections into local pods that its policies no longer
        allow. Returns how many."""
        return len(self.core.authorizer.recheck(self.core.table))

    def tunnels(self) -> dict[str, object]:
        """What ``nodemesh tunnels`` shows: every live HBONE connection, both ways, and counts."""
        out = self.core.pool.snapshot()
        out["tunnels"] = [*out["tunnels"], *self.core.server_tunnels.snapshot()]  # type: ignore[misc]
        return out

    def close(self) -> None:
        self.core.pool.close()
        self.core.server_tunnels.close()
