"""The controller's ports: ``serve`` loads the model, then serves the config stream
(``stream/``) and the CA (``ca/service.py``) on one TLS port, and their metrics (``telemetry/``)
over HTTP on another, until stopped.

There is no plaintext mode: the port always serves TLS with a certificate from the controller's
own CA, fresh at each start, so agents need nothing but the CA root (``--controller-ca``) to
verify it. Its names are the addresses agents dial: the --listen address (every address of this
host when that is a wildcard), 127.0.0.1, and the DNS names of ``--server-name`` (in a cluster,
the Service's name, which agents dialling its IP verify with ``--controller-name``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import ipaddress
import logging
import socket
from dataclasses import dataclass
from typing import Callable, Mapping, Protocol, Sequence
from wsgiref.simple_server import WSGIServer

import grpc
from prometheus_client import CollectorRegistry, start_http_server

from nodemesh.api import mesh_pb2_grpc
from nodemesh.controller.ca.authority import Authority
from nodemesh.controller.ca.service import CaServicer
from nodemesh.controller.nodeauth.auth import Authenticator
from nodemesh.controller.stream.feed import ModelFeed
from nodemesh.controller.stream.service import ConfigServicer
from nodemesh.controller.stream.session import AgentSession
from nodemesh.controller.telemetry.collector import controller_registry
from nodemesh.identity import key_pem, new_key
from nodemesh.errors import UserError
from nodemesh.model import MeshModel

log = logging.getLogger(__name__)

DEFAULT_PORT = 15012
METRICS_PORT = 15014
DEFAULT_CERT_LIFETIME = dt.timedelta(hours=24)
STOP_GRACE_SECONDS = 2.0
LOOPBACK = "127.0.0.1"


class ModelSource(Protocol):
    """Where the model comes from (the file source, or the Kubernetes API)."""

    def load(self) -> MeshModel:
        """The model now; raises Problems (ConfigError, ModelError) when the objects are unusable."""

    async def watch(self, publish: Callable[[MeshModel], None]) -> None:
        """Call ``publish`` with each new valid model; runs until cancelled."""

    def rejected(self) -> Mapping[str, int]:
        """How many objects are left out of the model now, by kind."""


class ListenError(UserError):
    """The server cannot listen where it was asked to; the message says what to do."""


def parse_listen(text: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) -> (host, port); ValueError with the reason."""
    host, sep, port_text = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT (e.g. 0.0.0.0:{default_port}, "
                         f"127.0.0.1:0 for any free port)")
    return host, int(port_text)


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _cannot_listen(host: str, port: int, exc: OSError, flag: str) -> ListenError:
    """The refusal to listen on ``host:port`` (given with ``flag``), with what to do about it."""
    if exc.errno == errno.EADDRINUSE:
        hint = (f"another process holds port {port}: stop it (`ss -ltnp 'sport = :{port}'` shows "
                f"which) or choose another port with {flag} HOST:PORT")
    else:
        hint = f"give an address of this host with {flag} HOST:PORT"
    return ListenError(f"cannot listen on {host}:{port}: {exc.strerror}; {hint}")


def _check_bindable(host: str, port: int) -> None:
    """Fail with the real reason (port in use, address not here) before gRPC's vaguer error."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:  # socket.gaierror too
        raise _cannot_listen(host, port, exc, "--listen") from None


def serve_metrics(listen: str, registry: CollectorRegistry) -> WSGIServer:
    """Serve ``registry`` as Prometheus text at ``http://<listen>/metrics``, on threads of its own."""
    host, port = parse_listen(listen, METRICS_PORT)
    try:
        server, _ = start_http_server(port, host, registry=registry)
    except OSError as exc:
        raise _cannot_listen(host, port, exc, "--metrics-listen") from None
    log.info("metrics on http://%s/metrics", _host_port(host, server.server_port))
    return server


def _local_addresses() -> list[str]:
    """This host's addresses, asked of netlink from a thread of its own: pyroute2's synchronous
    API runs an event loop of its own, which cannot start inside the controller's running one."""
    from concurrent.futures import ThreadPoolExecutor

    from pyroute2 import IPRoute

    def query() -> list[str]:
        with IPRoute() as ipr:
            return [a.get_attr("IFA_ADDRESS") for a in ipr.get_addr()]

    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(query).result()


def server_names(host: str, extra: Sequence[str] = ()) -> list[str]:
    """What the certificate must name for agents dialling ``host`` (as given to --listen), and
    the ``extra`` names agents verify instead (``--server-name``)."""
    try:
        wildcard = ipaddress.ip_address(host).is_unspecified
    except ValueError:
        wildcard = False  # a DNS name
    names = _local_addresses() if wildcard else [host]
    return list(dict.fromkeys([*names, LOOPBACK, *extra]))


def server_credentials(authority: Authority, host: str,
                       extra_names: Sequence[str] = ()) -> grpc.ServerCredentials:
    key = new_key()
    names = server_names(host, extra_names)
    issued = authority.issue_server(key.public_key(), names)
    log.info("TLS certificate for %s, serial %x, not after %s", ", ".join(names),
             issued.cert.serial_number, issued.cert.not_valid_after_utc.isoformat())
    return grpc.ssl_server_credentials([(key_pem(key), issued.chain_pem)])


@dataclass
class RunningServer:
    """A started controller server; ``port`` is the bound one (useful with port 0), and so is
    ``metrics.server_port``."""

    host: str
    port: int
    feed: ModelFeed
    servicer: ConfigServicer
    watcher: asyncio.Task[None]
    _server: grpc.aio.Server
    metrics: WSGIServer | None = None

    @property
    def address(self) -> str:
        return _host_port(self.host, self.port)

    def agents(self) -> list[AgentSession]:
        return sorted(self.servicer.sessions, key=lambda s: (s.node, s.peer))

    async def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """End every stream cleanly (OK status), stop watching the source, close the ports."""
        self.watcher.cancel()
        self.feed.close()
        await self._server.stop(grace)
        if self.metrics is not None:
            await asyncio.to_thread(self.metrics.shutdown)  # waits for its loop's next poll
            self.metrics.server_close()


async def serve(source: ModelSource, listen: str, authority: Authority, authenticator: Authenticator,
                cert_lifetime: dt.timedelta = DEFAULT_CERT_LIFETIME,
                metrics_listen: str | None = None, extra_names: Sequence[str] = ()) -> RunningServer:
    """Load the model, listen on ``listen`` (HOST:PORT, TLS) and serve agents until ``stop()``:
    config streams, and workload certificates from ``authority`` valid for ``cert_lifetime``,
    to the nodes ``authenticator`` tells; and the metrics on ``metrics_listen`` (HOST:PORT,
    HTTP) unless that is None. ``extra_names`` are more DNS names for the TLS certificate.

    Raises Problems (ConfigError, ModelError) if the source's objects are unusable, ListenError
    if an address is not available.
    """
    host, port = parse_listen(listen)
    feed = ModelFeed(source.load())
    _check_bindable(host, port)
    # No SO_REUSEPORT: a second controller on the same port must fail, not share the traffic.
    # Agents ping every 10 s to notice a vanished controller; gRPC servers refuse pings more
    # often than every 5 minutes by default ("too many pings" then GOAWAY): accept theirs.
    server = grpc.aio.server(options=[
        ("grpc.so_reuseport", 0),
        ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
        ("grpc.keepalive_permit_without_calls", 1),
    ])
    servicer = ConfigServicer(feed, authenticator, authority.bundle_pem)
    ca = CaServicer(lambda: feed.current.model, authority, authenticator, cert_lifetime)
    mesh_pb2_grpc.add_MeshConfigServicer_to_server(servicer, server)
    mesh_pb2_grpc.add_CertificateAuthorityServicer_to_server(ca, server)
    try:
        bound = server.add_secure_port(listen, server_credentials(authority, host, extra_names))
    except RuntimeError as exc:
        raise ListenError(f"cannot listen on {listen}: {exc}") from None
    metrics = (serve_metrics(metrics_listen, controller_registry(servicer, ca, source.rejected))
               if metrics_listen is not None else None)
    await server.start()
    watcher = asyncio.create_task(source.watch(feed.publish), name="model-source")
    running = RunningServer(host=host, port=bound, feed=feed, servicer=servicer, watcher=watcher,
                            _server=server, metrics=metrics)
    log.info("listening on %s", running.address)
    return running
