"""The agent's node metrics (``agent/telemetry/node.py``) read from real parts, scraped and parsed.

Two nodes' agents run in this process, as in tests/integration/test_hbone_path.py, but their
pods live on loopback instead of in network namespaces (``LoopbackPod``: each pod a 127.x
address, its listeners on ports the kernel picks), so no privileges are needed. Everything
else is the agent's own: proxies, tunnel pools, HBONE listeners, certificate managers with
certificates from a test CA, real TLS handshakes. The BPF maps are the kernel test's
(tests/integration/test_node_metrics_bpf.py); the config client is a real one never started,
its counting is tested against a real controller (tests/unit/test_ca_grpc.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import time
from typing import Awaitable, Callable

import pytest
import uvloop
from eventually import eventually_async
from hbone_pki import LIFETIME, TestCa, spiffe
from node_metrics import Scrape, idle_config

from nodemesh.agent.identity.manager import CertManager, Sign
from nodemesh.agent.inpod.discovery import PathTemplate
from nodemesh.agent.inpod.enroller import Enroller
from nodemesh.agent.ports import HBONE_PORT
from nodemesh.agent.proxy.hbone.client import TunnelError
from nodemesh.agent.proxy.hbone.stream import StreamTransport
from nodemesh.agent.proxy.node import NodeProxy, PodListeners
from nodemesh.agent.state.store import View
from nodemesh.agent.telemetry.looplag import LoopLag
from nodemesh.agent.telemetry.node import FAMILIES, NodeCollector, NodeParts
from nodemesh.model import MeshModel, Node, OutlierDetection, Service, ServicePort, TrafficPolicy, Workload

APP_PORT = 8080
CONNECT_TIMEOUT = 2.0
CLOSED = 1  # a port nothing listens on: where a pod's connect goes when the address has no listener


def workload(uid: str, name: str, node: str, ip: str, identity: str = "") -> Workload:
    return Workload(uid=uid, name=name, namespace="shop", service_account=name, node=node, ip=ip, meshed=True,
                    identity=identity or spiffe("shop", name))


CLIENT = workload("c", "client", "node-a", "127.0.10.1")
CATALOG = workload("s", "catalog", "node-b", "127.0.20.1")


class LoopbackNet:
    """Where the pods' ports really are: (pod IP, port) -> the port the kernel gave on that IP."""

    def __init__(self) -> None:
        self.ports: dict[tuple[str, int], int] = {}
        self.servers: list[asyncio.AbstractServer] = []
        self.sockets: list[socket.socket] = []

    async def app(self, w: Workload, port: int = APP_PORT) -> None:
        """An app in the pod that keeps each connection open, reading, until the other end closes."""
        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()
            writer.close()

        server = await asyncio.start_server(hold, w.ip, 0)
        self.ports[(w.ip, port)] = server.sockets[0].getsockname()[1]
        self.servers.append(server)

    def silent(self, ip: str, port: int) -> None:
        """A listener that never accepts: the kernel completes TCP connects, nobody answers."""
        sock = socket.socket()
        self.sockets.append(sock)
        sock.bind((ip, 0))
        sock.listen(8)
        self.ports[(ip, port)] = sock.getsockname()[1]

    def close(self) -> None:
        for server in self.servers:
            server.close()
        for sock in self.sockets:
            sock.close()


class LoopbackPod:
    """A pod as the proxy uses one (``PodNetns``'s listener and connect), on its loopback address:
    connections leave from the pod's IP, so the other end knows who calls."""

    def __init__(self, w: Workload, net: LoopbackNet) -> None:
        self.workload = w
        self.net = net
        self.cookie = 0

    def listener(self, port: int) -> socket.socket:
        sock = socket.socket()
        sock.bind((self.workload.ip, 0))
        sock.listen(64)
        sock.setblocking(False)
        self.net.ports[(self.workload.ip, port)] = sock.getsockname()[1]
        return sock

    async def connect(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = socket.socket()
        try:
            sock.setblocking(False)
            sock.bind((self.workload.ip, 0))
            async with asyncio.timeout(timeout):
                await asyncio.get_running_loop().sock_connect(sock, (host, self.net.ports.get((host, port), CLOSED)))
        except BaseException:
            sock.close()
            raise
        return sock


class NoMaps:
    """Steering and capture without the kernel: no maps."""

    def maps(self) -> dict[str, object]:
        return {}


class Agent:
    """One node's agent parts, wired as ``agent/main.py`` wires them, with the node collector."""

    def __init__(self, node: str, view: Callable[[], View | None], sign: Sign) -> None:
        self.certs = CertManager(sign)
        self.proxy = NodeProxy(view, lambda peer, local: None, self.certs, CONNECT_TIMEOUT)
        self.enroller = Enroller(node, PathTemplate("/nonexistent/{namespace}/{name}"), None, self.proxy)  # type: ignore[arg-type]
        self.config = idle_config(node)
        self.is_ready = False
        self.lag = LoopLag(interval=0.05)
        self.served: list[PodListeners] = []
        parts = NodeParts(self.proxy, self.certs, self.config, self.enroller, NoMaps(), NoMaps(),  # type: ignore[arg-type]
                          lambda: self.is_ready)
        self.collector = NodeCollector(parts, self.lag)

    def scrape(self) -> Scrape:
        return Scrape(self.collector)

    async def certify(self, workloads: list[Workload], bundle: bytes) -> None:
        self.certs.update(workloads, bundle)
        for w in workloads:
            assert await self.certs.wait_ready(w.uid, 5), self.certs.status()

    async def serve(self, w: Workload, net: LoopbackNet) -> None:
        self.served.append(await self.proxy.serve_pod(LoopbackPod(w, net)))  # type: ignore[arg-type]

    def close(self) -> None:
        self.lag.close()
        for listeners in self.served:
            listeners.close()
        self.proxy.close()
        self.certs.close()


class Cluster:
    """node-a runs the client pod, node-b the catalog; each knows both from the same view.

    ``target`` is the workload node-a dials, as its view says it is: by default the catalog
    that node-b serves. Unless ``b_certified``, node-b serves the catalog with no certificate.
    """

    def __init__(self, client: Workload = CLIENT, catalog: Workload = CATALOG, target: Workload | None = None,
                 b_ca: TestCa | None = None, b_sign: Sign | None = None, b_certified: bool = True) -> None:
        self.ca = TestCa()
        self.b_ca = b_ca or self.ca
        model = MeshModel(workloads={w.uid: w for w in (client, catalog)}, services={},
                          nodes={n: Node(n, "", "") for n in ("node-a", "node-b")})
        self.view = View.build(1, model, self.ca.bundle)
        self.net = LoopbackNet()
        self.client, self.catalog, self.target = client, catalog, target or catalog
        self.b_certified = b_certified
        self.a = Agent("node-a", lambda: self.view, self.ca.sign)
        self.b = Agent("node-b", lambda: self.view, b_sign or self.b_ca.sign)
        self.client_pod = LoopbackPod(client, self.net)

    async def start(self) -> None:
        await self.a.certify([self.client], self.ca.bundle)
        if self.b_certified:
            await self.b.certify([self.catalog], self.b_ca.bundle)
        else:
            self.b.certs.update([self.catalog], self.b_ca.bundle)  # an entry, never a certificate
        await self.b.serve(self.catalog, self.net)

    async def open(self) -> StreamTransport:
        """A CONNECT stream from the client pod to the target's app, through node-a's pool."""
        return await self.a.proxy.core.pool.open(self.client_pod, self.target, APP_PORT)  # type: ignore[arg-type]

    def close(self) -> None:
        self.a.close()
        self.b.close()
        self.net.close()


def run(test: Callable[[Cluster], Awaitable[None]], cluster: Callable[[], Cluster] = Cluster) -> None:
    async def main() -> None:
        c = cluster()
        try:
            await c.start()
            await test(c)
        finally:
            c.close()
            await asyncio.sleep(0.05)  # closed transports let go of their sockets on later passes

    uvloop.run(asyncio.wait_for(main(), 30))


def handshakes(scrape: Scrape, direction: str) -> dict[str, float]:
    return {labels["result"]: scrape.value("nodemesh_tls_handshakes_total", **labels)  # type: ignore[misc]
            for labels in scrape.labels("nodemesh_tls_handshakes_total") if labels["direction"] == direction}


def test_a_tunnel_shows_at_both_ends_with_its_streams_and_handshake() -> None:
    async def test(c: Cluster) -> None:
        await c.net.app(CATALOG)
        before = c.a.scrape()
        assert before.labels("nodemesh_tunnels") == [] and before.labels("nodemesh_tunnel_streams") == []
        assert handshakes(before, "outbound") == {"ok": 0}
        stream = await c.open()
        a, b = c.a.scrape(), c.b.scrape()
        assert a.value("nodemesh_tunnels", direction="outbound", peer_node="node-b") == 1
        assert a.value("nodemesh_tunnel_streams", direction="outbound", peer_node="node-b") == 1
        assert b.value("nodemesh_tunnels", direction="inbound", peer_node="node-a") == 1
        assert b.value("nodemesh_tunnel_streams", direction="inbound", peer_node="node-a") == 1
        assert handshakes(a, "outbound") == {"ok": 1}
        assert handshakes(b, "inbound") == {"ok": 1, "refused_identity": 0, "no_certificate": 0}
        for scrape, direction in ((a, "outbound"), (b, "inbound")):
            assert scrape.value("nodemesh_tls_handshake_duration_seconds_count", direction=direction) == 1
            took = scrape.value("nodemesh_tls_handshake_duration_seconds_sum", direction=direction)
            assert took is not None and 0 < took < CONNECT_TIMEOUT

        stream.close()

        def streams_gone() -> None:
            a, b = c.a.scrape(), c.b.scrape()
            assert a.value("nodemesh_tunnel_streams", direction="outbound", peer_node="node-b") == 0
            assert b.value("nodemesh_tunnel_streams", direction="inbound", peer_node="node-a") == 0

        await eventually_async(streams_gone)
        await c.open()  # the pooled connection: no second handshake
        assert handshakes(c.a.scrape(), "outbound") == {"ok": 1}

    run(test)


def test_an_inbound_tunnel_from_an_address_the_view_does_not_know_has_an_unknown_peer_node() -> None:
    async def test(c: Cluster) -> None:
        await c.net.app(CATALOG)
        c.view = View.build(2, MeshModel(workloads={CATALOG.uid: CATALOG}, services={}, nodes={}), c.ca.bundle)
        await c.open()
        assert c.b.scrape().value("nodemesh_tunnels", direction="inbound", peer_node="unknown") == 1

    run(test)


ELSEWHERE = workload("s", "catalog", "node-b", "127.0.30.1")  # an address node-b does not serve


def no_listener() -> Cluster:
    return Cluster(target=ELSEWHERE)


def silent_listener() -> Cluster:
    """The target's 15008 accepts TCP and never answers TLS."""
    c = Cluster(target=ELSEWHERE)
    c.net.silent(ELSEWHERE.ip, HBONE_PORT)
    c.a.proxy.core.pool.connect_timeout = 0.3
    return c


def other_ca() -> Cluster:
    """node-b's certificates chain to a root node-a does not trust."""
    return Cluster(b_ca=TestCa())


def other_identity() -> Cluster:
    """node-b certifies the catalog pod as another workload than node-a expects there."""
    return Cluster(catalog=workload("s", "catalog", "node-b", CATALOG.ip, spiffe("shop", "impostor")), target=CATALOG)


@pytest.mark.parametrize("cluster, outcome", [
    (no_listener, "upstream_refused"),
    (silent_listener, "upstream_timeout"),
    (other_ca, "tls_handshake_failed"),
    (other_identity, "identity_mismatch"),
])
def test_an_outbound_handshake_that_fails_is_counted_by_outcome(cluster: Callable[[], Cluster], outcome: str) -> None:
    async def test(c: Cluster) -> None:
        with pytest.raises(TunnelError):
            await c.open()

        def counted() -> None:
            a = c.a.scrape()
            assert handshakes(a, "outbound") == {"ok": 0, outcome: 1}
            assert a.value("nodemesh_tls_handshake_duration_seconds_count", direction="outbound") == 0
            assert a.labels("nodemesh_tunnels") == []

        await eventually_async(counted)  # the opener may give up before the handshake does

    run(test, cluster)


def test_a_client_of_another_trust_domain_is_an_inbound_refused_identity() -> None:
    async def test(c: Cluster) -> None:
        with pytest.raises(TunnelError):
            await c.open()

        def counted() -> None:
            b = c.b.scrape()
            assert handshakes(b, "inbound") == {"ok": 0, "refused_identity": 1, "no_certificate": 0}
            assert b.labels("nodemesh_tunnels") == []

        await eventually_async(counted)
        assert handshakes(c.a.scrape(), "outbound") == {"ok": 1}  # the server's identity was right

    run(test, lambda: Cluster(client=workload("c", "client", "node-a", CLIENT.ip, "spiffe://other.mesh/ns/shop/sa/client")))


def test_a_listener_without_a_valid_certificate_refuses_the_handshake_and_counts_it() -> None:
    def unreachable(uid: str, csr: bytes) -> bytes:
        raise ConnectionError("controller unavailable")

    async def test(c: Cluster) -> None:
        with pytest.raises(TunnelError) as e:
            await c.open()
        assert e.value.outcome == "tls_handshake_failed"
        assert handshakes(c.b.scrape(), "inbound") == {"ok": 0, "refused_identity": 0, "no_certificate": 1}

    run(test, lambda: Cluster(b_sign=unreachable, b_certified=False))


def test_pods_certificates_config_and_readiness() -> None:
    """Two pods of one identity: the expiry shown is the earlier one; pods whose namespaces are
    not there are pending; the config client's state and readiness as they are."""
    twin = workload("s2", "catalog-2", "node-b", "127.0.20.2", CATALOG.identity)
    ca = TestCa()

    def sign(uid: str, csr: bytes) -> bytes:  # the twin's certificate expires first
        return ca.sign(uid, csr, dt.timedelta(minutes=30) if uid == twin.uid else LIFETIME)

    async def test(c: Cluster) -> None:
        b = c.b
        await b.certify([CATALOG, twin], ca.bundle)
        c.view = View.build(2, MeshModel(workloads={w.uid: w for w in (CLIENT, CATALOG, twin)}, services={},
                                         nodes={}), ca.bundle)
        await b.enroller.reconcile(c.view)
        b.config.applied_version, b.config.accepted, b.config.rejected = 7, 6, 1
        b.config.connected, b.config.disconnects = True, 2
        s = b.scrape()
        expiry = {uid: cert.not_after.timestamp() for uid, cert in b.certs.certs.items()}  # type: ignore[union-attr]
        assert expiry[twin.uid] < expiry[CATALOG.uid]
        assert s.labels("nodemesh_certificate_expiry_timestamp_seconds") == [{"identity": CATALOG.identity}]
        assert s.value("nodemesh_certificate_expiry_timestamp_seconds", identity=CATALOG.identity) == expiry[twin.uid]
        assert (s.value("nodemesh_enrolled_pods"), s.value("nodemesh_pending_pods")) == (0, 2)
        assert s.value("nodemesh_xds_config_version") == 7
        assert s.value("nodemesh_xds_updates_total", result="accepted") == 6
        assert s.value("nodemesh_xds_updates_total", result="rejected") == 1
        assert (s.value("nodemesh_xds_connected"), s.value("nodemesh_xds_disconnects_total")) == (1, 2)
        assert s.value("nodemesh_agent_ready") == 0
        b.is_ready = True
        assert b.scrape().value("nodemesh_agent_ready") == 1
        assert s.labels("nodemesh_bpf_map_entries") == []  # no kernel here

    run(test, lambda: Cluster(b_ca=ca, b_sign=sign))


def test_every_family_of_the_catalog_is_described_and_collected_with_its_type() -> None:
    async def test(c: Cluster) -> None:
        collector = c.a.collector
        described = {(f.name, f.type) for f in collector.describe()}
        collected = {(f.name, f.type) for f in collector.collect()}
        assert described == collected == {(f.name.removesuffix("_total"), f.kind("x", "").type) for f in FAMILIES}
        parsed = {(f.name, f.type) for f in c.a.scrape().families.values()}
        assert parsed == described

    run(test)


def test_loop_lag_shows_a_blocked_loop() -> None:
    async def test(c: Cluster) -> None:
        lag = c.a.lag
        lag.start()
        await asyncio.sleep(0.2)  # a few ticks of an idle loop
        time.sleep(0.3)  # the loop is blocked: the tick due meanwhile runs late
        await asyncio.sleep(0.1)
        s = c.a.scrape()
        count = s.value("nodemesh_event_loop_lag_seconds_count")
        assert count is not None and count >= 4
        late = count - s.value("nodemesh_event_loop_lag_seconds_bucket", le="0.1")  # type: ignore[operator]
        assert late >= 1, s.text
        assert s.value("nodemesh_event_loop_lag_seconds_bucket", le="0.5") == count
        assert s.value("nodemesh_event_loop_lag_seconds_sum") >= 0.2  # type: ignore[operator]
        lag.close()
        await asyncio.sleep(0.15)
        assert c.a.scrape().value("nodemesh_event_loop_lag_seconds_count") == count  # closed: no more ticks

    run(test)


def test_outlier_ejections_are_counted_and_the_ejected_shown_by_service() -> None:
    """Connects to the one endpoint of two that fails, as the outbound path reports them to the
    agent's balancer: ejected after its consecutive failures (2 here), counted per service."""
    twin = workload("s2", "catalog-2", "node-b", "127.0.20.2")
    catalog = Service("catalog", "shop", "10.96.0.10", (ServicePort("tcp", 80, APP_PORT),), (CATALOG.uid, twin.uid),
                      TrafficPolicy(outlier_detection=OutlierDetection(consecutive_failures=2)))

    async def test(c: Cluster) -> None:
        view = View.build(2, MeshModel(workloads={w.uid: w for w in (CLIENT, CATALOG, twin)},
                                       services={catalog.key: catalog}, nodes={}))
        router = c.a.proxy.core.router
        for _ in range(4):  # round robin: the catalog, then its twin, twice
            target = router.route(view, CLIENT, catalog.vip, 80)
            if target.workload is CATALOG:
                router.retry(target.lease, "upstream_refused")  # type: ignore[arg-type]
            else:
                router.balancer.connected(target.lease)  # type: ignore[arg-type]
            target.lease.release()  # type: ignore[union-attr]
        s = c.a.scrape()
        name = "catalog.shop.svc.cluster.local"
        assert s.value("nodemesh_outlier_ejections_total", destination_service=name) == 1
        assert s.value("nodemesh_outlier_ejected_endpoints", destination_service=name) == 1

    run(test)
