"""``nodemesh agent``: the node agent process, wired together.

Start order matters for users: the programs are attached only once the proxy can serve, and
on SIGTERM the steering programs are detached first, so a stopping agent never leaves pods
steered to listeners that are gone. The plaintext capture's links stay pinned in
``--bpffs-dir`` instead: STRICT pods keep refusing plaintext until the next agent takes over. Certificates are requested as soon as the config names this node's
meshed pods; the agent is ready once every one of them is enrolled and certified.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import click

from nodemesh.agent.ports import ADMIN_PORT, METRICS_PORT, READINESS_PORT
from nodemesh.errors import UserError
from nodemesh.flags import checked_by
from nodemesh.logs import LEVELS

if TYPE_CHECKING:
    from nodemesh.agent.inpod.discovery import NetnsSource
    from nodemesh.agent.state.store import View
    from nodemesh.api import mesh_pb2 as pb

log = logging.getLogger("nodemesh.agent")

BPFFS_ROOT = Path("/sys/fs/bpf/nodemesh")  # --bpffs-dir is <this>/<node> unless given
ENROLL_RETRY_SECONDS = 1.0  # pods whose namespace or certificate was not there yet


@dataclass(frozen=True)
class Telemetry:
    """What the agent reports, and where (docs/telemetry.md)."""

    metrics: bool = True
    metrics_port: int = METRICS_PORT
    access_log: str = "stderr"  # "stderr", "off" or a file path
    otlp_endpoint: str = ""  # HOST:PORT of an OTLP/gRPC collector; "" exports no spans


class Agent:
    def __init__(self, node: str, controller: str, cgroup: Path, pod_netns: NetnsSource, bpffs_dir: Path,
                 admin_port: int, readiness_port: int, connect_timeout: float,
                 controller_ca: bytes, token: Callable[[], str], telemetry: Telemetry = Telemetry(),
                 controller_name: str | None = None) -> None:
        self.node = node
        self.controller = controller
        self.controller_ca = controller_ca
        self.token = token
        self.controller_name = controller_name
        self.cgroup = cgroup
        self.pod_netns = pod_netns
        self.bpffs_dir = bpffs_dir
        self.admin_port = admin_port
        self.readiness_port = readiness_port
        self.connect_timeout = connect_timeout
        self.telemetry = telemetry
        self.view: View | None = None

    async def run(self) -> None:
        from nodemesh.agent.admin.http import HttpEndpoint
        from nodemesh.agent.admin.views import AdminViews, AgentParts
        from nodemesh.agent.controlplane.ca_client import CaClient
        from nodemesh.agent.controlplane.channel import ControllerAccess
        from nodemesh.agent.controlplane.subscription import ConfigClient
        from nodemesh.agent.ebpf.capture import PlaintextCapture
        from nodemesh.agent.ebpf.steering import Steering
        from nodemesh.agent.identity.manager import CertManager
        from nodemesh.agent.inpod.enroller import Enroller
        from nodemesh.agent.proxy.node import NodeProxy
        from nodemesh.agent.supervision import Supervisor
        from nodemesh.agent.telemetry.accesslog import OFF, AccessLog
        from nodemesh.agent.telemetry.looplag import LoopLag
        from nodemesh.agent.telemetry.node import NodeCollector, NodeParts
        from nodemesh.agent.telemetry.spans import Tracer
        from nodemesh.agent.telemetry.tracing import SpanExporter
        from nodemesh.agent.telemetry.traffic import TrafficCollector
        from nodemesh.metrics import new_registry

        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

        supervisor = Supervisor()
        access = ControllerAccess(self.controller, self.controller_ca, self.token, self.node,
                                  self.controller_name)
        self.certs = CertManager(CaClient(access).sign, supervisor)
        telemetry = self.telemetry
        self.proxy = NodeProxy(lambda: self.view, lambda p, l: self.steering.original_dst(p, l),
                               self.certs, self.connect_timeout, metrics=telemetry.metrics)
        table = self.proxy.core.table
        self.steering = Steering(self.cgroup)
        capture = None
        access_log = spans = lag = None
        endpoints: list[HttpEndpoint] = []
        try:
            if telemetry.otlp_endpoint:
                spans = SpanExporter(telemetry.otlp_endpoint, self.node)
                table.observers.append(Tracer(spans))
                self.proxy.core.tracing = True
            if telemetry.access_log != OFF:
                access_log = AccessLog(telemetry.access_log)
                table.observers.append(access_log)
            registry = None
            if telemetry.metrics:
                registry = new_registry("agent")
                registry.register(TrafficCollector(table, self.proxy.core.authorizer))
                if access_log is not None:
                    registry.register(access_log)
            capture = PlaintextCapture(self.bpffs_dir)
            self.enroller = Enroller(self.node, self.pod_netns, self.steering, self.proxy, capture)
            self.config = ConfigClient(access, self.node, self._apply, loop, supervisor.health)
            views = AdminViews(AgentParts(self.node, self.cgroup, lambda: self.view, self.steering,
                                          capture, self.enroller, self.certs, self.proxy, self.config,
                                          supervisor.health, registry))
            if registry is not None:
                lag = LoopLag()
                lag.start()
                registry.register(NodeCollector(NodeParts(
                    self.proxy, self.certs, self.config, self.enroller, self.steering, capture,
                    ready=lambda: bool(views.readiness()["ready"])), lag))
            endpoints = [HttpEndpoint("127.0.0.1", self.admin_port, views.admin_routes(), loop),
                         HttpEndpoint("0.0.0.0", self.readiness_port, views.readiness_routes(), loop)]
            if registry is not None:  # Prometheus scrapes from elsewhere: every address
                endpoints.append(HttpEndpoint("0.0.0.0", telemetry.metrics_port, views.metrics_routes(), loop))
            for endpoint in endpoints:
                endpoint.start()
            self.config.start()
            supervisor.every("enrollment retry", ENROLL_RETRY_SECONDS, self._retry_pending)
            log.info("agent for node %s running; controller %s", self.node, self.controller)
            await stop.wait()
            log.info("stopping")
            self.config.stop()
        finally:
            if lag is not None:
                lag.close()
            supervisor.close()
            self.steering.close()  # first: pods' connections are no longer steered
            if hasattr(self, "enroller"):
                self.enroller.close()
            if capture is not None:
                capture.close()
            self.proxy.close()
            self.certs.close()
            for endpoint in endpoints:
                endpoint.stop()
            if access_log is not None:
                access_log.close()  # after the proxy: the connections it closed are logged too
            if spans is not None:
                spans.close()
        log.info("agent stopped")

    async def _apply(self, update: pb.ConfigUpdate) -> str | None:
        from nodemesh.agent.state.store import Rejected, apply_update

        try:
            view = apply_update(self.view, update)
        except Rejected as e:
            return str(e)
        try:
            self.steering.set_destinations(view.mesh_destinations())
        except OSError as e:
            if self.view is not None:
                self.steering.set_destinations(self.view.mesh_destinations())
            return f"cannot program mesh destinations: {e}"
        self.view = view
        rejected = self.proxy.recheck()  # at once: a policy change applies to open connections too
        if rejected:
            log.warning("config version %d: %d open connection(s) reset, no longer allowed by policy",
                        view.version, rejected)
        self.certs.update(view.local_meshed(self.node), view.trust_bundle)
        await self.enroller.reconcile(view)
        log.info("applied config version %d: %d workloads, %d services, %d enrolled, %d pending",
                 view.version, len(view.model.workloads), len(view.model.services),
                 len(self.enroller.enrolled), len(self.enroller.pending))
        return None

    async def _retry_pending(self) -> None:
        if self.view is not None and self.enroller.pending:
            await self.enroller.reconcile(self.view)


def _raise_file_limit() -> None:
    """Two descriptors per relayed connection: take all the open files the host allows."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        log.info("open files limit raised from %d to %d", soft, hard)


def _tune_malloc() -> None:
    """Keep read buffers in the heap: without this, every TLS read costs three syscalls.

    The ssl module reads into a new bytes object of the size asked for (uvloop asks 256 KiB),
    then shrinks it to what arrived. glibc serves blocks that large with mmap, and shrinking
    one with mremap hides its size from the rule that would raise the mmap threshold: until
    some read fills a whole buffer (a bulk transfer), each read did mmap + mremap + munmap and
    page faults, on every request; an agent that carries only small messages never got out
    of it. A fixed threshold of 1 MiB (and a trim threshold above it, so the heap is not
    given back and taken again on each read) serves them from the heap from the start.
    """
    import ctypes
    import ctypes.util

    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # malloc.h
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        libc.mallopt(M_MMAP_THRESHOLD, 1 << 20)
        libc.mallopt(M_TRIM_THRESHOLD, 4 << 20)
    except (OSError, AttributeError):  # not glibc: its allocator decides
        pass


class NoCgroupRoot(UserError):
    """No --cgroup given and no cgroup v2 hierarchy mounted to default to."""


def _cgroup_root() -> Path:
    from nodemesh.cgroups import unified_root

    root = unified_root()
    if root is None:
        raise NoCgroupRoot("no cgroup2 filesystem is mounted (none in /proc/self/mounts): mount the cgroup v2 "
                           "hierarchy, or name a cgroup v2 directory with --cgroup")
    return root


TEMPLATE, CGROUP = "template", "cgroup"  # --pod-netns-from


def _pod_netns(source: str, template: str | None, cgroup: Path) -> NetnsSource:
    from nodemesh.agent.inpod.discovery import KubeletCgroups, PathTemplate

    if source == CGROUP:
        if template is not None:
            raise click.UsageError("--pod-netns-template is for --pod-netns-from=template only")
        return KubeletCgroups(cgroup)
    if template is None:
        raise click.UsageError("--pod-netns-from=template needs --pod-netns-template "
                               "(or find pods by their cgroups: --pod-netns-from=cgroup)")
    return PathTemplate(template)


def _check_netns_template(value: str | None) -> None:
    from nodemesh.agent.inpod.discovery import check_netns_template  # loads the model: not for --help

    if value is not None:
        check_netns_template(value)


def _check_otlp_endpoint(value: str) -> None:
    from nodemesh.agent.telemetry.tracing import check_endpoint  # loads the SDK: not for --help

    if value:
        check_endpoint(value)


PORT = click.IntRange(1, 65535)


@click.command()
@click.option("--node", required=True, help="This node's name (pods' spec.nodeName).")
@click.option("--controller", default="127.0.0.1:15012", show_default=True, help="Controller gRPC address.")
@click.option("--controller-ca", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="PEM root(s) the controller's TLS certificate chains to (its CA root).")
@click.option("--controller-name", metavar="DNS",
              help="The name to verify in the controller's TLS certificate, when --controller is "
                   "an address it does not name (a Service's IP).")
@click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="This node's token (a join token, or the pod's projected service-account "
                   "token), read again for every connection to the controller.")
@click.option("--cgroup", type=click.Path(exists=True, file_okay=False, path_type=Path),
              show_default="the cgroup v2 root, from /proc/self/mounts",
              help="cgroup v2 directory to attach the steering programs to (the root on a real node), "
                   "below which --pod-netns-from=cgroup finds the kubelet's pods.")
@click.option("--pod-netns-from", type=click.Choice([TEMPLATE, CGROUP]), default=TEMPLATE, show_default=True,
              help="Find a pod's network namespace by --pod-netns-template, or by pod UID in the kubelet's "
                   "cgroups below --cgroup (a process of the pod).")
@click.option("--pod-netns-template", callback=checked_by(_check_netns_template),
              help="Path of a pod's network namespace, with {namespace}, {name}, {uid} "
                   "(--pod-netns-from=template).")
@click.option("--bpffs-dir", type=click.Path(file_okay=False, path_type=Path),
              show_default=f"{BPFFS_ROOT}/<node>",
              help="Directory in bpffs for what must outlive the agent (the plaintext capture's "
                   "links), this node's alone.")
@click.option("--admin-port", type=PORT, default=ADMIN_PORT, show_default=True)
@click.option("--readiness-port", type=PORT, default=READINESS_PORT, show_default=True)
@click.option("--metrics-port", type=PORT, default=METRICS_PORT, show_default=True,
              help="Prometheus /metrics (and /stats/prometheus), on every address.")
@click.option("--metrics/--no-metrics", default=True, show_default=True,
              help="Count traffic per workload pair and serve the metrics.")
@click.option("--access-log", default="stderr", show_default=True, metavar="stderr|off|PATH",
              help="One JSON line per connection, to stderr, to a file (appended), or off.")
@click.option("--otlp-endpoint", default="", metavar="HOST:PORT", callback=checked_by(_check_otlp_endpoint),
              help="OTLP/gRPC collector to export one span per connection to (default: none).")
@click.option("--connect-timeout", type=click.FloatRange(min=0, min_open=True), default=5.0,
              show_default=True, help="Seconds to connect upstream.")
@click.option("--log-level", type=click.Choice(LEVELS, case_sensitive=False), default="info",
              show_default=True)
def agent(node: str, controller: str, controller_name: str | None, controller_ca: Path,
          token_file: Path, cgroup: Path | None, pod_netns_from: str, pod_netns_template: str | None,
          bpffs_dir: Path | None, admin_port: int, readiness_port: int,
          metrics_port: int, metrics: bool, access_log: str, otlp_endpoint: str, connect_timeout: float,
          log_level: str) -> None:
    """Run the node agent: eBPF steering, pod enrollment and the node proxy."""
    import uvloop

    from nodemesh import logs
    from nodemesh.agent.controlplane.channel import read_credentials

    cgroup = cgroup or _cgroup_root()
    pod_netns = _pod_netns(pod_netns_from, pod_netns_template, cgroup)
    logs.setup(log_level)
    _tune_malloc()
    _raise_file_limit()
    root_pem, token = read_credentials(controller_ca, token_file)
    agent = Agent(node, controller, cgroup, pod_netns, bpffs_dir or BPFFS_ROOT / node,
                  admin_port, readiness_port, connect_timeout, root_pem, token,
                  Telemetry(metrics, metrics_port, access_log, otlp_endpoint), controller_name)
    uvloop.run(agent.run())  # a UserError (credentials, programs, ports) ends it at `nodemesh`'s group
