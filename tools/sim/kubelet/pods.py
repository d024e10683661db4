"""One Pod on a sim node, from its binding to its final delete: the kubelet's pod worker.

``PodWorker.run`` waits for the pod's volumes (a ConfigMap or Secret that does not exist yet
is retried, as the kubelet does), gives the pod its address and network, starts its
containers, then loops: reaps exits (restartPolicy and CrashLoop backoff), runs readiness
probes, refreshes projected tokens at 80% of their lifetime, and patches the status whenever
it changed. A deletionTimestamp ends it: SIGTERM, the grace period, SIGKILL, the netns and
cgroups removed, then the kubelet's final delete (grace 0, on this pod's UID only).
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from nodemesh.tools.sim import process
from nodemesh.tools.sim.kubelet import addresses, podvolumes, runtime
from nodemesh.tools.sim.kubelet.backoff import Backoff, should_restart
from nodemesh.tools.sim.kubelet.envvars import PodSpecError, container_argv, container_env
from nodemesh.tools.sim.kubelet.podstatus import ContainerState, pod_status
from nodemesh.tools.sim.kubelet.podvolumes import get_json
from nodemesh.tools.sim.kubelet.probes import ProbeState, run_probe
from nodemesh.tools.sim.kubelet.qos import pod_cgroup
from nodemesh.tools.sim.kubelet.volumes import HostView, VolumeNotReady, mount_plan
from nodemesh.tools.sim.names import SimNames
from nodemesh.tools.sim.plan import NodePlan

log = logging.getLogger(__name__)

TICK = 0.5  # how often a worker looks at its processes and probes
VOLUME_RETRY = 2.0
TOKEN_REFRESH = 0.8  # of a token's lifetime
DEFAULT_GRACE = 30
MERGE_PATCH = "application/merge-patch+json"
# What a call to the API server may meet that the next try may not: the worker waits and retries.
TRANSIENT = (ApiException, aiohttp.ClientError, OSError, asyncio.TimeoutError)


@dataclass
class NodeContext:
    """What every pod worker of one kubelet shares."""

    names: SimNames
    node: NodePlan
    host: HostView
    api: client.ApiClient
    addresses: addresses.PodAddresses
    addresses_path: Path

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    def pod_dir(self, uid: str) -> Path:
        return self.names.kubelet_dir(self.node.name) / "pods" / uid


@dataclass
class _Container:
    spec: dict[str, Any]
    state: ContainerState
    record: Any = None
    child: subprocess.Popen | None = None
    backoff: Backoff = field(default_factory=Backoff)
    restart_at: float | None = None
    probe: ProbeState | None = None


class PodWorker:
    def __init__(self, ctx: NodeContext, pod: dict[str, Any],
                 predecessor: asyncio.Task | None = None) -> None:
        self.ctx = ctx
        self.predecessor = predecessor
        self.pod = pod
        self.uid: str = pod["metadata"]["uid"]
        self.ref = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
        self.deleting = asyncio.Event()
        self.gone = False  # the object is gone from the API server: no final delete to make
        self.containers = [_Container(c, ContainerState(c["name"])) for c in pod["spec"]["containers"]]
        self.started = time.time()
        self.ready_since = self.started
        self.last_status: dict[str, Any] | None = None
        self.netns_path = ""
        self.pod_ip = ""
        self.token_refresh_at: float | None = None

    # -- from the watch ------------------------------------------------------------------
    def update(self, pod: dict[str, Any]) -> None:
        self.pod = pod
        if pod["metadata"].get("deletionTimestamp"):
            self.deleting.set()

    def vanished(self) -> None:
        self.gone = True
        self.deleting.set()

    # -- the pod's view with the kubelet's status (for fieldRefs and downward API) ---------
    @property
    def host_network(self) -> bool:
        return bool(self.pod["spec"].get("hostNetwork"))

    def _view(self) -> dict[str, Any]:
        status = {"podIP": self.pod_ip, "podIPs": [{"ip": self.pod_ip}],
                  "hostIP": self.ctx.node.ip, "hostIPs": [{"ip": self.ctx.node.ip}]}
        return {**self.pod, "status": {**self.pod.get("status", {}), **status}}

    @property
    def cgroup(self) -> Path:
        return pod_cgroup(Path(self.ctx.names.node_cgroup(self.ctx.node.name)), self.pod["spec"], self.uid)

    # -- volumes -------------------------------------------------------------------------
    async def _write_volumes(self) -> dict[str, str]:
        dirs, lifetime = await podvolumes.write(self.ctx.core, self._view(),
                                                self.ctx.pod_dir(self.uid) / "volumes")
        if lifetime is not None:
            self.token_refresh_at = time.monotonic() + TOKEN_REFRESH * lifetime
        return dirs

    async def _volumes_when_ready(self) -> dict[str, str] | None:
        while True:
            try:
                return await self._write_volumes()
            except VolumeNotReady as exc:
                log.info("%s: waiting: %s", self.ref, exc)
                await self._patch_status()
            except TRANSIENT as exc:
                log.warning("%s: cannot fetch its volumes yet (retrying): %s", self.ref, exc)
            try:
                await asyncio.wait_for(self.deleting.wait(), VOLUME_RETRY)
                return None
            except asyncio.TimeoutError:
                pass

    # -- network and containers -------------------------------------------------------------
    async def _network(self) -> None:
        if self.host_network:
            self.pod_ip = self.ctx.node.ip
            self.netns_path = self.ctx.names.netns_path(self.ctx.names.node_netns(self.ctx.node.name))
            return
        # The address is taken on the loop, not in the thread below: workers of pods started
        # together would otherwise share the node's allocator and its file across threads.
        self.pod_ip = self.ctx.addresses.assign(self.uid)
        addresses.save(self.ctx.addresses_path, self.ctx.addresses)
        meta = self.pod["metadata"]
        self.netns_path = await asyncio.to_thread(  # pyroute2's sync API runs its own loop
            runtime.ensure_pod_network, self.ctx.names, self.ctx.node, meta["namespace"],
            meta["name"], self.pod_ip)

    async def _services(self) -> list[dict[str, Any]]:
        ns = self.pod["metadata"]["namespace"]
        found = (await get_json(self.ctx.core.list_namespaced_service, ns))["items"]
        if ns != "default":
            found += (await get_json(self.ctx.core.list_namespaced_service, "default"))["items"]
        return found

    async def _retrying(self, call: Any) -> Any:
        while True:
            try:
                return await call()
            except TRANSIENT as exc:
                log.warning("%s: %s (retrying)", self.ref, exc)
                await asyncio.sleep(VOLUME_RETRY)

    def _plan(self, dirs: dict[str, str], services: list[dict[str, Any]]) -> None:
        view = self._view()
        base = process.process_env({})
        for c in self.containers:
            env = container_env(view, c.spec, services, base)
            argv = container_argv(view, c.spec, env)
            mounts = mount_plan(view, c.spec, dirs, self.ctx.host)
            c.record = runtime.container_record(
                argv, env, self.netns_path, Path(self.ctx.names.node_cgroup(self.ctx.node.name)),
                self.cgroup / c.spec["name"], json.dumps([m.as_dict() for m in mounts]),
                self.ctx.names.pod_log(self.pod["metadata"]["namespace"],
                                       self.pod["metadata"]["name"], c.spec["name"]))

    def _start(self, c: _Container) -> None:
        c.child = runtime.start(c.record, self.cgroup / c.spec["name"])
        c.state.started_at = time.time()
        c.state.pid = c.child.pid
        c.restart_at = None
        c.probe = ProbeState(c.spec.get("readinessProbe"), time.monotonic())
        log.info("%s: container %s started (pid %d)", self.ref, c.spec["name"], c.child.pid)

    def _reap(self, c: _Container, now: float) -> None:
        if c.child is None or c.child.poll() is None:
            return
        code = c.child.returncode
        ran = time.time() - (c.state.started_at or time.time())
        c.child, c.probe = None, None
        c.state.started_at, c.state.ready, c.state.pid = None, False, None
        c.state.exit_code, c.state.finished_at = code, time.time()
        if should_restart(self.pod["spec"].get("restartPolicy", "Always"), code):
            delay = c.backoff.next_delay(ran)
            c.restart_at = now + delay
            c.state.waiting_reason = "CrashLoopBackOff"
            log.info("%s: container %s exited %d; restarting in %gs", self.ref, c.spec["name"], code,
                     delay)
        else:
            c.state.done = True

    async def _probe(self, c: _Container, now: float) -> None:
        if c.child is None or c.probe is None:
            return
        if c.probe.due(now):
            ok = await run_probe(c.probe.probe, c.spec, self.pod_ip, c.child.pid)
            c.probe.record(ok, time.monotonic())
        c.state.ready = c.probe.ready

    # -- status --------------------------------------------------------------------------
    async def _patch_status(self) -> None:
        states = [c.state for c in self.containers]
        ready = all(s.ready for s in states)
        if self.last_status is None or ready != all(
                cs["ready"] for cs in self.last_status.get("containerStatuses", [])):
            self.ready_since = time.time()
        status = pod_status(self.pod, self.pod_ip, self.ctx.node.ip, self.started, states,
                            self.ready_since)
        if status == self.last_status:
            return
        meta = self.pod["metadata"]
        try:
            await self.ctx.core.patch_namespaced_pod_status(
                meta["name"], meta["namespace"], {"status": status}, _content_type=MERGE_PATCH)
            self.last_status = status
        except TRANSIENT as exc:  # sent again next tick: last_status still differs
            log.warning("%s: status update failed (retrying): %s", self.ref, exc)

    # -- the lifecycle -------------------------------------------------------------------
    async def run(self) -> None:
        if self.predecessor is not None:
            await asyncio.wait([self.predecessor])
        try:
            dirs = None if self.deleting.is_set() else await self._volumes_when_ready()
            if dirs is not None:
                await self._network()
                self._plan(dirs, await self._retrying(self._services))
                for c in self.containers:
                    self._start(c)
                await self._loop(dirs)
        except PodSpecError as exc:
            log.error("%s", exc)
            for c in self.containers:
                c.state.waiting_reason = "CreateContainerConfigError"
            await self._patch_status()
            await self.deleting.wait()
        except Exception:
            # The kubelet tries the pod again from the start: nothing of this try stays but the
            # pod's address, which is its own.
            await self.stop_processes(0.0)
            await self._remove_network()
            raise
        finally:
            if self.deleting.is_set():
                await self._terminate()

    async def _loop(self, dirs: dict[str, str]) -> None:
        while not self.deleting.is_set():
            now = time.monotonic()
            for c in self.containers:
                self._reap(c, now)
                if c.restart_at is not None and now >= c.restart_at:
                    c.state.restart_count += 1
                    self._start(c)
                await self._probe(c, now)
            if self.token_refresh_at is not None and now >= self.token_refresh_at:
                try:
                    await self._write_volumes()
                except (VolumeNotReady, *TRANSIENT) as exc:  # the files it has stay meanwhile
                    log.warning("%s: volumes not refreshed (retrying): %s", self.ref, exc)
                    self.token_refresh_at = now + VOLUME_RETRY
            await self._patch_status()
            try:
                await asyncio.wait_for(self.deleting.wait(), TICK)
            except asyncio.TimeoutError:
                pass

    def grace(self) -> float:
        meta, spec = self.pod["metadata"], self.pod["spec"]
        grace = meta.get("deletionGracePeriodSeconds")
        return float(grace if grace is not None else spec.get("terminationGracePeriodSeconds",
                                                               DEFAULT_GRACE))

    async def stop_processes(self, grace: float) -> None:
        """Every process of the pod: ours, and any other in its cgroups (a container's children
        that left its process group, or what a killed kubelet left behind)."""
        pids = {c.child.pid for c in self.containers if c.child is not None and c.child.poll() is None}
        await asyncio.to_thread(runtime.stop, [*pids, *runtime.cgroup_pids(self.cgroup)], grace)
        for c in self.containers:
            if c.child is not None:
                c.child.wait()
                c.child = None

    async def _remove_network(self) -> None:
        if not self.host_network:
            meta = self.pod["metadata"]
            await asyncio.to_thread(runtime.remove_pod_network, self.ctx.names, self.ctx.node.name,
                                    meta["namespace"], meta["name"])

    async def _terminate(self) -> None:
        await self.stop_processes(0.0 if self.gone else self.grace())
        await self._remove_network()
        if not self.host_network:
            self.ctx.addresses.release(self.uid)
            addresses.save(self.ctx.addresses_path, self.ctx.addresses)
        runtime.remove_pod_files(self.cgroup, self.ctx.pod_dir(self.uid))
        if not self.gone:
            await self._retrying(self._final_delete)
        log.info("%s: removed", self.ref)

    async def _final_delete(self) -> None:
        """The kubelet's last word on a pod: gone now (404: already; 409: another pod's UID)."""
        meta = self.pod["metadata"]
        try:
            await self.ctx.core.delete_namespaced_pod(
                meta["name"], meta["namespace"], grace_period_seconds=0,
                body=client.V1DeleteOptions(grace_period_seconds=0,
                                            preconditions=client.V1Preconditions(uid=self.uid)))
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise
