"""The sim's Prometheus on the real kernel: the port forward into a namespace, and
`sim up --prometheus` scraping the targets it was given (whether or not they export metrics yet:
a target that refuses shows as up == 0, which is what proves the configuration)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
from eventually import eventually
from pyroute2 import IPRoute, netns

from nodemesh.netns import Netns
from nodemesh.tools.sim.cleanup import leftovers
from nodemesh.tools.sim.names import SimNames
from nodemesh.tools.sim.process import start_time
from nodemesh.tools.sim.prometheus import CALLER_NETNS, query

pytestmark = pytest.mark.kernel

DEMO = Path(__file__).parents[2] / "tools" / "sim" / "examples" / "demo.yaml"
HTTP_PORT = 8000
HOST_NETNS = CALLER_NETNS  # this test's own


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(netns_path: str, port: int) -> bool:
    with Netns(netns_path) as ns:
        sock = ns.socket()
    with sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def http_netns(tmp_path: Path, kernel_prerequisites: None) -> Iterator[str]:
    """A namespace of its own with an HTTP server on its 127.0.0.1:8000; removed even on failure."""
    name = f"nmtest-forward-{os.getpid()}"
    netns.create(name)
    path = SimNames.netns_path(name)
    (tmp_path / "hello.txt").write_text("hello from inside\n")
    server = None
    try:
        with IPRoute(netns=name) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        server = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, "-m", "http.server",
                                   "--bind", "127.0.0.1", "--directory", str(tmp_path), str(HTTP_PORT)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        eventually(lambda: _listening(path, HTTP_PORT), timeout=10, interval=0.05)
        yield path
    finally:
        if server is not None:
            server.kill()
            server.wait()
        netns.remove(name)


def _forward(port: int, netns_path: str, to_port: int = HTTP_PORT) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "nodemesh.tools.sim.forward", "--listen", str(port),
                             "--netns", netns_path, "--to-port", str(to_port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=10)


def test_the_forward_reaches_a_server_on_the_loopback_of_another_namespace(http_netns: str) -> None:
    port = free_port()
    forward = _forward(port, http_netns)
    try:
        eventually(lambda: _listening(HOST_NETNS, port), timeout=10, interval=0.05)
        # the host has no server on that port: only the forward leads there, connection by connection
        for _ in range(20):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/hello.txt", timeout=5) as response:
                assert response.read() == b"hello from inside\n"
    finally:
        _stop(forward)


def test_a_port_nobody_listens_on_inside_is_a_closed_connection_not_a_hang(http_netns: str) -> None:
    port = free_port()
    forward = _forward(port, http_netns, to_port=HTTP_PORT + 1)
    try:
        eventually(lambda: _listening(HOST_NETNS, port), timeout=10, interval=0.05)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            try:
                assert client.recv(1) == b""
            except ConnectionResetError:
                pass
    finally:
        _stop(forward)


def test_a_port_in_use_on_the_host_is_one_line_and_exit_status_1(http_netns: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        forward = _forward(port, http_netns)
        _, err = forward.communicate(timeout=10)
    assert forward.returncode == 1
    assert err == f"cannot listen on 127.0.0.1:{port}: Address already in use\n"


def test_sim_up_with_prometheus_scrapes_every_agent_and_the_controller(sim_names, cli) -> None:
    names = sim_names("promup")
    port = free_port()
    up = cli("sim", "up", "-f", str(DEMO), "--name", names.sim, "--prometheus",
             "--prometheus-port", str(port), timeout=180)
    assert up.returncode == 0, up.stdout + up.stderr
    url = f"http://127.0.0.1:{port}"
    assert f"prometheus at {url}\n" in up.stdout
    status = json.loads(cli("sim", "status", "--name", names.sim, "-o", "json").stdout)
    assert status["prometheus"] == {"url": url}
    assert all(status["processes"][c]["ready"] for c in ("prometheus", "prometheus-forward"))

    # each configured target was tried (up exists for it, 0 while nothing answers yet)
    def targets() -> set[tuple[str, ...]]:
        return {(r["metric"]["job"], r["metric"]["instance"], r["metric"].get("node", ""))
                for r in query(url, "up")}

    assert eventually(lambda: targets() == {
        ("nodemesh-agent", "172.30.0.1:15020", "node-a"),
        ("nodemesh-agent", "172.30.0.2:15020", "node-b"),
        ("nodemesh-controller", "172.30.0.254:15014", ""),
    }, timeout=30, interval=0.5, what="an up series per target")
    with urllib.request.urlopen(f"{url}/api/v1/rules", timeout=5) as response:
        groups = json.load(response)["data"]["groups"]
    assert {g["name"] for g in groups} == {"nodemesh-recording", "nodemesh-alerts"}

    # Prometheus lives in the controller's namespace (the controller's own), not the host's
    pids = {c: status["processes"][c]["pid"] for c in ("prometheus", "prometheus-forward", "controller")}
    assert os.readlink(f"/proc/{pids['prometheus']}/ns/net") == os.readlink(f"/proc/{pids['controller']}/ns/net")
    assert os.readlink(f"/proc/{pids['prometheus-forward']}/ns/net") == os.readlink("/proc/self/ns/net")

    # down finds both by the sim's cgroup and namespaces, even with the state file gone
    names.state_path.unlink()
    assert cli("sim", "down", "--name", names.sim).returncode == 0
    assert leftovers(names) == []
    assert not any(start_time(pid) for pid in pids.values())
    assert not _listening(HOST_NETNS, port)


def test_a_taken_prometheus_port_stops_sim_up_before_it_makes_anything(sim_names, cli) -> None:
    names = sim_names("promtaken")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        up = cli("sim", "up", "-f", str(DEMO), "--name", names.sim, "--prometheus",
                 "--prometheus-port", str(port))
    assert up.returncode == 1
    assert up.stderr == (f"Error: cannot use 127.0.0.1:{port} for Prometheus: it is already in use "
                         "(another sim's Prometheus, or one of this host?); choose another port "
                         "with --prometheus-port\n")
    assert leftovers(names) == []
