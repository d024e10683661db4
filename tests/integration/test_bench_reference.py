"""The benchmark reference on a simulated cluster: HAProxy on two nodes, mutual TLS 1.3 between them.

A plain client pod on node-a reaches a plain server pod on node-b through the two HAProxies, the
way the benchmarks drive it (``nodemesh sim exec`` and the example client). The wire on node-b's
link shows TLS 1.3 and none of the payload, and node-b's frontend refuses any client that does
not hold a certificate of the reference's own CA.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Iterator

import pytest

from e2e.simcluster import SimCluster, module_cluster  # tests/: the CLI-driven cluster helper
from wire import TLS13, TLS13_SUITES, Capture, server_hello  # tests/: the capture on the simulated bridge

from nodemesh.netns import Netns
from nodemesh.tools.bench.reference import HaproxyTunnel, write_pki
from nodemesh.tools.sim.process import start_time

pytestmark = pytest.mark.kernel

SIM = "benchref"
TUNNEL_PORT = 18443
APP_PORT = 8080
CLUSTER = """
apiVersion: v1
kind: Namespace
metadata: {name: plain}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: plain}
spec: {nodeName: node-a, containers: [{name: main, command: [sleep, infinity]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: server, namespace: plain}
spec:
  nodeName: node-b
  containers: [{name: server, command: [python3, -m, nodemesh.tools.apps.server, --port, "8080"]}]
"""


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            kernel_prerequisites: None) -> Iterator[SimCluster]:
    yield from module_cluster(request, tmp_path_factory, SIM, CLUSTER)


def tunnel_for(cluster: SimCluster, resumption: bool = True) -> HaproxyTunnel:
    return HaproxyTunnel(SIM, "node-a", "node-b", (cluster.pod_ip("plain/server"), APP_PORT),
                         tunnel_port=TUNNEL_PORT, resumption=resumption)


@pytest.fixture
def tunnel(cluster: SimCluster) -> Iterator[HaproxyTunnel]:
    with tunnel_for(cluster) as t:
        yield t


def echo_from_client_pod(cluster: SimCluster, target: tuple[str, int], payload: bytes) -> bytes:
    """From inside plain/client: read the server's name line, send ``payload``, return its echo."""
    with Netns(cluster.names.netns_path(cluster.names.pod_netns("plain", "client"))) as ns:
        sock = ns.socket()
    with sock:
        sock.settimeout(5)
        sock.connect(target)
        with sock.makefile("rb") as f:
            assert f.readline() == b"server\n"
            sock.sendall(payload)
            return f.read(len(payload))


def test_the_client_pod_reaches_the_server_pod_through_both_haproxies(cluster: SimCluster,
                                                                       tunnel: HaproxyTunnel) -> None:
    assert tunnel.client_target == f"{cluster.status()['nodes']['node-a']['ip']}:18080"
    tally = cluster.client("plain/client", tunnel.client_target, count=5, payload=1000)
    assert (tally["ok"], tally["failed"], tally["servers"]) == (5, 0, {"server": 5}), tally
    assert len(tunnel.pids) == 2 and all(start_time(pid) for pid in tunnel.pids)


def wire(cluster: SimCluster, tunnel: HaproxyTunnel, marker: bytes, rounds: int) -> Capture:
    """``rounds`` marker echoes through the tunnel and, as the control, straight to the server pod."""
    host, port = tunnel.client_target.split(":")
    server = (cluster.pod_ip("plain/server"), APP_PORT)
    capture = Capture(cluster.names, "node-b")
    try:
        for _ in range(rounds):
            assert echo_from_client_pod(cluster, (host, int(port)), marker) == marker
            assert echo_from_client_pod(cluster, server, marker) == marker
        capture.drain()  # the echoes came back through node-b's link: their segments are all in
    finally:
        capture.close()
    return capture


def test_on_the_wire_the_hop_is_tls13_and_no_payload_shows(cluster: SimCluster,
                                                           tunnel: HaproxyTunnel) -> None:
    marker = b"NODEMESH-REFERENCE-MARKER-" * 40
    capture = wire(cluster, tunnel, marker, rounds=3)
    plain, tunneled = capture.payload(APP_PORT), capture.payload(TUNNEL_PORT)
    assert marker in plain, "the capture did not see the plaintext control traffic"
    assert len(tunneled) > 3 * 2 * len(marker), "the capture did not see the tunnel"
    assert marker not in tunneled
    hellos = [server_hello(s) for s in capture.sent_from(TUNNEL_PORT)]
    assert len(hellos) == 3  # one TLS connection per client connection: HAProxy does not pool
    for hello in hellos:
        assert hello.version == TLS13 and hello.cipher_suite in TLS13_SUITES, hello
    assert b"\x17\x03\x03" in tunneled  # application data records


@pytest.mark.parametrize("resumption", [True, False])
def test_resumption_between_the_haproxies_is_on_unless_turned_off(cluster: SimCluster,
                                                                  resumption: bool) -> None:
    with tunnel_for(cluster, resumption) as tunnel:
        capture = wire(cluster, tunnel, b"x", rounds=3)
    resumed = [server_hello(s).resumed for s in capture.sent_from(TUNNEL_PORT)]
    assert resumed == [False, resumption, resumption]  # the first handshake is a full one either way


@pytest.mark.parametrize("client_cert", ["foreign", "none"])
def test_node_b_refuses_a_client_without_a_certificate_of_its_ca(cluster: SimCluster, tunnel: HaproxyTunnel,
                                                                 client_cert: str, tmp_path: Path) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # we only ask node-b to judge us
    if client_cert == "foreign":
        write_pki(tmp_path, ["node-a"])  # node-a's certificate as the reference makes it, another CA's
        context.load_cert_chain(tmp_path / "node-a.pem")
    with Netns(cluster.names.netns_path(cluster.names.node_netns("node-a"))) as ns:
        raw = ns.socket()
    raw.settimeout(5)
    raw.connect((cluster.status()["nodes"]["node-b"]["ip"], TUNNEL_PORT))
    with context.wrap_socket(raw) as tls:
        assert tls.version() == "TLSv1.3"
        # TLS 1.3 finishes the client's handshake first; the server's verdict is its next record
        with pytest.raises(ssl.SSLError) as refused:
            tls.sendall(b"let me in")
            tls.recv(100)
    expected = "UNKNOWN_CA" if client_cert == "foreign" else "CERTIFICATE_REQUIRED"
    assert expected in str(refused.value).upper(), refused.value


def test_stop_leaves_nothing_behind(cluster: SimCluster) -> None:
    tunnel = tunnel_for(cluster)
    tunnel.start()
    pids, directory = tunnel.pids, tunnel.directory
    assert directory is not None and (directory / "node-a.pem").stat().st_mode & 0o077 == 0
    tunnel.stop()
    tunnel.stop()  # twice is fine
    assert [start_time(pid) for pid in pids] == [None, None]
    assert not directory.exists()
    with Netns(cluster.names.netns_path(cluster.names.node_netns("node-a"))) as ns:
        probe = ns.socket()
    with probe, pytest.raises(ConnectionRefusedError):
        probe.connect((cluster.status()["nodes"]["node-a"]["ip"], 18080))
