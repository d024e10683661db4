"""Where a steered connection goes: service VIP -> one endpoint by its traffic policy, pod IP ->
that pod, any other address -> itself.

Sans-IO: reads the agent's current ``View`` and returns a ``Target``; the proxy does the I/O.
For a service the ``Balancer`` (``nodemesh.agent.proxy.balance``) admits the connection and
picks the endpoint; the target's ``lease`` is the connection's hold on both, and ``retry``
gives the next endpoint after a failed connect.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from nodemesh.agent.proxy.balance.balancer import Balancer, Lease, NoRoute, Refusal
from nodemesh.agent.proxy.balance.strategies import Random
from nodemesh.agent.proxy.conntrack import PASSTHROUGH
from nodemesh.agent.state.store import View
from nodemesh.model import Workload

__all__ = ["NoRoute", "Router", "Target"]


@dataclass(slots=True)
class Target:
    host: str
    port: int
    workload: Workload | None  # None: an address the mesh does not know, passed through
    service: str = ""  # "namespace/name" when reached through a service VIP (a split's backend)
    lease: Lease | None = None  # through a service VIP: its traffic policy's hold

    @property
    def meshed(self) -> bool:
        """Reached through the destination pod's agent (the hop), rather than directly."""
        return self.workload is not None and self.workload.meshed

    @property
    def name(self) -> str:
        """The workload, or PASSTHROUGH: never an outside address (the table's keys stay bounded)."""
        return self.workload.ref if self.workload else PASSTHROUGH


class Router:
    def __init__(self, connect_timeout: float = 5.0, clock: Callable[[], float] = time.monotonic,
                 random: Random | None = None) -> None:
        self.balancer = Balancer(connect_timeout, clock, random)

    def route(self, view: View, source: Workload | None, host: str, port: int) -> Target:
        """Raises ``Refusal`` (``NoRoute`` among them) when the connection cannot go anywhere."""
        service = view.by_vip.get(host)
        if service is not None:
            balancer = self.balancer
            lease = balancer.admit(balancer.route(view, service, port, source.node if source else ""), source)
            try:
                return self._next(lease)
            except Refusal:
                lease.release()
                raise
        workload = view.by_ip.get(host)
        # An address unknown to the view (the programs' map and the view differ for an
        # instant during an update) goes where the client asked: never worse than no mesh.
        return Target(host, port, workload)

    def retry(self, lease: Lease, outcome: str) -> Target | None:
        """After a failed connect: the next endpoint to try, None if the policy allows no other
        (not a failure to retry, retries used up, no endpoint left)."""
        if not self.balancer.failed(lease, outcome):
            return None
        try:
            return self._next(lease)
        except Refusal:
            return None

    def _next(self, lease: Lease) -> Target:
        endpoint, port = self.balancer.pick(lease)
        w = endpoint.workload
        return Target(w.ip, port, w, lease.choice.backend or lease.route.service, lease)  # type: ignore[union-attr]
