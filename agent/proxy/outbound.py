"""The outbound listener (15001 in each meshed pod): connections the programs steered here.

Accept, pause, find the original destination, route it, open the upstream (through the
destination agent for meshed pods, directly otherwise), then relay.
"""

from __future__ import annotations

import asyncio

from nodemesh.agent.inpod.pod import PodNetns
from nodemesh.agent.proxy.connect import HandshakeError
from nodemesh.agent.proxy.conntrack import OUTBOUND, Connection
from nodemesh.agent.proxy.proxy import NodeProxy
from nodemesh.agent.proxy.relay import reset
from nodemesh.agent.proxy.route import NoRoute


class OutboundAccept(asyncio.Protocol):
    """The protocol of a just-accepted steered connection, until it is spliced.

    Reading is paused at once, but an event loop may already have read (uvloop starts
    reading after ``connection_made``): what arrives meanwhile is kept and sent upstream
    first, and an early EOF is passed on after it.
    """

    __slots__ = ("proxy", "pod", "task", "early", "eof")

    def __init__(self, proxy: NodeProxy, pod: PodNetns) -> None:
        self.proxy = proxy
        self.pod = pod
        self.task: asyncio.Task[None] | None = None
        self.early = bytearray()
        self.eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.pause_reading()  # type: ignore[attr-defined]
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        original = self.proxy.original_dst(peer, local)
        if original is None:
            # Not steered by our programs (someone dialled 15001 directly): nothing to serve.
            self.proxy.table.totals[(OUTBOUND, "no_original_destination")] += 1
            reset(transport)
            return
        conn = self.proxy.table.open(OUTBOUND, self.pod.workload.ref, f"{original[0]}:{original[1]}")
        self.task = asyncio.get_running_loop().create_task(
            forward(self.proxy, self.pod, conn, transport, original, self))  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        self.early += data

    def eof_received(self) -> bool:
        self.eof = True
        return True  # keep the transport: the reply direction has not even started

    def connection_lost(self, exc: Exception | None) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()


async def forward(proxy: NodeProxy, pod: PodNetns, conn: Connection, downstream: asyncio.Transport,
                  original: tuple[str, int], accepted: OutboundAccept) -> None:
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
        await proxy.splice(conn, downstream, sock, to_downstream=early,
                           to_upstream=bytes(accepted.early), downstream_eof=accepted.eof)
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
