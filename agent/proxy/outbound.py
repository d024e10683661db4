"""The outbound listener (15001 in each meshed pod): connections the programs steered here.

Accept, pause, find the original destination, route it, open the upstream, then relay. The
upstream depends on where the chosen endpoint is:
  hbone   a meshed pod on another node: a CONNECT stream over mutual TLS to its 15008
  local   a meshed pod on this node: straight to its app from inside it, as its own 15008
          listener would (no encryption needed on the node; identity and policy still apply)
  direct  anything not meshed: connect as the pod would have.
Through a service VIP the service's traffic policy applies (docs/traffic.md): the router admits
the connection (rate limit, circuit breaker) and picks the endpoint; a connect that fails for
the endpoint's sake is tried on another while the policy's retries last.
"""

from __future__ import annotations

import asyncio
import socket

from nodemesh.agent.proxy.balance.balancer import RETRIES_EXHAUSTED, Refusal
from nodemesh.agent.proxy.conntrack import OUTBOUND, Connection
from nodemesh.agent.proxy.hbone.client import SERVICE_HEADER, TunnelError
from nodemesh.agent.proxy.core import PodAccepted
from nodemesh.agent.proxy.delivery import Refused, connect_app
from nodemesh.agent.proxy.relay import reset
from nodemesh.agent.proxy.hbone.stream import StreamTransport
from nodemesh.agent.proxy.route import NoRoute, Target
from nodemesh.agent.proxy.tracecontext import TRACEPARENT_HEADER, format_traceparent, new_ids
from nodemesh.agent.tls.contexts import NoCertificate


class OutboundAccept(PodAccepted):
    """A just-accepted steered connection, until it is spliced."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        original = self.proxy.original_dst(peer, local)
        if original is None:
            # Not steered by our programs (someone dialled 15001 directly): nothing to serve.
            self.proxy.table.refused(OUTBOUND, "no_original_destination")
            reset(transport)
            return
        conn = self.proxy.table.open(OUTBOUND, self.pod.workload.ref, f"{original[0]}:{original[1]}")
        conn.source_workload, conn.source_identity = self.pod.workload, self.pod.workload.identity
        conn.trace_id, conn.span_id = new_ids()  # the root of the connection's trace
        self.task = asyncio.get_running_loop().create_task(forward(self, conn, original))


async def forward(accepted: OutboundAccept, conn: Connection, original: tuple[str, int]) -> None:
    """Route, connect (trying other endpoints while the service's policy allows), splice.

    Every retry happens before splicing, so before any byte of the client's was sent: a
    connection is never tried twice once it carried data.
    """
    proxy, downstream = accepted.proxy, accepted.transport
    try:
        view = proxy.view()
        if view is None:
            raise NoRoute("no config from the controller yet")
        target: Target | None = proxy.router.route(view, accepted.pod.workload, *original)
        lease = conn.lease = target.lease  # type: ignore[union-attr]
        if lease is not None and lease.route.policy.idle_timeout:
            conn.idle_timeout = lease.route.policy.idle_timeout
        while True:
            try:
                upstream = await connect(accepted, conn, target)  # type: ignore[arg-type]
                break
            except (Refused, TunnelError, OSError) as e:
                if lease is None or (target := proxy.router.retry(lease, failure(e)[0])) is None:
                    if lease is not None and len(lease.attempts) > 1:
                        raise Refusal(RETRIES_EXHAUSTED, f"{len(lease.attempts)} attempts failed, "
                                      f"the last: {failure(e)[1]}") from e
                    raise
        if lease is not None:
            proxy.router.balancer.connected(lease)
        await proxy.splice(conn, accepted, upstream)
    except asyncio.CancelledError:
        proxy.table.failed(conn, "downstream_closed")
        raise
    except Refusal as e:  # no route, or the service's policy refused it
        proxy.fail(conn, downstream, e.outcome, e)
    except NoCertificate as e:
        proxy.fail(conn, downstream, "no_certificate", e)
    except (Refused, TunnelError, OSError) as e:
        proxy.fail(conn, downstream, *failure(e))


def failure(e: Exception) -> tuple[str, object]:
    """The outcome a failed connect counts as, and its detail."""
    if isinstance(e, (Refused, TunnelError)):
        return e.outcome, e
    if isinstance(e, TimeoutError):
        return "upstream_timeout", e or "connect timed out"
    return "upstream_refused", e


async def connect(accepted: OutboundAccept, conn: Connection, target: Target) -> socket.socket | StreamTransport:
    """The upstream of one attempt, by the path the target takes (module docstring)."""
    proxy, pod = accepted.proxy, accepted.pod
    timeout = target.lease.route.timeout if target.lease is not None else proxy.connect_timeout
    conn.destination = target.name
    conn.upstream = f"{target.host}:{target.port}"
    conn.destination_workload, conn.service = target.workload, target.service
    if target.meshed:
        assert target.workload is not None
        conn.destination_identity = target.workload.identity
        local = proxy.local_pod(target.host)
        conn.connection_security_policy = "mutual_tls"
        if local is not None:
            conn.via = "local"
            for workload in (pod.workload, local.workload):  # as the TLS handshake would
                proxy.identities.require_valid(workload.uid)
            return await connect_app(proxy, local, conn, pod.workload.ip, target.port, timeout)
        conn.via = "hbone"
        traceparent = format_traceparent(conn.trace_id, conn.span_id, proxy.tracing)
        return await proxy.pool.open(pod, target.workload, target.port, [
            (SERVICE_HEADER, target.service.encode()), (TRACEPARENT_HEADER, traceparent.encode())], timeout)
    conn.via, conn.connection_security_policy = "direct", "none"
    return await pod.connect(target.host, target.port, timeout)
