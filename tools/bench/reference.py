"""The benchmark reference: HAProxy on each node doing the mesh's cross-node hop, as a user would by hand.

What a user builds without a mesh to get mutual TLS between two nodes, in C: on the client's
node a plain TCP frontend that the client pod dials, forwarding over TLS 1.3 with mutual
certificate checks to a frontend on the server's node, which forwards in plaintext to the
server pod. The benchmarks run the same load through it and through the mesh, on the same
simulated nodes, so that the comparison measures the data paths and nothing else.

Kept comparable with the mesh on purpose:
- one thread per HAProxy (``threads=1``), as the mesh's agent is one process on one event loop
  per node; more threads are a parameter, for the runs that ask what a second core buys;
- node certificates shaped like the mesh's workload certificates (ECDSA P-256, one SPIFFE URI
  SAN, signed directly by a throwaway root made with the controller's own issuing code), so both
  handshakes carry the same bytes and the same signature checks; TLS 1.3 only, HAProxy's
  default TLS 1.3 suites and groups (the system OpenSSL's, as the mesh's ``ssl`` uses);
- no logs, no stats: a connection costs what the data path costs.

Where it differs, because that is what HAProxy does (and what a user would get):
- one TLS connection to the other node per client connection: in ``mode tcp`` HAProxy cannot
  multiplex client connections over one backend connection, where the mesh pools HBONE
  connections and carries many streams on each;
- TLS session resumption between the two HAProxies is on (HAProxy's default: the backend keeps
  the last session, the frontend issues tickets), so all but the first handshake are PSK
  handshakes; the mesh needs no resumption because it rarely handshakes. ``resumption=False``
  makes every handshake a full one;
- HAProxy checks that the peer's chain leads to the throwaway root, which signs nothing but the
  two node certificates; it does not read the SPIFFE id as the mesh does (HAProxy 2.6 has no
  URI SAN check), so here the chain check is the identity check;
- a half-close is not safe through it: now and then the server got only part of what the
  client sent before its FIN (HAProxy 2.6.12, about 3% of 8-stream bulk runs), so the load
  generator never half-closes (``loadgen.echo``).

Files (configs, keys, logs) live in a private directory under the sim's run directory, so
``nodemesh sim down`` removes them even if the runner dies; it also ends the HAProxy processes,
which live in the sim's node namespaces.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import resource
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from nodemesh.controller.ca.authority import Authority, create_root
from nodemesh.errors import UserError
from nodemesh.identity import key_pem, new_key
from nodemesh.netns import Netns
from nodemesh.tools.sim.names import SimNames
from nodemesh.tools.sim.process import terminate
from nodemesh.tools.sim.state import load

HAPROXY = "haproxy"
# Connections each HAProxy may hold: 10,000 open at once with room to spare, when the host
# lets a process have the file descriptors (two per connection, and a few of HAProxy's own).
MAXCONN = 20_000
FD_RESERVE = 64
CERT_LIFETIME = dt.timedelta(days=1)
START_TIMEOUT = 5.0
TCP_LISTEN = "0A"  # the state column of /proc/net/tcp


class HaproxyError(UserError):
    """The reference could not be set up; the message says why and what to do."""


@dataclass(frozen=True)
class Hop:
    """One HAProxy: where it runs and listens, where it forwards, and how each side speaks TLS."""

    node: str
    netns: str  # path of the node's namespace file
    listen: tuple[str, int]
    upstream: tuple[str, int]
    bind_options: str = ""  # after the bind address: TLS on the listening side
    server_options: str = ""  # after the server address: TLS towards the upstream


def maxconn() -> int:
    """``MAXCONN``, or fewer when the file descriptor limit is lower.

    HAProxy raises its soft limit to what ``maxconn`` needs and refuses to start when the hard
    limit is in the way; a host without CAP_SYS_RESOURCE (a container) cannot raise that, so the
    reference takes what there is rather than fail. With a hard limit of 20,000 that is 9,968.
    """
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        return MAXCONN
    return min(MAXCONN, (hard - FD_RESERVE) // 2)


def render_config(hop: Hop, threads: int, connections: int) -> str:
    """The HAProxy configuration of one hop: one TCP frontend, one backend with one server."""
    return f"""\
global
    nbthread {threads}
    maxconn {connections}
    ssl-default-bind-options ssl-min-ver TLSv1.3
    ssl-default-server-options ssl-min-ver TLSv1.3

defaults
    mode tcp
    maxconn {connections}
    timeout connect 5s
    # long enough that no benchmark's kept or idle connection is ever cut
    timeout client 1h
    timeout server 1h

frontend in
    bind {hop.listen[0]}:{hop.listen[1]}{hop.bind_options}
    default_backend out

backend out
    server next {hop.upstream[0]}:{hop.upstream[1]}{hop.server_options}
"""


def write_pki(directory: Path, nodes: list[str]) -> None:
    """A throwaway root (``ca.pem``) and, per node, its certificate chain and key (``<node>.pem``)."""
    root_key = new_key()
    root = create_root(root_key)
    authority = Authority(cert=root, key=root_key, intermediates=(), roots=(root,))
    (directory / "ca.pem").write_bytes(authority.bundle_pem)
    for node in nodes:
        key = new_key()
        issued = authority.issue_workload(key.public_key(), f"spiffe://cluster.local/node/{node}",
                                          CERT_LIFETIME)
        path = directory / f"{node}.pem"
        path.touch(mode=0o600)
        path.write_bytes(issued.chain_pem + key_pem(key))


class HaproxyTunnel:
    """HAProxy on ``client_node`` (plain TCP in) and ``server_node`` (mutual TLS in, plain out).

    The client pod dials ``client_target``; ``pids`` are the two HAProxy processes once started,
    for the runner's CPU and memory readings. ``threads`` is each HAProxy's ``nbthread``;
    ``resumption=False`` makes every TLS handshake between the nodes a full one. Use as a
    context manager, or call ``start`` and always ``stop``.
    """

    def __init__(self, sim: str, client_node: str, server_node: str, server_addr: tuple[str, int],
                 listen_port: int = 18080, tunnel_port: int = 18443, threads: int = 1,
                 resumption: bool = True) -> None:
        self.names = SimNames(sim)
        self.client_node, self.server_node = client_node, server_node
        self.server_addr = server_addr
        self.listen_port, self.tunnel_port = listen_port, tunnel_port
        self.threads = threads
        self.resumption = resumption
        self.directory: Path | None = None
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def client_target(self) -> str:
        """What the client pod dials: ``<client node IP>:<listen port>``."""
        return f"{self._node_ip(self.client_node)}:{self.listen_port}"

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def _node_ip(self, node: str) -> str:
        nodes = load(self.names).nodes
        if node not in nodes:
            raise HaproxyError(f"sim {self.names.sim!r} has no node {node!r} "
                               f"(nodes: {', '.join(sorted(nodes))})")
        return nodes[node]["ip"]

    def _hops(self, directory: Path) -> list[Hop]:
        """The two hops, server side first (the order they start in), with their TLS settings."""
        d = directory
        tunnel = (self._node_ip(self.server_node), self.tunnel_port)
        bind_tls = f" ssl crt {d / self.server_node}.pem ca-file {d}/ca.pem verify required"
        server_tls = f" ssl crt {d / self.client_node}.pem ca-file {d}/ca.pem verify required"
        if not self.resumption:
            bind_tls += " no-tls-tickets"
            server_tls += " no-ssl-reuse"
        listen = (self._node_ip(self.client_node), self.listen_port)
        return [Hop(self.server_node, self._netns(self.server_node), tunnel, self.server_addr,
                    bind_options=bind_tls),
                Hop(self.client_node, self._netns(self.client_node), listen, tunnel,
                    server_options=server_tls)]

    def _netns(self, node: str) -> str:
        return self.names.netns_path(self.names.node_netns(node))

    def start(self) -> None:
        """Start both HAProxies and return once both frontends listen."""
        if shutil.which(HAPROXY) is None:
            raise HaproxyError("haproxy is not installed: run scripts/setup.sh (Debian package haproxy)")
        try:
            self.directory = Path(tempfile.mkdtemp(prefix="reference-", dir=self.names.run_dir))
            write_pki(self.directory, [self.client_node, self.server_node])
            for hop in self._hops(self.directory):
                self._start_hop(hop)
        except BaseException:
            self.stop()
            raise

    def _start_hop(self, hop: Hop) -> None:
        assert self.directory is not None
        config = self.directory / f"{hop.node}.cfg"
        config.write_text(render_config(hop, self.threads, maxconn()))
        log = self.directory / f"{hop.node}.log"
        with open(log, "wb") as out, Netns(hop.netns) as netns:
            process = subprocess.Popen([HAPROXY, "-db", "-f", str(config)], stdin=subprocess.DEVNULL,
                                       stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                       cwd="/", preexec_fn=netns.enter_for_good)
            self.processes.append(process)
        _wait_listening(hop.listen, process, log)

    def stop(self) -> None:
        """End the HAProxies and remove the directory; safe to call at any time, twice."""
        terminate(self.pids)
        for process in self.processes:
            process.wait()  # reap: terminate has seen them go
        self.processes = []
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def __enter__(self) -> "HaproxyTunnel":
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _wait_listening(address: tuple[str, int], process: subprocess.Popen[bytes], log: Path) -> None:
    """Return once ``process`` listens on ``address``; fail with HAProxy's own words if it does not.

    A listening socket accepts (the kernel completes handshakes into its backlog). It is read off
    the process's view of its namespace's TCP table rather than probed with a connection: a
    connection to the client-side frontend would make a TLS connection to the other node, whose
    session the next connection would then resume, and would reach the server pod.
    """
    ip, port = address
    wanted = f"{int(ipaddress.IPv4Address(ip)).to_bytes(4, 'little').hex().upper()}:{port:04X}"
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            raise HaproxyError(f"haproxy for {ip}:{port} exited with status {process.returncode}:\n"
                               f"{log.read_text(errors='replace').strip()}")
        try:
            table = Path(f"/proc/{process.pid}/net/tcp").read_text().splitlines()[1:]
        except OSError:
            table = []  # it is on its way out: the next poll says how
        if any(f[1] == wanted and f[3] == TCP_LISTEN for f in (line.split() for line in table)):
            return
        if time.monotonic() > deadline:
            raise HaproxyError(f"haproxy did not listen on {ip}:{port} within {START_TIMEOUT:g} s:\n"
                               f"{log.read_text(errors='replace').strip()}")
        time.sleep(0.01)
