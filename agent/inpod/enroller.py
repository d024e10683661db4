"""Enrollment: keep the set of enrolled pods equal to this node's meshed pods in the config.

Enrolling a pod opens its listeners inside its namespace (outbound 15001, plaintext 15006,
inbound HBONE 15008: TLS with the pod's own certificate) and puts its namespace cookie in the
programs' map; the proxy learns the pod for same-node traffic. From then on its
connections to mesh destinations are steered, and plaintext arriving from outside the mesh
is captured into 15006. A pod whose namespace does not exist yet (the runtime has not made
it) stays pending and is retried. Unenrolling stops steering first, then closes the
listeners; connections already relayed carry on.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass
from typing import Protocol

from nodemesh.agent.inpod.pod import INBOUND_PORT, OUTBOUND_PORT, PLAINTEXT_PORT, PodNetns
from nodemesh.agent.proxy.hbone.server import HANDSHAKE_TIMEOUT, ServerTunnel
from nodemesh.agent.proxy.hbone.tls import Identities, NoCertificate
from nodemesh.agent.proxy.inbound import HboneInbound
from nodemesh.agent.proxy.outbound import OutboundAccept
from nodemesh.agent.proxy.plaintext import PlaintextAccept
from nodemesh.agent.proxy.proxy import NodeProxy
from nodemesh.agent.state.store import View
from nodemesh.model import Workload
from nodemesh.netns import Netns

log = logging.getLogger(__name__)


class PodMap(Protocol):
    def enroll(self, netns_cookie: int, listener_ip: str, listener_port: int) -> None: ...
    def unenroll(self, netns_cookie: int) -> None: ...


class Capture(Protocol):
    """Inbound plaintext capture (nodemesh.agent.ebpf.inbound.InboundCapture)."""

    def attach(self, netns: Netns, pod_ip: str, listener: socket.socket) -> None: ...
    def detach(self, pod_ip: str) -> None: ...


@dataclass
class Enrolled:
    pod: PodNetns
    servers: list[asyncio.AbstractServer]


class Enroller:
    def __init__(self, node: str, netns_template: str, pod_map: PodMap, proxy: NodeProxy,
                 capture: Capture | None = None, *, identities: Identities) -> None:
        """``capture`` None: plaintext from outside the mesh reaches pods' apps directly."""
        self.node = node
        self.netns_template = netns_template
        self.pod_map = pod_map
        self.proxy = proxy
        self.identities = identities
        self.capture = capture
        self.enrolled: dict[str, Enrolled] = {}
        self.pending: dict[str, str] = {}  # uid -> why it is not enrolled yet

    def netns_path(self, w: Workload) -> str:
        return self.netns_template.format(namespace=w.namespace, name=w.name, uid=w.uid)

    async def reconcile(self, view: View) -> None:
        want = {w.uid: w for w in view.local_meshed(self.node)}
        for uid, entry in list(self.enrolled.items()):
            w = want.get(uid)
            if w is None or w.ip != entry.pod.workload.ip:
                self._unenroll(uid)
            else:
                entry.pod.workload = w  # labels may change; the listeners stay
        self.pending = {uid: why for uid, why in self.pending.items() if uid in want}
        for uid, w in want.items():
            if uid not in self.enrolled:
                await self._enroll(w)

    async def _enroll(self, w: Workload) -> None:
        loop = asyncio.get_running_loop()
        path = self.netns_path(w)
        try:
            pod = PodNetns(w, path)
        except OSError as e:
            self._pending(w, f"network namespace {path}: {e.strerror or e}")
            return
        servers: list[asyncio.AbstractServer] = []
        try:
            servers.append(await loop.create_server(
                lambda: OutboundAccept(self.proxy, pod), sock=pod.listener(OUTBOUND_PORT)))
            inbound = HboneInbound(self.proxy, pod)
            servers.append(await loop.create_server(
                lambda: ServerTunnel(inbound), sock=pod.listener(INBOUND_PORT),
                ssl=self.identities.server_context(w.uid), ssl_handshake_timeout=HANDSHAKE_TIMEOUT))
            plaintext = pod.listener(PLAINTEXT_PORT)
            servers.append(await loop.create_server(lambda: PlaintextAccept(self.proxy, pod), sock=plaintext))
            if self.capture is not None:
                self.capture.attach(pod.netns, w.ip, plaintext)
            self.pod_map.enroll(pod.cookie, w.ip, OUTBOUND_PORT)
        except (OSError, NoCertificate) as e:
            if self.capture is not None:
                self.capture.detach(w.ip)
            for server in servers:
                server.close()
            pod.close()
            self._pending(w, str(e))
            return
        self.enrolled[w.uid] = Enrolled(pod, servers)
        self.proxy.pods[w.ip] = pod
        self.pending.pop(w.uid, None)
        log.info("enrolled pod %s (%s, netns cookie %d)", w.ref, w.ip, pod.cookie)

    def _pending(self, w: Workload, why: str) -> None:
        if self.pending.get(w.uid) != why:
            log.warning("pod %s not enrolled yet: %s", w.ref, why)
        self.pending[w.uid] = why

    def _unenroll(self, uid: str) -> None:
        entry = self.enrolled.pop(uid)
        self.proxy.pods.pop(entry.pod.workload.ip, None)
        if self.capture is not None:
            self.capture.detach(entry.pod.workload.ip)
        self.pod_map.unenroll(entry.pod.cookie)
        for server in entry.servers:
            server.close()
        entry.pod.close()
        log.info("unenrolled pod %s", entry.pod.workload.ref)

    def close(self) -> None:
        for uid in list(self.enrolled):
            self._unenroll(uid)

    def status(self) -> dict[str, object]:
        return {
            "enrolled": [
                {"pod": e.pod.workload.ref, "ip": e.pod.workload.ip, "netns": e.pod.netns.path,
                 "netns_cookie": e.pod.cookie}
                for e in self.enrolled.values()
            ],
            "pending": dict(self.pending),
        }
