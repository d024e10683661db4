"""The agent's admin API: its JSON HTTP server on real loopback, and what the views show.

The server (``agent/admin/http.py``) is exercised for real: threads, sockets, views run on the
agent's loop. The views (``agent/admin/views.py``) only read the agent's parts, so small
stand-ins for those parts are enough; Health, View and the model are the real ones.
Readiness is what Kubernetes and ``nodemesh sim`` wait on: each reason it gives is checked.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Awaitable, Callable

import pytest

from nodemesh.agent.admin.http import HttpEndpoint, Route
from nodemesh.agent.admin.views import AdminViews, AgentParts
from nodemesh.agent.state.store import View
from nodemesh.agent.supervision import Health
from nodemesh.model import MeshModel, Node, Service, ServicePort, Workload, frozen_labels

Reply = tuple[int, str, Any]  # status, content type, parsed body


def get(port: int, path: str) -> Reply:
    """A plain HTTP GET, as curl or ``nodemesh.tools.admin_client`` would send it."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.getheader("content-type"), json.loads(response.read())
    finally:
        conn.close()


def serve(routes: dict[str, Route], test: Callable[[Callable[[str], Awaitable[Reply]]], Awaitable[None]]) -> None:
    """Run ``test(fetch)`` with ``routes`` served on a loopback port; ``fetch(path)`` GETs from a
    thread, so that the loop stays free to run the views, as in the agent."""
    async def main() -> None:
        endpoint = HttpEndpoint("127.0.0.1", 0, routes, asyncio.get_running_loop())
        port = endpoint._server.server_address[1]  # port 0: the kernel's pick, known only to the server
        endpoint.start()
        try:
            await test(lambda path: asyncio.to_thread(get, port, path))
        finally:
            endpoint.stop()

    asyncio.run(asyncio.wait_for(main(), 30))


def answer(status: int, body: object) -> Route:
    async def route() -> tuple[int, object]:
        return status, body
    return route


def test_a_route_answers_json_whatever_the_query() -> None:
    async def test(fetch: Callable[[str], Awaitable[Reply]]) -> None:
        assert await fetch("/a?verbose=1") == (200, "application/json", {"x": [1, 2]})
        assert await fetch("/b") == (503, "application/json", {"ready": False})

    serve({"/a": answer(200, {"x": [1, 2]}), "/b": answer(503, {"ready": False})}, test)


def test_an_unknown_path_is_404_naming_the_endpoints() -> None:
    async def test(fetch: Callable[[str], Awaitable[Reply]]) -> None:
        status, _, body = await fetch("/nope")
        assert (status, body) == (404, {"error": "no such endpoint; try ['/certs', '/tunnels']"})

    serve({"/tunnels": answer(200, []), "/certs": answer(200, [])}, test)


def test_a_view_that_raises_is_500_with_the_error_and_the_server_goes_on() -> None:
    async def broken() -> tuple[int, object]:
        raise RuntimeError("map went away")

    async def test(fetch: Callable[[str], Awaitable[Reply]]) -> None:
        status, _, body = await fetch("/broken")
        assert (status, body) == (500, {"error": "RuntimeError('map went away')"})
        assert (await fetch("/fine"))[0] == 200

    serve({"/broken": broken, "/fine": answer(200, {})}, test)


def test_views_run_on_the_agents_loop_not_the_servers_thread() -> None:
    """What makes a view's answer one consistent moment: nothing else on the loop runs meanwhile."""
    ran_on: list[tuple[asyncio.AbstractEventLoop, threading.Thread]] = []

    async def where() -> tuple[int, object]:
        ran_on.append((asyncio.get_running_loop(), threading.current_thread()))
        return 200, {}

    async def test(fetch: Callable[[str], Awaitable[Reply]]) -> None:
        await fetch("/where")
        assert ran_on == [(asyncio.get_running_loop(), threading.current_thread())]

    serve({"/where": where}, test)


def test_a_port_in_use_says_what_to_do() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}: .*another agent"):
            HttpEndpoint("127.0.0.1", port, {}, asyncio.new_event_loop())
    finally:
        taken.close()


# The views, over stand-ins for the parts they read.

CATALOG = Workload(uid="u1", name="catalog", namespace="shop", service_account="catalog", node="node-a",
                   ip="10.10.1.10", labels=frozen_labels({"app": "catalog"}), meshed=True,
                   identity="spiffe://cluster.local/ns/shop/sa/catalog")


def view(version: int = 7) -> View:
    service = Service(name="catalog", namespace="shop", vip="10.96.0.10",
                      ports=(ServicePort("http", 80, 8080),), endpoints=(CATALOG.uid,))
    model = MeshModel(workloads={CATALOG.uid: CATALOG}, services={service.key: service},
                      nodes={"node-a": Node("node-a", "172.30.0.1", "10.10.1.0/24")})
    return View.build(version, model)


@dataclass
class Certs:
    """The CertManager's read side: one record per workload, and which are valid now."""

    workloads: list[Workload] = field(default_factory=lambda: [CATALOG])
    valid: set[str] = field(default_factory=lambda: {CATALOG.uid})

    @property
    def certs(self) -> dict[str, SimpleNamespace]:
        return {w.uid: SimpleNamespace(workload=w) for w in self.workloads}

    def has_valid(self, uid: str) -> bool:
        return uid in self.valid

    def status(self) -> list[dict[str, object]]:
        return [{"workload": w.ref, "valid": w.uid in self.valid} for w in self.workloads]


@dataclass
class Enroller:
    pending: dict[str, str] = field(default_factory=dict)

    def status(self) -> dict[str, object]:
        return {"enrolled": [{"pod": CATALOG.ref}], "pending": dict(self.pending)}


def parts(current: View | None = None, health: Health | None = None, enroller: Enroller | None = None,
          certs: Certs | None = None) -> AgentParts:
    """A ready agent's parts, unless told otherwise."""
    snapshot = {"in_flight": [], "totals": [{"direction": "outbound", "outcome": "ok", "count": 3}]}
    proxy = SimpleNamespace(core=SimpleNamespace(table=SimpleNamespace(snapshot=lambda: snapshot)),
                            tunnels=lambda: {"tunnels": [], "handshakes": 1, "failures": {}})
    return AgentParts(
        node="node-a", cgroup=Path("/sys/fs/cgroup/nodemesh"), view=lambda: current,
        steering=SimpleNamespace(map_usage=lambda: {"mesh_destinations": 2}),  # type: ignore[arg-type]
        capture=SimpleNamespace(attached=lambda: ["10.10.1.10"]),  # type: ignore[arg-type]
        enroller=enroller or Enroller(),  # type: ignore[arg-type]
        certs=certs or Certs(),  # type: ignore[arg-type]
        proxy=proxy,  # type: ignore[arg-type]
        config=SimpleNamespace(status=lambda: {"connected": True, "connects": 1}),  # type: ignore[arg-type]
        health=health or Health(), registry=None)


def failing() -> Health:
    health = Health()
    health.failing("config", ConnectionError("controller unavailable"))
    return health


@pytest.mark.parametrize(("agent", "status", "body"), [
    (parts(None), 503, {"ready": False, "reason": "no config from the controller yet"}),
    (parts(view(), health=failing()), 503, {"ready": False, "reason": "background work is failing",
                                            "failing": {"config": "ConnectionError: controller unavailable"}}),
    (parts(view(), enroller=Enroller({"u1": "network namespace gone"})), 503,
     {"ready": False, "reason": "pods not enrolled", "pending": {"u1": "network namespace gone"}}),
    (parts(view(), certs=Certs(valid=set())), 503,
     {"ready": False, "reason": "no workload certificate yet", "pods": ["shop/catalog"]}),
    (parts(view(7)), 200, {"ready": True, "version": 7}),
], ids=["no-config", "background-failing", "pods-pending", "certificates-missing", "ready"])
def test_readiness_says_why_not(agent: AgentParts, status: int, body: dict[str, object]) -> None:
    assert asyncio.run(AdminViews(agent).ready()) == (status, body)


def test_the_config_dump_is_json_of_the_whole_view() -> None:
    status, dump = asyncio.run(AdminViews(parts(view(7), health=failing())).config_dump())
    assert status == 200
    dump = json.loads(json.dumps(dump))  # what the server will send: it must serialize
    assert (dump["node"], dump["version"], dump["controller"]) == ("node-a", 7, {"connected": True, "connects": 1})
    [workload] = dump["workloads"]
    assert (workload["uid"], workload["labels"], workload["identity"]) == (
        "u1", {"app": "catalog"}, CATALOG.identity)
    [service] = dump["services"]
    assert {k: service[k] for k in ("name", "namespace", "vip", "ports", "endpoints", "backends")} == {
        "name": "catalog", "namespace": "shop", "vip": "10.96.0.10",
        "ports": [{"name": "http", "port": 80, "target_port": 8080}], "endpoints": ["u1"], "backends": []}
    assert service["traffic"]["load_balancer"] == "RoundRobin"
    assert service["traffic"]["outlier_detection"]["consecutive_failures"] == 5
    assert dump["nodes"] == [{"name": "node-a", "ip": "172.30.0.1", "pod_cidr": "10.10.1.0/24", "zone": ""}]
    assert dump["policies"] == []
    assert dump["bpf"] == {"cgroup": "/sys/fs/cgroup/nodemesh", "maps": {"mesh_destinations": 2},
                           "captured": ["10.10.1.10"]}
    assert dump["failing"] == {"config": "ConnectionError: controller unavailable"}
    assert (dump["enrolled"], dump["pending"]) == ([{"pod": "shop/catalog"}], {})


def test_the_config_dump_before_any_config_is_empty_not_an_error() -> None:
    status, dump = asyncio.run(AdminViews(parts(None)).config_dump())
    assert status == 200
    assert (dump["version"], dump["workloads"], dump["services"], dump["nodes"]) == (0, [], [], [])


def test_the_admin_and_readiness_endpoints_over_http() -> None:
    """The routes main.py serves, through the real server: each path shows its part."""
    certs = Certs(valid=set())
    views = AdminViews(parts(view(7), certs=certs))

    async def test(fetch: Callable[[str], Awaitable[Reply]]) -> None:
        assert (await fetch("/healthz/ready"))[0] == 503
        certs.valid.add(CATALOG.uid)  # the certificate arrived
        assert (await fetch("/healthz/ready"))[::2] == (200, {"ready": True, "version": 7})
        assert (await fetch("/connections"))[2]["totals"] == [{"direction": "outbound", "outcome": "ok",
                                                               "count": 3}]
        assert (await fetch("/tunnels"))[2] == {"tunnels": [], "handshakes": 1, "failures": {}}
        assert (await fetch("/certs"))[2] == [{"workload": "shop/catalog", "valid": True}]
        assert (await fetch("/config_dump"))[2]["version"] == 7

    serve({**views.admin_routes(), **views.readiness_routes()}, test)


def test_a_view_whose_answer_is_not_json_is_500_too() -> None:
    """A view bug that shows only at encoding (a set, a mapping proxy) must not drop the connection."""
    async def test(fetch: Callable[[str], Awaitable[Reply]]) -> None:
        status, _, body = await fetch("/odd")
        assert status == 500 and "not JSON serializable" in body["error"], body

    serve({"/odd": answer(200, {"pods": {"shop/catalog"}})}, test)
