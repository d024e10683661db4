"""The plaintext listener (15006 in each meshed pod): connections from outside the mesh.

bpf/capture.c hands it TCP connections that arrive at the pod's IP from anywhere but the pod
itself, on the app's ports. The accepted socket keeps the address the client asked for, so
``getsockname()`` is the original destination. What happens next is the pod's mTLS mode:
STRICT refuses at once (a reset, counted), PERMISSIVE (the default) delivers it as the 15008
listener does (``delivery.connect_app``: authorization, then the app from inside the pod) and
relays, marked as plaintext. Such a connection has no identity, only its source address.
"""

from __future__ import annotations

import asyncio

from nodemesh.agent.ports import PLAINTEXT_PORT
from nodemesh.agent.proxy.conntrack import INBOUND, Connection
from nodemesh.agent.proxy.core import PodAccepted
from nodemesh.agent.proxy.delivery import Refused, connect_app
from nodemesh.agent.proxy.tracecontext import new_ids
from nodemesh.model import STRICT

REFUSED_STRICT = "refused_plaintext"
NOT_CAPTURED = "no_original_destination"


def refusal(mtls_mode: str, local_port: int) -> tuple[str, str] | None:
    """Why an accepted plaintext connection must be refused: (outcome name, explanation), or
    None to deliver it.

    A connection whose local port is 15006 itself was dialled there directly, not captured:
    delivering it "to the app" would dial 15006 again.
    """
    if local_port == PLAINTEXT_PORT:
        return NOT_CAPTURED, "dialled the plaintext listener directly: no original destination"
    if mtls_mode == STRICT:
        return REFUSED_STRICT, "plaintext refused: the pod's mTLS mode is STRICT"
    return None


class PlaintextAccept(PodAccepted):
    """A captured plaintext connection, until it is refused or spliced to the app."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        workload = self.pod.workload  # kept current by the enroller: a mode change applies at once
        conn = self.proxy.table.open(INBOUND, f"{peer[0]}:{peer[1]}", f"{local[0]}:{local[1]}")
        conn.destination = workload.ref
        conn.upstream = conn.original_dst
        conn.via = "plaintext"
        conn.connection_security_policy = "none"
        conn.destination_workload = workload
        conn.trace_id, conn.span_id = new_ids()  # no agent on the client's side: a trace of its own
        view = self.proxy.view()
        if view is not None:  # a pod outside the mesh is known to the model; the internet is not
            conn.source_workload = view.by_ip.get(peer[0])
            conn.service = view.inbound_service(workload, None)
        refused = refusal(workload.mtls_mode, local[1])
        if refused is not None:
            self.proxy.fail(conn, self.transport, *refused)  # type: ignore[arg-type]
            return
        self.task = asyncio.get_running_loop().create_task(deliver(self, conn, peer[0], local[1]))


async def deliver(accepted: PlaintextAccept, conn: Connection, client_ip: str, port: int) -> None:
    """Deliver to the app's ``port`` (the original destination is the pod's own IP), then relay.

    The upstream leaves from the pod's own IP, which the capture program never takes back.
    """
    proxy, downstream = accepted.proxy, accepted.transport
    try:
        sock = await connect_app(proxy, accepted.pod, conn, client_ip, port)
        await proxy.splice(conn, accepted, sock)
    except asyncio.CancelledError:
        proxy.table.failed(conn, "downstream_closed")
        raise
    except Refused as e:
        proxy.fail(conn, downstream, e.outcome, e)  # type: ignore[arg-type]
    except OSError as e:  # the relay's own set-up
        proxy.fail(conn, downstream, "app_unavailable", e)  # type: ignore[arg-type]
