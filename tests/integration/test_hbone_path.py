"""The agent's data path with HBONE, for real: two agents' proxies, pods in network namespaces.

The namespaces and links are the simulated cluster's (``nodemesh.tools.sim.topology``): pods on
node-a and node-b, routed through their nodes and the bridge, so tunnels cross a real link.
The two proxies run in this process as each node's agent runs its own (enroller, listeners in
the pods' namespaces, tunnel pool); apps listen inside their pods. A client in a pod dials its
pod's 15001 listener; the steering programs' original-destination lookup is the one thing
replaced, by a table the test fills (the e2e tests cover the programs).
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from dataclasses import replace
from typing import Awaitable, Callable, Iterator

import pytest
import uvloop

from eventually import eventually, eventually_async  # tests/: the one wait for a condition
from hbone_pki import Identities, TestCa, spiffe  # tests/: the test CA, shared with unit tests
from wire import Capture  # tests/: the capture on the simulated bridge

from nodemesh.agent.inpod.discovery import PathTemplate  # noqa: E402
from nodemesh.agent.inpod.enroller import Enroller  # noqa: E402
from nodemesh.agent.ports import HBONE_PORT, OUTBOUND_PORT, PLAINTEXT_PORT  # noqa: E402
from nodemesh.agent.proxy.node import NodeProxy  # noqa: E402
from nodemesh.agent.state.store import View  # noqa: E402
from nodemesh.agent.proxy.conntrack import Connection  # noqa: E402
from nodemesh.authz.policy import ALLOW, DENY, AuthorizationPolicy, Rule, Source  # noqa: E402
from nodemesh.model import MeshModel, Node, OutlierDetection, Service, ServicePort, TrafficPolicy, Workload  # noqa: E402
from nodemesh.netns import Netns  # noqa: E402
from nodemesh.tools.sim.names import SimNames  # noqa: E402
from nodemesh.tools.sim.plan import ClusterPlan, NodePlan, PodPlan  # noqa: E402

pytestmark = pytest.mark.kernel

NAMES = SimNames("hbonepath")
APP_PORT = 8080
NODES = (NodePlan("node-a", "172.30.0.1", "10.10.1.0/24"), NodePlan("node-b", "172.30.0.2", "10.10.2.0/24"))


def workload(uid: str, ns: str, name: str, node: str, ip: str, meshed: bool = True) -> Workload:
    return Workload(uid=uid, name=name, namespace=ns, service_account=name, node=node, ip=ip, meshed=meshed,
                    identity=spiffe(ns, name))


CLIENT = workload("c", "shop", "client", "node-a", "10.10.1.10")
LOCAL = workload("l", "shop", "local", "node-a", "10.10.1.11")
CATALOG = workload("s", "shop", "catalog", "node-b", "10.10.2.10")
LEGACY = workload("x", "legacy", "app", "node-b", "10.10.2.11", meshed=False)
WORKLOADS = [CLIENT, LOCAL, CATALOG, LEGACY]


@pytest.fixture(scope="module", autouse=True)
def topology(kernel_prerequisites: None) -> Iterator[None]:
    from nodemesh.tools.sim import topology
    from nodemesh.tools.sim.cleanup import down, leftovers

    plan = ClusterPlan(nodes=NODES, pods=tuple(PodPlan(w.namespace, w.name, w.node, w.ip, w.meshed)
                                               for w in WORKLOADS))
    down(NAMES)
    try:
        topology.build(plan, NAMES)
        yield
    finally:
        down(NAMES)
    assert leftovers(NAMES) == []


def pod_netns(w: Workload) -> Netns:
    return Netns(NAMES.netns_path(NAMES.pod_netns(w.namespace, w.name)))


class PodMap:
    """The programs' pod map, as the enroller fills it."""

    def __init__(self) -> None:
        self.enrolled: dict[int, str] = {}

    def enroll(self, netns_cookie: int, listener_ip: str, listener_port: int) -> None:
        self.enrolled[netns_cookie] = listener_ip

    def unenroll(self, netns_cookie: int) -> None:
        self.enrolled.pop(netns_cookie, None)


class Agent:
    def __init__(self, node: str, cluster: "Cluster") -> None:
        self.node = node
        self.proxy = NodeProxy(lambda: cluster.view, cluster.original_dst, cluster.identities,
                               connect_timeout=2.0)
        self.pool = self.proxy.core.pool
        self.enroller = Enroller(node, PathTemplate(NAMES.pod_netns_template), PodMap(), self.proxy)

    def totals(self) -> dict[tuple[str, str], int]:
        return dict(self.proxy.core.table.totals)

    async def counted(self, direction: str, outcome: str, count: int = 1) -> None:
        """Wait until this agent has accounted ``count`` ended connections as ``outcome``: the
        client may see its connection end before the agents have recorded how."""
        def check() -> None:
            totals = self.totals()
            assert totals.get((direction, outcome)) == count, totals

        await eventually_async(check, what=f"{self.node} to count {count} {direction} {outcome}")


class Cluster:
    def __init__(self, workloads: list[Workload]) -> None:
        self.ca = TestCa()
        self.identities = Identities(self.ca, {w.uid: w.identity for w in workloads if w.meshed})
        model = MeshModel(workloads={w.uid: w for w in workloads}, services={},
                          nodes={n.name: Node(n.name, n.ip, n.pod_cidr) for n in NODES})
        self.view: View | None = View.build(1, model, self.ca.bundle)
        self.destinations: dict[tuple[str, int], tuple[str, int]] = {}  # client address -> original dst
        self.a = Agent("node-a", self)
        self.b = Agent("node-b", self)
        self.apps: list[asyncio.AbstractServer] = []

    def enforce(self, *policies: AuthorizationPolicy) -> None:
        """A new view with these policies, applied as the agent applies one (then re-checks)."""
        assert self.view is not None
        model = self.view.model
        self.view = View.build(self.view.version + 1, MeshModel(model.workloads, model.services, model.nodes,
                                                                {p.key: p for p in policies}), self.ca.bundle)
        for agent in (self.a, self.b):
            agent.proxy.recheck()

    def original_dst(self, peer: tuple[str, int], local: tuple[str, int]) -> tuple[str, int] | None:
        return self.destinations.get((peer[0], peer[1]))

    async def start(self) -> None:
        for agent in (self.a, self.b):
            await agent.enroller.reconcile(self.view)  # type: ignore[arg-type]
            assert agent.enroller.pending == {}, agent.enroller.pending

    async def app(self, w: Workload, handler: Callable | None = None, port: int = APP_PORT) -> None:
        """A server inside the pod: an echo unless ``handler`` says otherwise."""
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.close()

        with pod_netns(w) as ns:
            sock = ns.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((w.ip, port))
        self.apps.append(await asyncio.start_server(handler or echo, sock=sock))

    def services(self, *services: Service) -> None:
        """A new view with these services (VIPs need no address of their own: only steered to)."""
        assert self.view is not None
        model = replace(self.view.model, services={s.key: s for s in services})
        self.view = View.build(self.view.version + 1, model, self.ca.bundle)

    async def connect(self, destination: Workload | str, source: Workload = CLIENT, port: int = APP_PORT
                      ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection from inside ``source`` to ``destination`` (a pod, or an address such as a
        service VIP), as if steered into 15001."""
        with pod_netns(source) as ns:
            sock = ns.socket()
        sock.bind((source.ip, 0))
        self.destinations[sock.getsockname()] = (destination if isinstance(destination, str) else destination.ip, port)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (source.ip, 15001))
        return await asyncio.open_connection(sock=sock)

    async def echo(self, destination: Workload | str, payload: bytes = b"hello through the mesh") -> bytes:
        reader, writer = await self.connect(destination)
        writer.write(payload)
        writer.write_eof()
        got = await reader.read()
        writer.close()
        return got

    def close(self) -> None:
        for agent in (self.a, self.b):
            agent.enroller.close()
            agent.proxy.close()
        for app in self.apps:
            app.close()


def run(test: Callable[[Cluster], Awaitable[None]]) -> None:
    async def main() -> None:
        cluster = Cluster(WORKLOADS)
        try:
            await cluster.start()
            await test(cluster)
        finally:
            cluster.close()
            # not a condition: closed transports let go of their sockets on later loop passes, and
            # nothing says when all have; they must before the loop ends and the namespaces go
            await asyncio.sleep(0.05)

    uvloop.run(asyncio.wait_for(main(), 60))


def test_cross_node_traffic_is_mutual_tls_and_both_agents_know_who() -> None:
    async def test(c: Cluster) -> None:
        await c.app(CATALOG)
        payload = os.urandom(3 << 20)
        assert await c.echo(CATALOG, payload) == payload
        await c.a.counted("outbound", "ok")
        await c.b.counted("inbound", "ok")
        [out] = [x for x in c.a.proxy.core.table.by_destination.items()]
        assert out == (("outbound", "shop/catalog"), 1)
        assert c.a.proxy.core.table.bytes["outbound_from_downstream"] == len(payload)
        assert c.b.proxy.core.table.bytes["inbound_from_upstream"] == len(payload)
        tunnels = c.a.pool.snapshot()["tunnels"]
        assert len(tunnels) == 1
        t = tunnels[0]
        assert (t["direction"], t["peer_node"], t["source_identity"], t["destination_identity"]) == (
            "outbound", "node-b", CLIENT.identity, CATALOG.identity)
        assert t["tls_version"] == "TLSv1.3" and t["cipher"] and t["streams_total"] == 1
        assert t["bytes_sent"] > len(payload)
        [inbound] = c.b.proxy.tunnels()["tunnels"]
        assert (inbound["direction"], inbound["peer_node"], inbound["source_identity"]) == (
            "inbound", "node-a", CLIENT.identity)

    run(test)


def test_connections_in_flight_name_identities_on_both_sides() -> None:
    async def test(c: Cluster) -> None:
        await c.app(CATALOG)
        reader, writer = await c.connect(CATALOG)
        writer.write(b"x")
        assert await reader.readexactly(1) == b"x"
        [out] = c.a.proxy.core.table.snapshot()["in_flight"]
        [inn] = c.b.proxy.core.table.snapshot()["in_flight"]
        assert (out["via"], out["connection_security_policy"], out["source_identity"],
                out["destination_identity"]) == ("hbone", "mutual_tls", CLIENT.identity, CATALOG.identity)
        assert (inn["via"], inn["connection_security_policy"], inn["source"], inn["source_identity"],
                inn["destination_identity"]) == ("hbone", "mutual_tls", "shop/client", CLIENT.identity,
                                                 CATALOG.identity)
        writer.close()

    run(test)


def test_two_hundred_sequential_connections_share_one_tls_connection() -> None:
    async def test(c: Cluster) -> None:
        await c.app(CATALOG)
        for i in range(200):
            assert await c.echo(CATALOG, b"%d" % i) == b"%d" % i
        await c.b.counted("inbound", "ok", 200)
        assert c.a.pool.handshakes == 1

        def all_streams_ended() -> None:
            [t] = c.a.pool.snapshot()["tunnels"]
            assert (t["streams_total"], t["streams_open"]) == (200, 0), t

        await eventually_async(all_streams_ended)

    run(test)


def test_concurrent_connections_stay_within_the_pool_bounds() -> None:
    async def test(c: Cluster) -> None:
        await c.app(CATALOG)
        c.a.pool.max_streams = 10
        c.a.pool.max_per_key = 2  # 30 at once: 20 go, 10 wait for a slot
        got = await asyncio.gather(*(c.echo(CATALOG, b"%d" % i) for i in range(30)))
        assert got == [b"%d" % i for i in range(30)]
        assert c.a.pool.handshakes == 2

    run(test)


BURST = 300  # connects at once: three times asyncio's default listen backlog (100)


def accept_queue(listener: socket.socket) -> int:
    """How many connections wait in a listening socket's accept queue (TCP_INFO's tcpi_unacked,
    which is what a listener reports there)."""
    info = listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 32)
    return struct.unpack_from("=I", info, 24)[0]


def test_a_burst_of_connects_waits_in_each_pod_listeners_queue() -> None:
    """A pod's connects all at once while the agent is busy: the kernel must queue every one.

    Past the listen backlog it drops the SYN (the client retries a second later, all of them in
    the same instant), and when that retried wave overflows the SYN queue too, it answers with
    SYN cookies whose last ACK meets a full accept queue: those clients believe they are
    connected and the agent never hears of them (252 connects from one pod lost about 40 so).
    """
    async def test(c: Cluster) -> None:
        listeners = {s.getsockname()[1]: s for server in c.a.enroller.enrolled[CLIENT.uid].listeners.servers
                     for s in server.sockets}
        for port in (OUTBOUND_PORT, HBONE_PORT, PLAINTEXT_PORT):
            with pod_netns(CLIENT) as ns:
                clients = [ns.socket() for _ in range(BURST)]
            listener = listeners[port]

            def all_queued() -> None:
                assert accept_queue(listener) == BURST

            try:
                for client in clients:
                    client.setblocking(False)
                    client.connect_ex((CLIENT.ip, port))
                # a blocking wait: the agent's loop does not run, so it accepts none meanwhile.
                # Handshakes on one host take microseconds; a dropped SYN is retried after 1 s.
                eventually(all_queued, timeout=0.5, what=f"the {BURST} connects to {port} to be queued")
            finally:
                for client in clients:
                    client.close()

    run(test)


def test_same_node_traffic_skips_tls_but_keeps_identity_and_policy() -> None:
    async def test(c: Cluster) -> None:
        await c.app(LOCAL)
        c.enforce(AuthorizationPolicy("client-only", "shop", ALLOW, rules=(
            Rule((Source(principals=(CLIENT.identity.removeprefix("spiffe://"),)),)),)))
        reader, writer = await c.connect(LOCAL)
        writer.write(b"local")
        assert await reader.readexactly(5) == b"local"
        [conn] = c.a.proxy.core.table.snapshot()["in_flight"]
        assert (conn["via"], conn["connection_security_policy"], conn["source_identity"],
                conn["destination_identity"], conn["policy"]) == (
            "local", "mutual_tls", CLIENT.identity, LOCAL.identity, "shop/client-only")
        writer.close()
        assert c.a.proxy.core.authorizer.decisions() == {("shop/client-only", ALLOW, "allowed"): 1}
        assert c.a.pool.handshakes == 0 and c.a.pool.snapshot()["tunnels"] == []

    run(test)


@pytest.mark.parametrize(("where", "whose"), [("remote", "source"), ("local", "source"), ("local", "destination")])
def test_without_a_valid_certificate_both_paths_fail_closed_alike(where: str, whose: str) -> None:
    """An identity the CA no longer vouches for (expired, never issued) serves on neither path.

    (A remote destination's expired certificate fails its agent's handshake: tests/e2e/test_rotation.py.)
    """
    async def test(c: Cluster) -> None:
        destination = CATALOG if where == "remote" else LOCAL
        await c.app(destination)
        assert await c.echo(destination, b"before") == b"before"
        c.identities.by_uid.pop((CLIENT if whose == "source" else destination).uid)
        await refused_fast(c, destination)
        await c.a.counted("outbound", "no_certificate")

    run(test)


def test_non_meshed_destinations_are_connected_directly() -> None:
    async def test(c: Cluster) -> None:
        await c.app(LEGACY)
        assert await c.echo(LEGACY) == b"hello through the mesh"
        await c.a.counted("outbound", "ok")  # once A has it, B would have it too had it gone through B
        assert c.a.pool.handshakes == 0 and c.b.totals().get(("inbound", "ok")) is None

    run(test)


async def refused_fast(c: Cluster, destination: Workload) -> None:
    """The client learns at once (a reset), not after a timeout."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    reader, writer = await c.connect(destination)
    with pytest.raises(ConnectionResetError):
        await reader.read()
    writer.close()
    assert loop.time() - start < 1.0


DENY_CLIENT = AuthorizationPolicy("deny-client", "shop", DENY, rules=(
    Rule((Source(principals=(CLIENT.identity.removeprefix("spiffe://"),)),)),))


@pytest.mark.parametrize("where", ["remote", "local"])
def test_denied_by_policy_is_401_and_a_reset(where: str) -> None:
    async def test(c: Cluster) -> None:
        destination, agent = (CATALOG, c.b) if where == "remote" else (LOCAL, c.a)
        await c.app(destination)
        c.enforce(DENY_CLIENT)
        await refused_fast(c, destination)
        await c.a.counted("outbound", "upstream_401" if where == "remote" else "denied")
        assert c.b.totals().get(("inbound", "denied")) == (1 if where == "remote" else None)  # B said 401 first
        assert agent.proxy.core.authorizer.decisions() == {("shop/deny-client", DENY, "denied"): 1}

    run(test)


def test_a_policy_change_resets_open_connections_on_both_paths_and_spares_the_rest() -> None:
    async def test(c: Cluster) -> None:
        await c.app(CATALOG)
        await c.app(LOCAL)
        await c.app(LEGACY)
        held = {}
        for destination in (CATALOG, LOCAL, LEGACY):
            reader, writer = await c.connect(destination)
            writer.write(b"up")
            assert await reader.readexactly(2) == b"up"
            held[destination.ref] = reader, writer
        loop = asyncio.get_running_loop()
        start = loop.time()
        c.enforce(DENY_CLIENT)
        for ref in (CATALOG.ref, LOCAL.ref):
            reader, writer = held.pop(ref)
            with pytest.raises(ConnectionResetError):
                await reader.read()
            writer.close()
        assert loop.time() - start < 1.0
        reader, writer = held.pop(LEGACY.ref)  # not meshed: no agent decides it
        writer.write(b"still")
        assert await reader.readexactly(5) == b"still"
        writer.close()
        for agent in (c.a, c.b):
            assert agent.proxy.core.authorizer.late == {("shop/deny-client", DENY): 1}, agent.node

    run(test)


def test_an_app_that_does_not_listen_is_503_and_a_reset() -> None:
    async def test(c: Cluster) -> None:
        await refused_fast(c, CATALOG)
        await c.b.counted("inbound", "app_unavailable")
        await c.a.counted("outbound", "upstream_503")
        await refused_fast(c, CATALOG)  # again: the connection carrying the refusals stays up
        assert c.a.pool.handshakes == 1

    run(test)


def test_a_server_with_another_identity_is_refused() -> None:
    async def test(c: Cluster) -> None:
        await c.app(CATALOG)
        c.identities.by_uid[CATALOG.uid] = spiffe("shop", "impostor")  # what B presents from now on
        c.b.enroller.close()
        await c.b.enroller.reconcile(c.view)  # type: ignore[arg-type]
        await refused_fast(c, CATALOG)
        assert c.a.totals()[("outbound", "identity_mismatch")] == 1
        assert c.a.pool.failures == {"identity_mismatch": 1}
        assert c.b.totals().get(("inbound", "ok")) is None

    run(test)


def test_a_source_without_a_certificate_fails_closed() -> None:
    async def test(c: Cluster) -> None:
        await c.app(CATALOG)
        del c.identities.by_uid[CLIENT.uid]
        await refused_fast(c, CATALOG)
        assert c.a.totals()[("outbound", "no_certificate")] == 1

    run(test)


def test_a_broken_connection_resets_its_streams_and_the_next_one_gets_a_fresh_one() -> None:
    async def test(c: Cluster) -> None:
        await c.app(CATALOG)
        reader, writer = await c.connect(CATALOG)
        writer.write(b"before")
        assert await reader.readexactly(6) == b"before"
        [tunnel] = c.b.proxy.core.server_tunnels
        tunnel.transport.abort()  # type: ignore[union-attr]
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(), 2)
        writer.close()
        assert await c.echo(CATALOG, b"after") == b"after"
        assert c.a.pool.handshakes == 2

    run(test)


def test_a_renewed_certificate_is_used_by_new_connections_only() -> None:
    async def test(c: Cluster) -> None:
        await c.app(CATALOG)
        reader, writer = await c.connect(CATALOG)
        writer.write(b"old")
        assert await reader.readexactly(3) == b"old"
        c.identities.renew(CLIENT.uid)
        assert await c.echo(CATALOG, b"new") == b"new"
        assert c.a.pool.handshakes == 2  # the renewed certificate got its own connection
        writer.write(b"still")  # and the long-lived one kept working
        assert await reader.readexactly(5) == b"still"
        writer.close()

    run(test)


def test_idle_connections_are_closed() -> None:
    async def test(c: Cluster) -> None:
        await c.app(CATALOG)
        c.a.pool.idle_timeout = 0.2
        assert await c.echo(CATALOG) == b"hello through the mesh"
        await eventually_async(lambda: not c.a.proxy.tunnels()["tunnels"] and not c.b.proxy.tunnels()["tunnels"],
                               timeout=3, what="both ends to close the idle connection")

    run(test)


def test_on_the_wire_cross_node_traffic_is_tls13_and_no_payload_shows() -> None:
    marker = b"NODEMESH-SECRET-MARKER-"

    async def test(c: Cluster) -> None:
        await c.app(CATALOG)
        await c.app(LEGACY)
        capture = Capture(NAMES, "node-b")
        try:
            for _ in range(5):
                assert await c.echo(CATALOG, marker * 100) == marker * 100
                assert await c.echo(LEGACY, marker * 100) == marker * 100  # the control: not meshed
                capture.drain()
        finally:
            capture.close()
        tunnel, plain = capture.payload(15008), capture.payload(APP_PORT)
        assert marker in plain, "the capture did not see the plaintext control traffic"
        assert len(tunnel) > 5 * 2 * len(marker * 100), "the capture did not see the tunnel"
        assert marker not in tunnel
        assert tunnel.startswith(b"\x16\x03")  # a TLS handshake record opens the connection...
        assert b"\x17\x03\x03" in tunnel  # ...then application data records
        [t] = c.a.pool.snapshot()["tunnels"]
        assert t["tls_version"] == "TLSv1.3"

    run(test)


def test_each_side_exports_its_span_of_one_trace_to_a_real_otlp_receiver() -> None:
    """The source's span id goes in the CONNECT's traceparent; the destination's span is its child."""
    from otlp import Receiver  # tests/: a real OTLP/gRPC receiver

    from nodemesh.agent.telemetry.spans import Tracer
    from nodemesh.agent.telemetry.tracing import SpanExporter

    with Receiver() as receiver:
        async def test(c: Cluster) -> None:
            exporters = []
            for agent in (c.a, c.b):
                exporter = SpanExporter(receiver.endpoint, agent.node)
                exporters.append(exporter)
                agent.proxy.core.table.observers.append(Tracer(exporter))
                agent.proxy.core.tracing = True
            await c.app(CATALOG)
            await c.app(LOCAL)
            assert await c.echo(CATALOG) == b"hello through the mesh"
            assert await c.echo(LOCAL) == b"hello through the mesh"
            await c.a.counted("outbound", "ok", 2)
            await c.b.counted("inbound", "ok")
            for exporter in exporters:
                exporter.close()

        run(test)
        spans = receiver.wait_for_spans(4)
    by_trace: dict[bytes, list] = {}
    for s in spans:
        by_trace.setdefault(s.span.trace_id, []).append(s)
    assert len(by_trace) == 2 and all(len(pair) == 2 for pair in by_trace.values()), spans
    for pair in by_trace.values():
        source = next(s for s in pair if s.span.parent_span_id == b"")
        destination = next(s for s in pair if s.span.parent_span_id == source.span.span_id)
        assert (source.span.kind, destination.span.kind) == (3, 2)  # CLIENT, SERVER
        assert source.resource["k8s.node.name"] == "node-a"
    cross = next(pair for pair in by_trace.values() if any(s.resource["k8s.node.name"] == "node-b" for s in pair))
    destination = next(s for s in cross if s.resource["k8s.node.name"] == "node-b")
    assert (destination.attributes["source.principal"], destination.attributes["destination.workload"],
            destination.attributes["nodemesh.via"]) == (CLIENT.identity, "shop/catalog", "hbone")


# -- a service's traffic policy on the real path (agent/proxy/balance; docs/traffic.md) ----------
VIP = "10.96.0.10"


def catalog_service(*endpoints: Workload, **traffic: object) -> Service:
    return Service("catalog", "shop", VIP, (ServicePort("tcp", APP_PORT, APP_PORT),),
                   tuple(w.uid for w in endpoints), TrafficPolicy(**traffic))  # type: ignore[arg-type]


@pytest.mark.parametrize("dead", ["remote", "local"])
def test_retries_hide_a_dead_endpoint_from_the_client(dead: str) -> None:
    """Round robin over a dead endpoint and a live one (no outlier detection, so the dead one
    keeps being tried): every connect to the dead one fails before any byte was sent (503 from
    its agent, or the same-node connect), so the agent tries the other; the client sees only
    successes, and each connection shows its failed attempt."""
    async def test(c: Cluster) -> None:
        dead_pod, live = (CATALOG, LOCAL) if dead == "remote" else (LOCAL, CATALOG)
        await c.app(live)  # nothing listens in the dead one
        c.services(catalog_service(CATALOG, LOCAL, connect_retries=1,
                                   outlier_detection=OutlierDetection(consecutive_failures=0)))
        ended: list[Connection] = []
        c.a.proxy.core.table.observers.append(ended.append)
        for i in range(10):
            assert await c.echo(VIP, b"%d" % i) == b"%d" % i
        await c.a.counted("outbound", "ok", 10)
        assert c.a.proxy.core.table.by_destination == {("outbound", live.ref): 10}
        outcome = "upstream_503" if dead == "remote" else "app_unavailable"
        assert {conn.as_dict()["chosen_by"] for conn in ended} == {"round_robin"}
        attempts = [conn.as_dict().get("attempts", []) for conn in ended]
        assert max(map(len, attempts)) == 1  # one failed attempt at most: the dead one, then the live one
        assert {(a["endpoint"], a["outcome"]) for tried in attempts for a in tried} == {(dead_pod.ref, outcome)}

    run(test)


def test_a_connect_is_never_retried_once_bytes_were_sent() -> None:
    """The first endpoint accepts, reads the client's bytes, then resets: the client sees the reset,
    and the other endpoint never hears of the connection."""
    async def test(c: Cluster) -> None:
        accepted: list[str] = []

        async def reset_after_reading(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readexactly(5)
            writer.transport.abort()

        async def counting(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.append("local")
            writer.close()

        await c.app(CATALOG, reset_after_reading)
        await c.app(LOCAL, counting)
        c.services(catalog_service(CATALOG, LOCAL, connect_retries=3))  # round robin: CATALOG first
        reader, writer = await c.connect(VIP)
        writer.write(b"bytes")
        with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
            await asyncio.wait_for(reader.readexactly(1), 5)
        writer.close()
        await c.a.counted("outbound", "ok")  # it was relayed: one attempt, then the failure was the app's
        assert accepted == []
        assert c.a.proxy.core.table.by_destination == {("outbound", CATALOG.ref): 1}

    run(test)


def test_every_endpoint_dead_is_retries_exhausted() -> None:
    async def test(c: Cluster) -> None:
        c.services(catalog_service(CATALOG, LOCAL, connect_retries=1))
        ended: list[Connection] = []
        c.a.proxy.core.table.observers.append(ended.append)
        await refused_fast(c, VIP)
        await c.a.counted("outbound", "retries_exhausted")
        [conn] = ended
        assert [a[2] for a in conn.lease.attempts] == ["upstream_503", "app_unavailable"]  # type: ignore[union-attr]

    run(test)


def test_an_idle_connection_is_closed_by_the_agent_with_its_reason() -> None:
    async def test(c: Cluster) -> None:
        await c.app(CATALOG)
        c.services(catalog_service(CATALOG, idle_timeout=0.3))
        ended: list[Connection] = []
        c.a.proxy.core.table.observers.append(ended.append)
        loop = asyncio.get_running_loop()
        reader, writer = await c.connect(VIP)
        writer.write(b"x")
        assert await reader.readexactly(1) == b"x"
        start = loop.time()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed: EOF, not a reset
        assert 0.3 <= loop.time() - start < 0.3 + 0.2  # the timeout, plus at most one sweep (0.075 s) and slack
        writer.close()
        await eventually_async(lambda: len(ended) == 1)
        assert (ended[0].outcome, ended[0].closed_by) == ("ok", "idle_timeout")

    run(test)
