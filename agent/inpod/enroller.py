"""Enrollment: keep the set of enrolled pods equal to this node's meshed pods in the config.

Enrolling a pod opens its network namespace, has the proxy serve it (``PodServer``: its
listeners are the proxy's business), gives the plaintext listener to the capture program and
puts the namespace cookie in the steering programs' map. From then on the pod's connections to
mesh destinations are steered, and plaintext arriving from outside the mesh is captured into
15006. A pod whose namespace cannot be found yet (the runtime has not made it: see
``discovery``), or whose listeners cannot open yet, stays pending and is retried.
Unenrolling stops steering and capture first, then closes the listeners; connections
already relayed carry on.

The agent exiting is not unenrolling: the capture's links outlive it (pinned), so that STRICT
pods keep refusing plaintext until the next agent takes them over; that agent removes the
links of pods that left the mesh meanwhile.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

from nodemesh.agent.inpod.discovery import NetnsSource, NotYet
from nodemesh.agent.inpod.pod import PodNetns
from nodemesh.agent.ports import OUTBOUND_PORT
from nodemesh.agent.state.store import View
from nodemesh.agent.tls.contexts import NoCertificate
from nodemesh.model import STRICT, Workload
from nodemesh.netns import Netns

log = logging.getLogger(__name__)


class PodMap(Protocol):
    """The steering programs' map of enrolled namespaces (nodemesh.agent.ebpf.steering.Steering)."""

    def enroll(self, netns_cookie: int, listener_ip: str, listener_port: int) -> None: ...
    def unenroll(self, netns_cookie: int) -> None: ...


class Capture(Protocol):
    """Plaintext capture (nodemesh.agent.ebpf.capture.PlaintextCapture)."""

    def attach(self, netns: Netns, pod_ip: str, listener: socket.socket | None, strict: bool) -> None: ...
    def set_mode(self, pod_ip: str, strict: bool) -> None: ...
    def detach(self, pod_ip: str) -> None: ...
    def keep_only(self, pod_ips: Collection[str]) -> None: ...


class Listeners(Protocol):
    """A pod's listeners as the proxy opened them."""

    @property
    def plaintext(self) -> socket.socket: ...
    def close(self) -> None: ...


class PodServer(Protocol):
    """The proxy (nodemesh.agent.proxy.node.NodeProxy): opens and serves a pod's listeners."""

    async def serve_pod(self, pod: PodNetns) -> Listeners: ...


@dataclass
class Enrolled:
    pod: PodNetns
    listeners: Listeners


class Enroller:
    def __init__(self, node: str, netns: NetnsSource, pod_map: PodMap, server: PodServer,
                 capture: Capture | None = None) -> None:
        """``capture`` None: plaintext from outside the mesh reaches pods' apps directly."""
        self.node = node
        self.netns = netns
        self.pod_map = pod_map
        self.server = server
        self.capture = capture
        self.enrolled: dict[str, Enrolled] = {}
        self.pending: dict[str, str] = {}  # uid -> why it is not enrolled yet

    async def reconcile(self, view: View) -> None:
        want = {w.uid: w for w in view.local_meshed(self.node)}
        for uid, entry in list(self.enrolled.items()):
            w = want.get(uid)
            if w is None or w.ip != entry.pod.workload.ip:
                self._unenroll(uid)
                continue
            if self.capture is not None and strict(w) != strict(entry.pod.workload):
                self.capture.set_mode(w.ip, strict(w))
            entry.pod.workload = w  # labels may change; the listeners stay
        if self.capture is not None:
            self.capture.keep_only({w.ip for w in want.values()})
        self.pending = {uid: why for uid, why in self.pending.items() if uid in want}
        for uid, w in want.items():
            if uid not in self.enrolled:
                await self._enroll(w)

    async def _enroll(self, w: Workload) -> None:
        try:
            netns = self.netns.open(w)
        except NotYet as e:
            self._pending(w, str(e))
            return
        try:
            pod = PodNetns(w, netns)
        except OSError as e:
            netns.close()
            self._pending(w, f"network namespace {netns.path}: {e.strerror or e}")
            return
        listeners: Listeners | None = None
        try:
            listeners = await self.server.serve_pod(pod)
            if self.capture is not None:
                self.capture.attach(pod.netns, w.ip, listeners.plaintext, strict(w))
            self.pod_map.enroll(pod.cookie, w.ip, OUTBOUND_PORT)
        except (OSError, NoCertificate) as e:
            if listeners is not None:
                listeners.close()
            unguarded = self._guard(pod, w)
            pod.close()
            why = str(e) if unguarded is None else f"{e}; nor can plaintext capture guard it: {unguarded}"
            self._pending(w, why)
            return
        self.enrolled[w.uid] = Enrolled(pod, listeners)
        self.pending.pop(w.uid, None)
        log.info("enrolled pod %s (%s, netns cookie %d)", w.ref, w.ip, pod.cookie)

    def _guard(self, pod: PodNetns, w: Workload) -> str | None:
        """A meshed pod not served yet: link the capture without a listener, so STRICT refuses plaintext.

        This also takes over a link a previous agent left, so that a mode changed since then
        applies. Returns why that failed (it goes in the pod's pending reason), None if it did not.
        """
        if self.capture is None:
            return None
        try:
            self.capture.attach(pod.netns, w.ip, None, strict(w))
        except OSError as e:
            return str(e)
        return None

    def _pending(self, w: Workload, why: str) -> None:
        if self.pending.get(w.uid) != why:
            log.warning("pod %s not enrolled yet: %s", w.ref, why)
        self.pending[w.uid] = why

    def _unenroll(self, uid: str) -> None:
        entry = self.enrolled.pop(uid)
        if self.capture is not None:
            self.capture.detach(entry.pod.workload.ip)
        self.pod_map.unenroll(entry.pod.cookie)
        entry.listeners.close()
        entry.pod.close()
        log.info("unenrolled pod %s", entry.pod.workload.ref)

    def close(self) -> None:
        """The agent is exiting: close what dies with it, keep the capture links (see the module).

        Steering's entries are not removed here: they go with its programs' maps, which the
        agent closes itself.
        """
        for entry in self.enrolled.values():
            entry.listeners.close()
            entry.pod.close()
        self.enrolled.clear()
        log.info("enroller closed; pods stay meshed for the next agent")

    def status(self) -> dict[str, object]:
        return {
            "enrolled": [
                {"pod": e.pod.workload.ref, "ip": e.pod.workload.ip, "netns": e.pod.netns.path,
                 "netns_cookie": e.pod.cookie}
                for e in self.enrolled.values()
            ],
            "pending": dict(self.pending),
        }


def strict(w: Workload) -> bool:
    return w.mtls_mode == STRICT
