"""`nodemesh tunnels` / `certs` and the admin client under them, where the user is wrong: no
root, a sim that is gone, agents that do not answer or hang up. Each is a message and exit 1,
never a raw OSError."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterator

import pytest
from click.testing import CliRunner
from privileges import without_root

from nodemesh.tools.admin_client import AdminError, fetch, get_text
from nodemesh.tools.cli import main
from nodemesh.tools.sim.state import SimState


def test_fetch_without_root_says_to_run_as_root():
    raised = without_root(lambda: fetch("/proc/self/ns/net", "/tunnels"))
    assert isinstance(raised, AdminError), raised
    assert str(raised) == ("cannot enter network namespace /proc/self/ns/net "
                           "(setns(CLONE_NEWNET): Operation not permitted): run as root")


def test_fetch_from_a_namespace_that_is_gone_asks_whether_the_sim_is_up():
    with pytest.raises(AdminError, match=r"^network namespace /run/netns/nm-gone-node-a does not "
                                         r"exist: is the sim up\? `nodemesh sim status`$"):
        fetch("/run/netns/nm-gone-node-a", "/certs")


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


@pytest.mark.parametrize("args", [["tunnels", "--sim", "notup"], ["certs", "--sim", "notup"],
                                  ["top", "--name", "notup"]])
def test_without_root_one_message(args):
    code, output = without_root(lambda: _cli(*args))
    assert code == 1
    assert output.startswith("Error: the simulated cluster needs root"), output


@pytest.fixture
def sim_whose_namespaces_are_gone(monkeypatch):
    """A sim whose state names two nodes, with no namespace left behind them."""
    state = SimState(sim="gone", file="/c.yaml", nodes={"node-a": {}, "node-b": {}})
    monkeypatch.setattr("nodemesh.tools.sim.state.load", lambda names: state)
    monkeypatch.setattr("nodemesh.tools.sim.process.require_root", lambda: None)


@pytest.mark.parametrize("command", ["tunnels", "certs"])
def test_nodes_without_an_answer_are_shown_and_the_exit_is_1(sim_whose_namespaces_are_gone, command):
    code, output = _cli(command, "--sim", "gone")
    assert code == 1
    assert output.count("does not exist: is the sim up? `nodemesh sim status`") == 2, output
    assert output.startswith("node node-a:\n  network namespace /run/netns/nm-gone-node-node-a ")
    assert output.endswith("Error: no answer from the agent on node-a, node-b (the reason is above)\n")


def test_an_unknown_node_is_named_with_the_nodes_there_are(sim_whose_namespaces_are_gone):
    code, output = _cli("certs", "--sim", "gone", "--node", "node-c")
    assert (code, output) == (1, "Error: no node 'node-c' in sim 'gone'; nodes: node-a, node-b\n")


@pytest.fixture
def loopback_server() -> Iterator[Callable[[type[BaseHTTPRequestHandler]], int]]:
    """``serve(handler)``: a port on 127.0.0.1 in this namespace answering with ``handler``."""
    servers: list[ThreadingHTTPServer] = []

    def serve(handler: type[BaseHTTPRequestHandler]) -> int:
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.server_address[1]

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.kernel  # entering a namespace, even our own, takes root
def test_get_text_returns_the_body_as_text(loopback_server):
    class Metrics(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"# TYPE up gauge\nup 1.0\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    port = loopback_server(Metrics)
    assert get_text("/proc/self/ns/net", "/metrics", port=port) == "# TYPE up gauge\nup 1.0\n"


@pytest.mark.kernel
def test_an_agent_that_hangs_up_without_answering_is_an_admin_error(loopback_server):
    class HangUp(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.close_connection = True  # and no response at all

    port = loopback_server(HangUp)
    with pytest.raises(AdminError, match=rf"^agent port {port} in /proc/self/ns/net \(127.0.0.1:{port}\) "
                                         r"broke off /metrics: Remote end closed connection"):
        get_text("/proc/self/ns/net", "/metrics", port=port)
