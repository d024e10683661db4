"""The agent's authorizer over its view: decisions counted and kept on connections, and the live
re-check resetting relayed connections a policy change no longer allows (real loopback
connections through ``ProxyCore.splice``; the pods' namespaces are the integration tests')."""

from __future__ import annotations

import asyncio
import socket
from typing import Awaitable, Callable

import uvloop
from eventually import eventually_async
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from nodemesh.agent.proxy.authorizer import DENIED_LATE, Authorizer
from nodemesh.agent.proxy.conntrack import INBOUND, Connection, ConnectionTable
from nodemesh.agent.proxy.core import Accepted, ProxyCore
from nodemesh.agent.state.store import View
from nodemesh.agent.telemetry.accesslog import line
from nodemesh.agent.telemetry.traffic import TrafficCollector
from nodemesh.authz.policy import ALLOW, DENY, AuthorizationPolicy, Rule, Source
from nodemesh.model import MeshModel, Workload, frozen_labels

WEB = Workload(uid="u-web", name="web", namespace="shop", service_account="web", node="n1", ip="127.0.0.1",
               meshed=True, identity="spiffe://cluster.local/ns/shop/sa/web", labels=frozen_labels({"app": "web"}))
CLIENT = "spiffe://cluster.local/ns/shop/sa/client"
INTRUDER = "spiffe://cluster.local/ns/dev/sa/tool"
OTHER = "spiffe://cluster.local/ns/shop/sa/other"
DENY_DEV = AuthorizationPolicy("deny-dev", "shop", DENY, frozen_labels({}), (Rule((Source(namespaces=("dev",)),)),))
DENY_CLIENT = AuthorizationPolicy("deny-client", "shop", DENY, frozen_labels({}),
                                  (Rule((Source(principals=(CLIENT[9:],)),)),))
ALLOW_NOTHING = AuthorizationPolicy("allow-nothing", "shop", ALLOW)


class Views:
    """The agent's current view, which a test replaces as a config update would."""

    def __init__(self, *policies: AuthorizationPolicy) -> None:
        self.version = 0
        self.view: View | None = None
        self.set(*policies)

    def set(self, *policies: AuthorizationPolicy, workload: Workload = WEB) -> None:
        self.version += 1
        self.view = View.build(self.version, MeshModel(workloads={workload.uid: workload}, services={}, nodes={},
                                                       policies={p.key: p for p in policies}))


def inbound(table: ConnectionTable, identity: str, port: int = 80) -> Connection:
    conn = table.open(INBOUND, identity, f"{WEB.ip}:{port}")
    conn.source_identity, conn.source_ip, conn.app_port, conn.destination_workload = identity, "10.10.2.1", port, WEB
    return conn


def test_decisions_are_kept_on_the_connection_and_counted_by_policy_action_result() -> None:
    views = Views(DENY_DEV)
    authorizer, table = Authorizer(lambda: views.view), ConnectionTable()
    denied = authorizer.decide(inbound(table, INTRUDER), WEB)
    conn = inbound(table, CLIENT)
    allowed = authorizer.decide(conn, WEB)
    authorizer.decide(inbound(table, CLIENT), WEB)
    assert (denied.allowed, denied.policy, allowed.allowed, allowed.policy) == (False, "shop/deny-dev", True, "")
    assert conn.authorization is allowed and conn.as_dict()["policy"] == ""
    views.set(DENY_DEV)  # a new view, same policies: the counts carry on
    authorizer.decide(inbound(table, INTRUDER), WEB)
    views.set(ALLOW_NOTHING)
    authorizer.decide(inbound(table, CLIENT), WEB)
    assert authorizer.decisions() == {("shop/deny-dev", DENY, "denied"): 2, ("none", "none", "allowed"): 2,
                                      ("shop/allow-nothing", ALLOW, "denied"): 1}


def scrape(table: ConnectionTable, authorizer: Authorizer) -> dict[str, dict[tuple[str, ...], float]]:
    registry = CollectorRegistry()
    registry.register(TrafficCollector(table, authorizer))
    out: dict[str, dict[tuple[str, ...], float]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            if s.name.startswith("nodemesh_authorization"):
                key = tuple(s.labels[k] for k in ("policy", "action", "result") if k in s.labels)
                out.setdefault(s.name, {})[key] = s.value
    return out


def test_the_metrics_name_the_policy_the_action_and_the_result() -> None:
    views = Views(DENY_DEV)
    authorizer, table = Authorizer(lambda: views.view), ConnectionTable()
    authorizer.decide(inbound(table, INTRUDER), WEB)
    authorizer.decide(inbound(table, CLIENT), WEB)
    assert scrape(table, authorizer) == {"nodemesh_authorization_decisions_total": {
        ("shop/deny-dev", DENY, "denied"): 1, ("none", "none", "allowed"): 1}}


Test = Callable[[ProxyCore, Views, Callable[..., Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]],
                Awaitable[None]]


class Delivered(Accepted):
    """Accepts as the HBONE acceptor delivers: decide, connect the app, splice; ``meanwhile`` runs
    between the decision and the splice (a config arriving while the app is connected)."""

    def __init__(self, proxy: ProxyCore, app: tuple[str, int], identity: str, meanwhile: Callable[[], None]) -> None:
        super().__init__()
        self.proxy, self.app, self.identity, self.meanwhile = proxy, app, identity, meanwhile

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.task = asyncio.get_running_loop().create_task(self._deliver())

    async def _deliver(self) -> None:
        conn = inbound(self.proxy.table, self.identity, self.app[1])
        if not self.proxy.authorizer.decide(conn, WEB).allowed:
            self.proxy.fail(conn, self.transport, "denied", conn.authorization.reason)  # type: ignore[union-attr, arg-type]
            return
        self.meanwhile()
        sock = socket.socket()
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, self.app)
        await self.proxy.splice(conn, self, sock)


def run(test: Test, *policies: AuthorizationPolicy) -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionResetError:  # what the proxy does to a denied connection
            pass
        writer.close()

    async def main() -> None:
        views = Views(*policies)
        proxy = ProxyCore(view=lambda: views.view, original_dst=lambda p, l: None, identities=None)  # type: ignore[arg-type]
        app = await asyncio.start_server(echo, "127.0.0.1", 0)
        servers = [app]

        async def connect(identity: str, meanwhile: Callable[[], None] = lambda: None
                          ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            front = await asyncio.get_running_loop().create_server(
                lambda: Delivered(proxy, app.sockets[0].getsockname(), identity, meanwhile), "127.0.0.1", 0)
            servers.append(front)
            return await asyncio.open_connection(*front.sockets[0].getsockname())

        try:
            await test(proxy, views, connect)
        finally:
            for s in servers:
                s.close()

    uvloop.run(asyncio.wait_for(main(), 30))


async def relaying(connect: Callable[..., Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]],
                   identity: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await connect(identity)
    writer.write(b"ping")
    assert await reader.readexactly(4) == b"ping"
    return reader, writer


def test_a_policy_change_resets_the_open_connections_it_denies_and_only_those() -> None:
    async def test(proxy: ProxyCore, views: Views, connect) -> None:  # type: ignore[no-untyped-def]
        authorizer = proxy.authorizer
        r1, w1 = await relaying(connect, CLIENT)
        r2, w2 = await relaying(connect, OTHER)
        [client_conn, _] = proxy.table.in_flight.values()
        ended: list[Connection] = []
        proxy.table.observers.append(ended.append)
        views.set(DENY_DEV, DENY_CLIENT)
        [rejected] = authorizer.recheck(proxy.table)
        assert rejected is client_conn and rejected.outcome == DENIED_LATE
        try:
            await r1.read()
            raise AssertionError("the denied connection was not reset")
        except ConnectionResetError:
            pass
        w2.write(b"still")  # the other one carries on
        assert await r2.readexactly(5) == b"still"
        await eventually_async(lambda: ended == [client_conn], what="the reset connection to end")
        logged = line(client_conn)
        assert (logged["outcome"], logged["response_flags"], logged["policy"], logged["policy_action"]) == (
            DENIED_LATE, "DENY", "shop/deny-client", DENY)
        assert logged["error"] == "closed by a policy change: denied by DENY policy shop/deny-client rule 0"
        assert authorizer.late == {("shop/deny-client", DENY): 1}
        assert authorizer.decisions()[("shop/deny-client", DENY, "denied")] == 1
        assert scrape(proxy.table, authorizer)["nodemesh_authorization_late_rejections_total"] == {
            ("shop/deny-client", DENY): 1}
        assert authorizer.recheck(proxy.table) == []  # nothing changed since
        w2.close()
        w1.close()

    run(test, DENY_DEV)


def test_a_new_view_with_the_same_policies_rechecks_nothing() -> None:
    async def test(proxy: ProxyCore, views: Views, connect) -> None:  # type: ignore[no-untyped-def]
        reader, writer = await relaying(connect, CLIENT)
        views.set(AuthorizationPolicy("deny-dev", "shop", DENY, frozen_labels({}),  # a copy: compared by value
                                      (Rule((Source(namespaces=("dev",)),)),)))
        assert proxy.authorizer.recheck(proxy.table) == []
        writer.write(b"pong")
        assert await reader.readexactly(4) == b"pong"
        writer.close()

    run(test, DENY_DEV)


def test_relabelling_the_pod_into_a_policys_selector_resets_what_the_policy_denies() -> None:
    deny_client_on_admin = AuthorizationPolicy("deny-client", "shop", DENY, frozen_labels({"tier": "admin"}),
                                               (Rule((Source(principals=(CLIENT[9:],)),)),))

    async def test(proxy: ProxyCore, views: Views, connect) -> None:  # type: ignore[no-untyped-def]
        reader, _ = await relaying(connect, CLIENT)
        [conn] = proxy.table.in_flight.values()
        relabelled = Workload(**{**vars(WEB), "labels": frozen_labels({"app": "web", "tier": "admin"})})
        views.set(deny_client_on_admin, workload=relabelled)  # the same policies, new labels
        assert proxy.authorizer.recheck(proxy.table) == [conn]
        try:
            await reader.read()
            raise AssertionError("the connection the relabelled pod's policy denies was not reset")
        except ConnectionResetError:
            pass

    run(test, deny_client_on_admin)


def test_a_connection_whose_app_was_being_connected_when_policies_changed_is_decided_again() -> None:
    async def test(proxy: ProxyCore, views: Views, connect) -> None:  # type: ignore[no-untyped-def]
        def config_arrives() -> None:
            views.set(DENY_CLIENT)
            assert proxy.authorizer.recheck(proxy.table) == []  # not relaying yet: splice decides it

        reader, writer = await connect(CLIENT, config_arrives)
        try:
            await reader.read()
            raise AssertionError("the connection was not reset")
        except ConnectionResetError:
            pass
        writer.close()
        assert proxy.table.totals[(INBOUND, "denied")] == 1 and proxy.table.totals.get((INBOUND, "ok")) is None
        assert proxy.authorizer.decisions() == {("none", "none", "allowed"): 1,
                                                ("shop/deny-client", DENY, "denied"): 1}

    run(test)
