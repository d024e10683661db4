"""The sim kubelet's process: register the Node, watch the node's Pods, run each in a worker.

The watch is list-then-watch on ``spec.nodeName=<node>`` from the list's resourceVersion, with
bookmarks; a 410 Gone (the version was compacted away) or any other watch failure relists,
which also catches what happened meanwhile: a pod that is no longer listed is gone. SIGTERM
(``sim down``, ``sim stop``) stops every pod's processes before the kubelet exits, leaving
namespaces and addresses for a kubelet started again (or for ``sim down`` to remove).

    python -m nodemesh.tools.sim.kubelet --sim S --node N --node-ip IP --pod-cidr CIDR \\
        --zone Z --kubeconfig FILE
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from pathlib import Path, PurePosixPath
from typing import Any

import aiohttp
import click
from kubernetes_asyncio import watch
from kubernetes_asyncio.client.exceptions import ApiException

from nodemesh import cgroups, logs
from nodemesh.controller.apiclient import connect
from nodemesh.tools.sim.kubelet import addresses
from nodemesh.tools.sim.kubelet.node import keep_alive, register
from nodemesh.tools.sim.kubelet.nodeobject import NodeInfo
from nodemesh.tools.sim.kubelet.pods import NodeContext, PodWorker
from nodemesh.tools.sim.kubelet.podvolumes import get_json
from nodemesh.tools.sim.kubelet.volumes import HostView
from nodemesh.tools.sim.names import SimError, SimNames
from nodemesh.tools.sim.plan import NodePlan

log = logging.getLogger(__name__)

WATCH_SECONDS = 300
RELIST_BACKOFF = 1.0
EXIT_GRACE = 5.0
RETRY_AFTER = 10.0  # the kubelet's pod worker backoff after a failed sync


def _ref(pod: dict[str, Any]) -> str:
    return f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"


class Kubelet:
    """The node's pod workers, by pod UID.

    A worker that fails (an error it has no answer for: a netlink call refused, a file it could
    not write) has stopped its processes; the pod is tried again by a new worker after
    ``RETRY_AFTER``, with the latest object the watch gave meanwhile, as the kubelet's pod
    workers retry a failed sync. A pod deleted meanwhile gets a worker at once, to clean up.
    """

    worker = PodWorker

    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        self.workers: dict[str, PodWorker] = {}
        self.tasks: dict[str, asyncio.Task] = {}
        self.retrying: dict[str, dict[str, Any]] = {}  # uid -> the pod, until its retry

    def apply(self, pod: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        if uid in self.workers:
            self.workers[uid].update(pod)
            return
        if uid in self.retrying:
            self.retrying[uid] = pod
            if not pod["metadata"].get("deletionTimestamp"):
                return
            del self.retrying[uid]
        if pod.get("status", {}).get("phase") in ("Succeeded", "Failed") and not pod[
                "metadata"].get("deletionTimestamp"):
            return  # finished before this kubelet started: nothing left to run
        # A pod of the same name still terminating holds the netns name: the new one waits for it.
        before = [t for uid, t in self.tasks.items() if self.workers[uid].ref == _ref(pod)]
        worker = self.worker(self.ctx, pod, before[0] if before else None)
        worker.update(pod)
        self.workers[uid] = worker
        task = asyncio.create_task(worker.run(), name=f"pod {worker.ref}")
        self.tasks[uid] = task
        task.add_done_callback(lambda t, uid=uid: self._done(uid, t))

    def _done(self, uid: str, task: asyncio.Task) -> None:
        worker = self.workers.pop(uid)
        self.tasks.pop(uid, None)
        if task.cancelled() or task.exception() is None:
            return
        log.error("%s: pod worker failed (trying again in %gs)", worker.ref, RETRY_AFTER,
                  exc_info=task.exception())
        self.retrying[uid] = worker.pod
        asyncio.get_running_loop().call_later(RETRY_AFTER, self._retry, uid, worker.gone)

    def _retry(self, uid: str, gone: bool = False) -> None:
        pod = self.retrying.pop(uid, None)
        if pod is not None:
            self.apply(pod)
            if gone:
                self.vanish(uid)

    def vanish(self, uid: str) -> None:
        if uid in self.retrying:
            self._retry(uid, gone=True)  # its worker removes what the failed one left
        elif uid in self.workers:
            self.workers[uid].vanished()

    async def watch(self) -> None:
        core = self.ctx.core
        selector = f"spec.nodeName={self.ctx.node.name}"
        while True:
            try:
                listing = await get_json(core.list_pod_for_all_namespaces, field_selector=selector)
                listed = {p["metadata"]["uid"] for p in listing["items"]}
                for uid in (set(self.workers) | set(self.retrying)) - listed:
                    self.vanish(uid)
                for pod in listing["items"]:
                    self.apply(pod)
                version = listing["metadata"]["resourceVersion"]
                while True:
                    version = await self._watch_from(version, selector)
            except ApiException as exc:
                if exc.status != 410:
                    log.warning("pod watch failed (%s %s): relisting", exc.status, exc.reason)
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                log.warning("pod watch failed (%s): relisting", exc)
            await asyncio.sleep(RELIST_BACKOFF)

    async def _watch_from(self, version: str, selector: str) -> str:
        """One watch request; returns the version to go on from."""
        async with watch.Watch().stream(self.ctx.core.list_pod_for_all_namespaces,
                                        field_selector=selector, resource_version=version,
                                        allow_watch_bookmarks=True,
                                        timeout_seconds=WATCH_SECONDS) as stream:
            async for event in stream:
                pod = event["raw_object"]
                version = pod["metadata"]["resourceVersion"]
                if event["type"] == "DELETED":
                    self.vanish(pod["metadata"]["uid"])
                elif event["type"] in ("ADDED", "MODIFIED"):
                    self.apply(pod)
        return version

    async def shutdown(self) -> None:
        """Stop every pod's processes (the kubelet is going away, its pods with it)."""
        workers, tasks = list(self.workers.values()), list(self.tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(w.stop_processes(EXIT_GRACE) for w in workers))


def _on_stop_signals(loop: asyncio.AbstractEventLoop, stopping: asyncio.Event) -> None:
    """SIGTERM and SIGINT set ``stopping``, in this process only.

    Not ``loop.add_signal_handler``: its wakeup fd is inherited by the helper children pyroute2
    forks to work in a netns, and a SIGTERM pyroute2 sends its own child reached this loop
    through it, stopping the kubelet. A forked child gets the default action instead.
    """
    me = os.getpid()

    def handler(signum: int, _frame: object) -> None:
        if os.getpid() != me:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        loop.call_soon_threadsafe(stopping.set)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, handler)


async def serve(names: SimNames, info: NodeInfo, kubeconfig: Path) -> None:
    stopping = asyncio.Event()  # from the start: a kubelet stopped while registering exits cleanly
    _on_stop_signals(asyncio.get_running_loop(), stopping)
    unified = cgroups.unified_root()
    if unified is None:
        raise SimError("cgroup v2 (the unified hierarchy) is not mounted: run `nodemesh check`")
    names.node_bpf_dir(info.name).mkdir(parents=True, exist_ok=True)
    kubelet_dir = names.kubelet_dir(info.name)
    ip_file = kubelet_dir / "pod-ips.json"
    api = await connect(kubeconfig)
    async with api:
        ctx = NodeContext(names=names, node=NodePlan(info.name, info.ip, info.pod_cidr),
                          host=HostView(PurePosixPath(names.node_cgroup(info.name)),
                                        PurePosixPath(unified),
                                        PurePosixPath(names.node_bpf_dir(info.name))),
                          api=api, addresses=addresses.load(ip_file, info.pod_cidr),
                          addresses_path=ip_file)
        since = time.time()
        node_uid = await register(api, info, since)
        log.info("node %s registered and Ready", info.name)
        kubelet = Kubelet(ctx)
        work = [asyncio.create_task(keep_alive(api, info, node_uid, since)),
                asyncio.create_task(kubelet.watch())]
        await stopping.wait()
        log.info("stopping: the pods' processes go first")
        for task in work:
            task.cancel()
        await asyncio.gather(*work, return_exceptions=True)
        await kubelet.shutdown()


@click.command()
@click.option("--sim", "sim", required=True, help="The simulated cluster's name.")
@click.option("--node", required=True, help="The sim node to be the kubelet of.")
@click.option("--node-ip", required=True, help="The node's InternalIP.")
@click.option("--pod-cidr", required=True, help="The node's spec.podCIDR (pod IPs .10-.254).")
@click.option("--zone", required=True, help="topology.kubernetes.io/zone of the node.")
@click.option("--kubeconfig", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The node's credentials (system:node:<node>).")
@click.option("--log-level", type=click.Choice(logs.LEVELS, case_sensitive=False), default="info")
def main(sim: str, node: str, node_ip: str, pod_cidr: str, zone: str, kubeconfig: Path,
         log_level: str) -> None:
    """Be the kubelet of one sim node (started by `nodemesh sim up --kube`)."""
    logs.setup(log_level)
    asyncio.run(serve(SimNames(sim), NodeInfo(node, node_ip, pod_cidr, zone), kubeconfig))
