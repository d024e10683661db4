"""The agent's subscription to the controller, on its own thread.

gRPC runs apart from the proxy's event loop (its own thread, the synchronous client), so the
data path never waits on the control plane. Each update is handed to the loop, applied there,
and acknowledged or rejected with the reason. When the stream breaks the agent keeps its last
good config and reconnects with the agent's one backoff (``nodemesh.agent.supervision``); the
controller then sends a fresh snapshot.

The thread never dies of a surprise: an update that fails to apply for a reason nobody
expected (a bug) is rejected with that reason and logged with its traceback, anything else
that goes wrong is logged and retried like a lost stream, and either shows in readiness
(``Health``) until an update applies again.

What the status and the metrics read (``connected``, ``applied_version``, the counts) are
plain attributes written by this thread alone and read from the proxy's loop: under the GIL a
reader sees a whole value, and with one writer an increment loses nothing, so no lock.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from typing import Awaitable, Callable

import grpc

from nodemesh import __version__
from nodemesh.agent.controlplane.channel import ControllerAccess
from nodemesh.agent.supervision import Backoff, Health
from nodemesh.api import mesh_pb2 as pb
from nodemesh.api import mesh_pb2_grpc

log = logging.getLogger(__name__)

HEALTH_NAME = "config subscription"
# A stream that lasted this long had been working: the next reconnect starts the backoff over.
HEALTHY_STREAM_SECONDS = 10.0

# Applies an update on the agent's loop; returns None if accepted, else the reason.
ApplyUpdate = Callable[[pb.ConfigUpdate], Awaitable[str | None]]


class ConfigClient:
    def __init__(self, access: ControllerAccess, node: str, apply: ApplyUpdate,
                 loop: asyncio.AbstractEventLoop, health: Health | None = None) -> None:
        """``access``: the controller's address and this node's credentials; each trust bundle
        the agent accepts is handed to it, so reconnects follow a root rotation."""
        self.access = access
        self.health = health or Health()
        self.target = access.target
        self.node = node
        self._apply = apply
        self._loop = loop
        self._stopping = threading.Event()
        self._call: grpc.Future | None = None
        self._thread = threading.Thread(target=self._run, name="config-client", daemon=True)
        self.connected = False
        self.last_error = ""
        self.applied_version = 0
        self.last_rejection = ""
        self.connects = 0  # streams that came up (the first update arrived)
        self.disconnects = 0  # of those, the ones lost while the agent was not stopping
        self.accepted = 0  # updates applied and acknowledged
        self.rejected = 0  # updates refused, with the reason sent back

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        call = self._call
        if call is not None:
            call.cancel()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        backoff = Backoff()
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                self._stream_once()
            except Exception as e:  # not the controller being away (that is an RpcError): a bug
                log.exception("the config subscription failed")
                self.last_error = f"{type(e).__name__}: {e}"
                self.health.failing(HEALTH_NAME, e)
            if self._stopping.is_set():
                return
            if time.monotonic() - started > HEALTHY_STREAM_SECONDS:
                backoff.reset()
            delay = backoff.next()
            log.warning("controller %s unavailable (%s); keeping the last config, retrying in %.1fs",
                        self.target, self.last_error, delay)
            self._stopping.wait(delay)

    def _stream_once(self) -> None:
        outbox: queue.Queue[pb.AgentMessage | None] = queue.Queue()
        outbox.put(pb.AgentMessage(hello=pb.AgentHello(
            node=self.node, agent_version=__version__, last_version=self.applied_version)))
        with self.access.channel() as channel:
            stub = mesh_pb2_grpc.MeshConfigStub(channel)
            self._call = stub.StreamConfig(iter(outbox.get, None))
            try:
                for update in self._call:
                    if not self.connected:
                        self.connected = True
                        self.connects += 1
                        log.info("subscribed to controller %s", self.target)
                    reason = self._apply_on_loop(update)
                    if reason is None:
                        self.applied_version = update.version
                        self.accepted += 1
                        if update.trust_bundle_pem:
                            self.access.trust(update.trust_bundle_pem)
                    else:
                        self.rejected += 1
                        self.last_rejection = f"version {update.version}: {reason}"
                        log.error("rejected config version %d: %s", update.version, reason)
                    outbox.put(pb.AgentMessage(ack=pb.Ack(
                        version=update.version, accepted=reason is None, reason=reason or "")))
                self.last_error = "the controller closed the stream"
            except grpc.RpcError as e:
                self.last_error = f"{e.code().name}: {e.details()}"  # type: ignore[attr-defined]
            finally:
                outbox.put(None)
                self._call = None
                if self.connected and not self._stopping.is_set():
                    self.disconnects += 1
                self.connected = False

    def _apply_on_loop(self, update: pb.ConfigUpdate) -> str | None:
        """Apply on the agent's loop: None if applied, else why not (sent back as a rejection)."""
        try:
            reason = asyncio.run_coroutine_threadsafe(self._apply(update), self._loop).result()
        except Exception as e:
            log.exception("applying config version %d failed", update.version)
            self.health.failing(HEALTH_NAME, e)
            return f"the agent failed to apply it: {type(e).__name__}: {e}"
        if reason is None:
            self.health.ok(HEALTH_NAME)
        return reason

    def status(self) -> dict[str, object]:
        return {
            "target": self.target,
            "connected": self.connected,
            "applied_version": self.applied_version,
            "last_error": self.last_error,
            "last_rejection": self.last_rejection,
            "connects": self.connects,
        }
