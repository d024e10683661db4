"""The outbound listener (15001 in each meshed pod): connections the programs steered here.

Accept, pause, find the original destination, route it, open the upstream (through the
destination agent for meshed pods, directly otherwise), then relay.
"""

from __future__ import annotations

import asyncio

from nodemesh.agent.inpod.pod import PodNetns
from nodemesh.agent.proxy.connect import HandshakeError
from nodemesh.agent.proxy.conntrack import OUTBOUND, Connection
from nodemesh.agent.proxy.proxy import Accepted, NodeProxy
from nodemesh.agent.proxy.relay import reset
from nodemesh.agent.proxy.route import NoRoute


class OutboundAccept(Accepted):
    """A just-accepted steered connection, until it is spliced."""

    __slots__ = ("proxy", "pod")

    def __init__(self, proxy: NodeProxy, pod: PodNetns) -> None:
        super().__init__()
        self.proxy = proxy
        self.pod = pod

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        original = self.proxy.original_dst(peer, local)
        if original is None:
            # Not steered by our programs (someone dialled 15001 directly): nothing to serve.
            self.proxy.table.totals[(OUTBOUND, "no_original_destination")] += 1
            reset(transport)
            return
        conn = self.proxy.table.open(OUTBOUND, self.pod.workload.ref, f"{original[0]}:{original[1]}")
        self.task = asyncio.get_running_loop().create_task(forward(self, conn, original))


async def forward(accepted: OutboundAccept, conn: Connection, original: tuple[str, int]) -> None:
    proxy, pod, downstream = accepted.proxy, accepted.pod, accepted.transport
    try:
        view = proxy.view()
        if view is None:
            raise NoRoute("no config from the controller yet")
        target = proxy.router.route(view, *original)
        conn.destination = target.name
        conn.upstream = f"{target.host}:{target.port}"
        if target.meshed:
            conn.via = "hop"
            sock, early = await proxy.hop.open(pod, target)
        else:
            conn.via = "direct"
            sock, early = await pod.connect(target.host, target.port, proxy.connect_timeout), b""
        await proxy.splice(conn, accepted, sock, to_downstream=early)
    except asyncio.CancelledError:
        proxy.table.failed(conn, "downstream_closed")
        raise
    except NoRoute as e:
        proxy.fail(conn, downstream, "no_route", e)
    except HandshakeError as e:
        proxy.fail(conn, downstream, f"upstream_{e.status}", e)
    except TimeoutError as e:
        proxy.fail(conn, downstream, "upstream_timeout", e or "connect timed out")
    except OSError as e:
        proxy.fail(conn, downstream, "upstream_refused", e)
