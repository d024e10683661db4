"""The agent's authorization endpoints, /policies and /authz/check, over its real HTTP server
with the real authorizer and view; the rest of the agent's parts are not read by them."""

from __future__ import annotations

import asyncio
import http.client
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from nodemesh.agent.admin.http import HttpEndpoint
from nodemesh.agent.admin.views import AdminViews, AgentParts
from nodemesh.agent.proxy.authorizer import Authorizer
from nodemesh.agent.state.store import View
from nodemesh.agent.supervision import Health
from nodemesh.authz.check import Check
from nodemesh.authz.policy import ALLOW, DENY, AuthorizationPolicy, Rule, Source
from nodemesh.model import MeshModel, Workload, frozen_labels


def pod(name: str, sa: str, node: str, ip: str, app: str) -> Workload:
    return Workload(uid=f"u-{name}", name=name, namespace="shop", service_account=sa, node=node, ip=ip, meshed=True,
                    identity=f"spiffe://cluster.local/ns/shop/sa/{sa}", labels=frozen_labels({"app": app}),
                    workload_name=app)


WEB = pod("web-0", "web", "node-a", "10.10.1.10", "web")
DB = pod("db-0", "db", "node-a", "10.10.1.11", "db")
REMOTE = pod("api-0", "api", "node-b", "10.10.2.10", "api")
DENY_DEV = AuthorizationPolicy("deny-dev", "shop", DENY, frozen_labels({}), (Rule((Source(namespaces=("dev",)),)),))
WEB_FROM_CLIENT = AuthorizationPolicy("web-from-client", "shop", ALLOW, frozen_labels({"app": "web"}), (
    Rule((Source(principals=("cluster.local/ns/shop/sa/client",)),)),
    Rule((Source(ip_blocks=("192.0.2.0/24",)),), l7=("to[0].operation.methods",))))
VIEW = View.build(3, MeshModel(workloads={w.uid: w for w in (WEB, DB, REMOTE)}, services={}, nodes={},
                               policies={p.key: p for p in (DENY_DEV, WEB_FROM_CLIENT)}))


def views() -> AdminViews:
    proxy = SimpleNamespace(core=SimpleNamespace(authorizer=Authorizer(lambda: VIEW)))
    return AdminViews(AgentParts(node="node-a", cgroup=Path("/"), view=lambda: VIEW, steering=None, capture=None,  # type: ignore[arg-type]
                                 enroller=None, certs=None, proxy=proxy, config=None, health=Health(),  # type: ignore[arg-type]
                                 registry=None))


def get_all(paths: list[str]) -> list[tuple[int, Any]]:
    """GET each path from the admin routes served for real on a loopback port."""
    async def main() -> list[tuple[int, Any]]:
        endpoint = HttpEndpoint("127.0.0.1", 0, views().admin_routes(), asyncio.get_running_loop())
        port = endpoint._server.server_address[1]
        endpoint.start()

        def get(path: str) -> tuple[int, Any]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                conn.request("GET", path)
                response = conn.getresponse()
                return response.status, json.loads(response.read())
            finally:
                conn.close()

        try:
            return [await asyncio.to_thread(get, path) for path in paths]
        finally:
            endpoint.stop()

    return asyncio.run(asyncio.wait_for(main(), 30))


def test_policies_lists_each_local_workload_with_the_policies_it_enforces() -> None:
    [(status, body)] = get_all(["/policies"])
    deny = {"policy": "shop/deny-dev", "action": DENY, "scope": "NAMESPACE", "rules": 1, "l7_ignored": [],
            "l7_effect": ""}
    assert (status, body) == (200, {"node": "node-a", "version": 3, "workloads": [
        {"workload": "shop/db-0", "workload_name": "db", "policies": [deny]},
        {"workload": "shop/web-0", "workload_name": "web", "policies": [deny, {
            "policy": "shop/web-from-client", "action": ALLOW, "scope": "WORKLOAD_SELECTOR", "rules": 2,
            "l7_ignored": ["rules[1].to[0].operation.methods"], "l7_effect": "rules with them match nothing"}]}]})


def test_check_explains_the_decision_the_agent_would_take() -> None:
    allowed, denied, plaintext, by_workload_name = get_all([
        "/authz/check?" + Check("shop/client", "shop/web-0", 8080).query(),
        "/authz/check?" + Check("dev/tool", "shop/web-0", 8080).query(),
        "/authz/check?" + Check("", "shop/web-0", 8080, "192.0.2.7").query(),
        "/authz/check?" + Check("shop/client", "shop/db", 5432).query(),
    ])
    assert allowed == (200, {
        "node": "node-a", "version": 3, "from": "shop/client", "identity": "spiffe://cluster.local/ns/shop/sa/client",
        "from_ip": "", "to": "shop/web-0", "port": 8080,
        "decision": {"allowed": True, "policy": "shop/web-from-client", "action": ALLOW, "rule": 0,
                     "reason": "allowed by ALLOW policy shop/web-from-client rule 0"},
        "policies": [
            {"policy": "shop/deny-dev", "action": DENY, "scope": "NAMESPACE", "matched_rule": -1,
             "summary": "no rule matched", "rules": ["rule 0: no match: from[0]: namespaces ['dev'] do not match shop"]},
            {"policy": "shop/web-from-client", "action": ALLOW, "scope": "WORKLOAD_SELECTOR", "matched_rule": 0,
             "summary": "rule 0 matched", "rules": [
                 "rule 0: matches",
                 "rule 1: has L7 fields (to[0].operation.methods): an ALLOW rule with them matches nothing at L4"]}]})
    assert denied[0] == 200 and denied[1]["decision"]["reason"] == "denied by DENY policy shop/deny-dev rule 0"
    assert plaintext[1]["decision"]["allowed"] is False  # its only matching rule has L7 fields
    assert (plaintext[1]["from"], plaintext[1]["identity"], plaintext[1]["from_ip"]) == ("", "", "192.0.2.7")
    assert (by_workload_name[1]["to"], by_workload_name[1]["decision"]["allowed"]) == ("shop/db-0", True)


def test_check_names_what_is_wrong_with_the_question() -> None:
    bad, remote, unknown = get_all(["/authz/check?from=shop&to=shop/web-0:80",
                                    "/authz/check?" + Check("shop/client", "shop/api-0", 80).query(),
                                    "/authz/check?to=shop/web-0"])
    assert bad == (400, {"error": "'shop' is not NAMESPACE/SERVICEACCOUNT (e.g. shop/client); "
                                  "ask as ?from=NS/SA&to=NS/WORKLOAD:PORT&from_ip=IP"})
    assert remote == (404, {"error": "no meshed workload shop/api-0 on node node-a"})
    assert unknown[0] == 400 and "NAMESPACE/WORKLOAD:PORT" in unknown[1]["error"]
