"""Inbound plaintext capture on the real kernel: the sk_lookup program, the 15006 listener, enrollment.

Two namespaces joined by a veth: a meshed "pod" with an app on 8080, and a "client" outside
the mesh. The pod is enrolled by the real ``Enroller`` with the real ``PlaintextCapture`` (and
real steering programs on an empty cgroup made for the test). Whether a connection went
through the 15006 listener is read from what the listener recorded (the connection table)
and from the address the app saw: through the agent, the app sees the pod's own IP; straight
to the app (no agent, PERMISSIVE), it sees the client's.

An agent dying is played two ways: in this process, by closing what the process would lose
(its listeners, the capture's program and map fds) without unenrolling or detaching; and as a
child process that attaches and is SIGKILLed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Awaitable, Callable, Iterator

import pytest
import uvloop

from eventually import eventually_async  # tests/: the one wait for a condition
from hbone_pki import Identities, TestCa, spiffe  # tests/: the test CA, shared with unit tests

from nodemesh.agent.ebpf import syscall  # noqa: E402
from nodemesh.agent.ebpf.capture import PlaintextCapture, links_dir, pinned  # noqa: E402
from nodemesh.agent.ebpf.steering import Steering  # noqa: E402
from nodemesh.agent.inpod.discovery import PathTemplate  # noqa: E402
from nodemesh.agent.inpod.enroller import Enroller  # noqa: E402
from nodemesh.agent.inpod.pod import PodNetns  # noqa: E402
from nodemesh.agent.ports import HBONE_PORT, OUTBOUND_PORT, PLAINTEXT_PORT  # noqa: E402
from nodemesh.agent.proxy.conntrack import INBOUND  # noqa: E402
from nodemesh.agent.proxy.plaintext import NOT_CAPTURED, REFUSED_STRICT  # noqa: E402
from nodemesh.agent.proxy.node import NodeProxy  # noqa: E402
from nodemesh.agent.state.store import View  # noqa: E402
from nodemesh.cgroups import unified_root  # noqa: E402
from nodemesh.model import PERMISSIVE, STRICT, MeshModel, Workload  # noqa: E402
from nodemesh.netns import Netns  # noqa: E402

pytestmark = pytest.mark.kernel

POD_IP, CLIENT_IP = "10.203.0.2", "10.203.0.1"
APP_PORT = 8080
CLOSED_PORT = 8081  # nothing listens here


@dataclasses.dataclass
class Net:
    pod_path: str
    client_path: str
    template: str  # the enroller's netns template; the pod is "ns/pod"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@pytest.fixture(scope="module")
def net(kernel_prerequisites: None) -> Iterator[Net]:
    """The two namespaces, made inside themselves only: the host's network is never touched."""
    prefix = f"nmtest-inb{os.getpid()}"
    pod, client = f"{prefix}-pod", f"{prefix}-client"
    made: list[str] = []
    try:
        for name in (pod, client):
            ip("netns", "add", name)
            made.append(name)
        ip("-n", pod, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", client)
        for name, addr in ((pod, POD_IP), (client, CLIENT_IP)):
            ip("-n", name, "addr", "add", f"{addr}/24", "dev", "eth0")
            ip("-n", name, "link", "set", "eth0", "up")
            ip("-n", name, "link", "set", "lo", "up")
        yield Net(f"/run/netns/{pod}", f"/run/netns/{client}", f"/run/netns/{prefix}-{{name}}")
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


@pytest.fixture(scope="module")
def pins(kernel_prerequisites: None) -> Iterator[Path]:
    """The agents' --bpffs-dir for this module, removed (and the pinned links with it) at the end."""
    path = Path(f"/sys/fs/bpf/nmtest-inb{os.getpid()}")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True)
def no_pins_left(pins: Path) -> Iterator[None]:
    """Each test starts with no link pinned, even after one that failed midway."""
    yield
    for pinned in links_dir(pins).glob("*"):
        pinned.unlink()


def pinned_link(pins: Path) -> tuple[int, int]:
    """The pod's pinned link: its id and the id of the program it runs."""
    fd = syscall.obj_get(str(links_dir(pins) / POD_IP.replace(".", "-")))
    try:
        info = syscall.netns_link_info(fd)
        return info.id, info.prog_id
    finally:
        os.close(fd)


@pytest.fixture(scope="module")
def steering(kernel_prerequisites: None) -> Iterator[Steering]:
    """Real steering programs on an empty cgroup of the test's own: the enroller needs its map."""
    root = unified_root()
    assert root is not None
    cgroup = root / f"nmtest-inbound-{os.getpid()}"
    cgroup.mkdir()
    try:
        s = Steering(cgroup)
        try:
            yield s
        finally:
            s.close()
    finally:
        cgroup.rmdir()


def workload(mode: str = PERMISSIVE) -> Workload:
    return Workload(uid="uid-pod", name="pod", namespace="ns", service_account="default", node="n1",
                    ip=POD_IP, meshed=True, mtls_mode=mode)


def view(*workloads: Workload) -> View:
    return View.build(1, MeshModel(workloads={w.uid: w for w in workloads}, services={}, nodes={}))


class App:
    """The pod's application: answers each line with the address it saw the connection from."""

    def __init__(self) -> None:
        self.peers: list[str] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")[0]
        self.peers.append(peer)
        while line := await reader.readline():
            writer.write(f"{peer} {line.decode()}".encode())
            await writer.drain()
        writer.close()


class Scene:
    """One event loop: the pod's app and clients, and an agent (proxy and enroller) that may die and come back."""

    def __init__(self, net: Net, capture: PlaintextCapture, steering: Steering) -> None:
        self.net = net
        self.steering = steering
        self.pod_netns = Netns(net.pod_path)
        self.client_netns = Netns(net.client_path)
        self.app = App()
        self.view: View | None = None
        self.agent_up(capture)

    def agent_up(self, capture: PlaintextCapture, certified: bool = True) -> None:
        """A (new) agent over ``capture``; not ``certified``: the pod has no certificate, so it stays pending."""
        self.capture = capture
        identities = Identities(TestCa(), {"uid-pod": spiffe("ns")} if certified else {})  # 15008 is TLS
        self.proxy = NodeProxy(view=lambda: self.view, original_dst=self.steering.original_dst,
                               identities=identities, connect_timeout=2.0)
        self.enroller = Enroller("n1", PathTemplate(self.net.template), self.steering, self.proxy, capture)

    def agent_dies(self) -> None:
        """What the kernel does for a dying agent: its listeners and the capture's fds close; nothing is unenrolled."""
        self.enroller.close()
        self.capture.close()

    async def start(self, mode: str = PERMISSIVE) -> None:
        sock = self.pod_netns.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", APP_PORT))
        self.server = await asyncio.start_server(self.app.handle, sock=sock)
        await self.set_mode(mode)
        assert self.enroller.pending == {}, self.enroller.pending

    async def set_mode(self, mode: str) -> None:
        self.view = view(workload(mode))
        await self.enroller.reconcile(self.view)

    async def close(self) -> None:
        """The pod leaves the mesh (its pin goes), then the agent exits."""
        try:
            await self.enroller.reconcile(view())
            assert self.capture.attached() == []  # unenrolling detached it
            self.enroller.close()
        finally:
            self.capture.close()
            self.server.close()
            self.pod_netns.close()
            self.client_netns.close()

    async def open(self, netns: Netns, host: str, port: int
                   ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        sock = netns.socket()
        sock.setblocking(False)
        try:
            await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (host, port)), 2)
        except BaseException:
            sock.close()
            raise
        return await asyncio.open_connection(sock=sock)

    async def ask(self, netns: Netns, host: str = POD_IP, port: int = APP_PORT) -> str:
        """Send one line from a socket in ``netns``; the app's answer: the address it saw."""
        reader, writer = await self.open(netns, host, port)
        try:
            writer.write(b"hello\n")
            answer = await asyncio.wait_for(reader.readline(), 2)
            assert answer.endswith(b" hello\n"), answer
            return answer.split()[0].decode()
        finally:
            writer.close()

    async def refused(self, count: int = 3) -> None:
        """``count`` plaintext connections from the client are refused, and none reached the app."""
        seen = len(self.app.peers)
        for _ in range(count):
            with pytest.raises(ConnectionRefusedError):
                await self.open(self.client_netns, POD_IP, APP_PORT)
        assert len(self.app.peers) == seen

    def outcomes(self) -> dict[tuple[str, str], int]:
        return dict(self.proxy.core.table.totals)


def run(net: Net, pins: Path, steering: Steering,
        scenario: Callable[[Scene], Awaitable[None]], mode: str = PERMISSIVE) -> None:
    """``scenario`` with an agent serving the pod in ``mode``; the pod leaves the mesh after it."""
    async def main() -> None:
        scene = Scene(net, PlaintextCapture(pins), steering)
        try:
            await scene.start(mode)
            await scenario(scene)
        finally:
            await scene.close()

    uvloop.run(asyncio.wait_for(main(), 30))


async def reset_by_peer(reader: asyncio.StreamReader) -> float:
    """Seconds until the connection is reset (fails the test if it is not, within 2 s)."""
    start = time.monotonic()
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(reader.read(100), 2)
    return time.monotonic() - start


def test_permissive_plaintext_reaches_the_app_through_the_plaintext_listener(
        net: Net, pins: Path, steering: Steering) -> None:
    async def scenario(scene: Scene) -> None:
        reader, writer = await scene.open(scene.client_netns, POD_IP, APP_PORT)
        client_port = writer.get_extra_info("sockname")[1]
        writer.write(b"hello\n")
        assert await asyncio.wait_for(reader.readline(), 2) == f"{POD_IP} hello\n".encode()
        [conn] = scene.proxy.core.table.snapshot()["in_flight"]  # type: ignore[misc]
        assert conn["direction"] == INBOUND and conn["via"] == "plaintext"
        assert conn["connection_security_policy"] == "none"
        assert conn["source"] == f"{CLIENT_IP}:{client_port}"
        assert conn["original_dst"] == f"{POD_IP}:{APP_PORT}" and conn["destination"] == "ns/pod"
        writer.close()
        assert scene.app.peers == [POD_IP]  # the agent delivered it, from inside the pod
        assert scene.outcomes() == {(INBOUND, "ok"): 1}

        # the app not listening: the client is reset at once, as it would be without the mesh
        reader, writer = await scene.open(scene.client_netns, POD_IP, CLOSED_PORT)
        assert await reset_by_peer(reader) < 1
        writer.close()
        assert scene.outcomes()[(INBOUND, "app_unavailable")] == 1

    run(net, pins, steering, scenario)


def test_strict_refuses_plaintext_promptly_and_a_mode_change_applies_at_once(
        net: Net, pins: Path, steering: Steering) -> None:
    async def scenario(scene: Scene) -> None:
        assert await scene.ask(scene.client_netns) == POD_IP  # PERMISSIVE first: through the agent
        await scene.set_mode(STRICT)
        reader, writer = await scene.open(scene.client_netns, POD_IP, APP_PORT)
        writer.write(b"hello\n")
        assert await reset_by_peer(reader) < 1
        writer.close()
        assert scene.outcomes()[(INBOUND, REFUSED_STRICT)] == 1
        assert scene.app.peers == [POD_IP]  # the refused one never reached the app
        await scene.set_mode(PERMISSIVE)
        assert await scene.ask(scene.client_netns) == POD_IP

    run(net, pins, steering, scenario)


def test_the_agents_and_the_pods_own_connections_are_not_captured(
        net: Net, pins: Path, steering: Steering) -> None:
    async def scenario(scene: Scene) -> None:
        # the agent delivering to the app from inside the pod, as 15006 and 15008 do
        pod = PodNetns(workload(STRICT), Netns(net.pod_path))
        try:
            sock = await pod.connect(POD_IP, APP_PORT, 2.0)
        finally:
            pod.close()
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(b"hello\n")
        assert await asyncio.wait_for(reader.readline(), 2) == f"{POD_IP} hello\n".encode()
        writer.close()
        # the pod talking to itself, on its IP and on loopback
        assert await scene.ask(scene.pod_netns, POD_IP) == POD_IP
        assert await scene.ask(scene.pod_netns, "127.0.0.1") == "127.0.0.1"
        assert scene.outcomes() == {}  # STRICT would have refused anything captured
        assert len(scene.app.peers) == 3

    run(net, pins, steering, scenario, mode=STRICT)


def test_the_proxy_ports_are_not_captured(net: Net, pins: Path, steering: Steering) -> None:
    async def scenario(scene: Scene) -> None:
        for port in (OUTBOUND_PORT, HBONE_PORT, PLAINTEXT_PORT):
            reader, writer = await scene.open(scene.client_netns, POD_IP, port)
            writer.write(b"hello\n")
            writer.close()

        def each_listener_got_its_own() -> None:
            """15001 and 15006 dialled directly find no original destination."""
            outcomes = scene.outcomes()
            assert outcomes.get(("outbound", "no_original_destination")) == 1, outcomes
            assert outcomes.get((INBOUND, NOT_CAPTURED)) == 1, outcomes

        await eventually_async(each_listener_got_its_own)
        # and 15008 was not captured: had it been, 15006 would have accepted (and refused) it
        # before the direct connection dialled after it, so by now it would show
        assert (INBOUND, REFUSED_STRICT) not in scene.outcomes(), scene.outcomes()

    run(net, pins, steering, scenario, mode=STRICT)


def test_unenrolling_restores_direct_delivery(
        net: Net, pins: Path, steering: Steering) -> None:
    async def scenario(scene: Scene) -> None:
        assert await scene.ask(scene.client_netns) == POD_IP
        assert pinned(links_dir(pins)) == [POD_IP]
        link, _ = pinned_link(pins)
        await scene.enroller.reconcile(view())  # the pod leaves the mesh
        assert scene.capture.attached() == [] and pinned(links_dir(pins)) == []
        gone = subprocess.run(["bpftool", "link", "show", "id", str(link)], capture_output=True, text=True)
        assert gone.returncode != 0, gone.stdout  # unpinned, the kernel freed the link
        assert await scene.ask(scene.client_netns) == CLIENT_IP  # straight to the app
        await scene.set_mode(PERMISSIVE)  # and back
        assert await scene.ask(scene.client_netns) == POD_IP

    run(net, pins, steering, scenario)


def test_with_the_agent_gone_strict_refuses_and_permissive_reaches_the_app(
        net: Net, pins: Path, steering: Steering) -> None:
    """The agent's objects closed as its death closes them; a mode changed before applies after."""
    async def scenario(scene: Scene) -> None:
        await scene.set_mode(STRICT)
        scene.agent_dies()
        await scene.refused()
        scene.agent_up(PlaintextCapture(pins))
        await scene.set_mode(STRICT)
        await scene.set_mode(PERMISSIVE)  # a mode change of an enrolled pod
        assert await scene.ask(scene.client_netns) == POD_IP  # the new agent captures
        scene.agent_dies()
        assert await scene.ask(scene.client_netns) == CLIENT_IP  # as without the mesh
        scene.agent_up(PlaintextCapture(pins))
        await scene.set_mode(PERMISSIVE)
        await scene.set_mode(STRICT)
        scene.agent_dies()
        await scene.refused()
        scene.agent_up(PlaintextCapture(pins))

    run(net, pins, steering, scenario)


def test_a_new_agent_takes_over_the_pinned_link_in_place(
        net: Net, pins: Path, steering: Steering) -> None:
    async def scenario(scene: Scene) -> None:
        link, first_program = pinned_link(pins)
        scene.agent_dies()
        scene.agent_up(PlaintextCapture(pins))
        await scene.set_mode(STRICT)
        assert pinned_link(pins)[0] == link and pinned_link(pins)[1] != first_program  # updated, not replaced
        reader, writer = await scene.open(scene.client_netns, POD_IP, APP_PORT)
        assert await reset_by_peer(reader) < 1  # refused by the new agent's 15006: it captures
        writer.close()
        assert scene.outcomes() == {(INBOUND, REFUSED_STRICT): 1}
        scene.agent_dies()
        scene.agent_up(PlaintextCapture(pins))

    run(net, pins, steering, scenario, mode=STRICT)


def test_a_new_agent_removes_the_links_of_pods_that_left_meanwhile(
        net: Net, pins: Path, steering: Steering) -> None:
    async def scenario(scene: Scene) -> None:
        scene.agent_dies()
        scene.agent_up(PlaintextCapture(pins))
        await scene.enroller.reconcile(view())  # its first config: the pod is no longer meshed here
        assert pinned(links_dir(pins)) == []
        assert await scene.ask(scene.client_netns) == CLIENT_IP
        scene.agent_dies()
        scene.agent_up(PlaintextCapture(pins))
        await scene.set_mode(STRICT)

    run(net, pins, steering, scenario, mode=STRICT)


def test_a_strict_pod_not_served_yet_refuses_plaintext(
        net: Net, pins: Path, steering: Steering) -> None:
    """A new agent that cannot serve the pod yet (no certificate) keeps it refusing plaintext."""
    async def scenario(scene: Scene) -> None:
        scene.agent_dies()
        scene.agent_up(PlaintextCapture(pins), certified=False)
        await scene.set_mode(STRICT)
        assert "uid-pod" in scene.enroller.pending
        await scene.refused()
        await scene.set_mode(PERMISSIVE)  # applies while pending: the new agent's program took the link
        assert await scene.ask(scene.client_netns) == CLIENT_IP
        scene.agent_dies()
        scene.agent_up(PlaintextCapture(pins))
        await scene.set_mode(PERMISSIVE)

    run(net, pins, steering, scenario, mode=STRICT)


AGENT = textwrap.dedent(f"""
    import socket, sys, time
    from pathlib import Path
    from nodemesh.agent.ebpf.capture import PlaintextCapture
    from nodemesh.netns import Netns
    netns = Netns(sys.argv[1])
    listener = netns.socket()
    listener.bind(("{POD_IP}", {PLAINTEXT_PORT}))
    listener.listen(16)
    PlaintextCapture(Path(sys.argv[2])).attach(netns, "{POD_IP}", listener, strict=sys.argv[3] == "{STRICT}")
    print("attached", flush=True)
    time.sleep(60)  # holds the listener and capture until the test kills this "agent"
""")


@pytest.mark.parametrize("mode", [STRICT, PERMISSIVE])
def test_after_an_agent_killed_by_sigkill(
        net: Net, pins: Path, steering: Steering, mode: str) -> None:
    """Its link stays pinned: STRICT refuses plaintext, PERMISSIVE's reaches the app; the next agent captures."""
    agents: list[subprocess.Popen[str]] = []

    async def scenario(scene: Scene) -> None:
        await scene.enroller.reconcile(view())  # frees 15006 for another process, which captures from now on
        agent = subprocess.Popen([sys.executable, "-c", AGENT, net.pod_path, str(pins), mode],
                                 stdout=subprocess.PIPE, text=True)
        agents.append(agent)
        assert agent.stdout is not None and agent.stdout.readline().strip() == "attached"
        with pytest.raises(TimeoutError):  # its listener accepts; nobody answers
            await scene.ask(scene.client_netns)
        assert scene.app.peers == []
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
        assert pinned(links_dir(pins)) == [POD_IP]
        if mode == STRICT:
            await scene.refused(6)
        else:
            assert await scene.ask(scene.client_netns) == CLIENT_IP
        await scene.set_mode(mode)  # this agent takes over
        assert await scene.ask(scene.pod_netns) == POD_IP
        reader, writer = await scene.open(scene.client_netns, POD_IP, APP_PORT)
        if mode == STRICT:
            assert await reset_by_peer(reader) < 1
        else:
            writer.write(b"hello\n")
            assert await asyncio.wait_for(reader.readline(), 2) == f"{POD_IP} hello\n".encode()
        writer.close()

    try:
        run(net, pins, steering, scenario)
    finally:
        for agent in agents:
            agent.kill()
            agent.wait()
