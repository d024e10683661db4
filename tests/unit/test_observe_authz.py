"""``nodemesh policies`` and ``nodemesh authz check``: tables, explanations and exit codes.

The click commands run for real (CliRunner); what stands in is the sim's state (two nodes) and
the per-node fetch, which answers with what the agents' own endpoint code
(``nodemesh.agent.admin.authz``) makes of a view: each node's agent sees the same mesh and
serves its own pods.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl

import pytest
from click.testing import CliRunner, Result

from nodemesh.agent.admin import authz
from nodemesh.agent.state.store import View
from nodemesh.authz.evaluate import PolicySet
from nodemesh.authz.policy import ALLOW, DENY, AuthorizationPolicy, Rule, Source
from nodemesh.model import MeshModel, Workload, frozen_labels
from nodemesh.tools import admin_client
from nodemesh.tools.cli import main
from nodemesh.tools.observe import DENIED_EXIT
from nodemesh.tools.sim import state
from nodemesh.tools.sim.names import SimNames

SIM = "azobs"
UNREACHABLE = "agent admin API in /run/netns/x (127.0.0.1:15000) unreachable: refused; is the agent running?"


def pod(name: str, node: str, ip: str, app: str) -> Workload:
    return Workload(uid=f"u-{name}", name=name, namespace="shop", service_account=app, node=node, ip=ip, meshed=True,
                    identity=f"spiffe://cluster.local/ns/shop/sa/{app}", labels=frozen_labels({"app": app}),
                    workload_name=app)


WEB, DB = pod("web-0", "node-a", "10.10.1.10", "web"), pod("db-0", "node-b", "10.10.2.10", "db")
POLICIES = (
    AuthorizationPolicy("deny-dev", "shop", DENY, frozen_labels({}), (Rule((Source(namespaces=("dev",)),)),)),
    AuthorizationPolicy("db-from-web", "shop", ALLOW, frozen_labels({"app": "db"}), (
        Rule((Source(principals=("cluster.local/ns/shop/sa/web",)),)),
        Rule((Source(namespaces=("shop",)),), l7=("to[0].operation.methods",)))),
)
VIEW = View.build(5, MeshModel(workloads={w.uid: w for w in (WEB, DB)}, services={}, nodes={},
                               policies={p.key: p for p in POLICIES}))


@pytest.fixture
def agents(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """The nodes whose agents answer (both, unless a test removes one)."""
    names = SimNames(SIM)
    by_netns = {names.netns_path(names.node_netns(n)): n for n in ("node-a", "node-b")}
    up = {"node-a", "node-b"}
    policies = PolicySet(VIEW.model.policies)

    def fetch(netns_path: str, path: str) -> Any:
        node = by_netns[netns_path]
        if node not in up:
            raise admin_client.AdminError(UNREACHABLE)
        route, _, query = path.partition("?")
        if route == "/policies":
            return authz.enforced(node, VIEW, policies)
        status, body = authz.check(node, VIEW, policies, dict(parse_qsl(query)))
        assert status == 200, body
        return body

    monkeypatch.setattr(state, "load", lambda n: SimpleNamespace(nodes={"node-b": {}, "node-a": {}}))
    monkeypatch.setattr(admin_client, "fetch", fetch)
    return up


def run(*args: str) -> Result:
    return CliRunner().invoke(main, [*args, "--sim", SIM], catch_exceptions=False)


def test_policies_shows_what_each_node_enforces(agents: set[str]) -> None:
    result = run("policies")
    assert result.exit_code == 0, result.output
    assert result.output == """\
node node-a:
  WORKLOAD    POLICY         ACTION  SCOPE      RULES  L7 IGNORED
  shop/web-0  shop/deny-dev  DENY    NAMESPACE  1      -
node node-b:
  WORKLOAD   POLICY            ACTION  SCOPE              RULES  L7 IGNORED
  shop/db-0  shop/deny-dev     DENY    NAMESPACE          1      -
  shop/db-0  shop/db-from-web  ALLOW   WORKLOAD_SELECTOR  2      rules[1].to[0].operation.methods (rules with them match nothing)
"""


def test_policies_json_and_a_node_without_an_answer(agents: set[str]) -> None:
    agents.discard("node-a")
    result = run("policies", "-o", "json")
    assert result.exit_code == 1
    body = json.loads(result.stdout)
    assert body["node-a"] == {"error": UNREACHABLE}
    assert [(r["workload"], r["policy"]) for r in body["node-b"]] == [("shop/db-0", "shop/deny-dev"),
                                                                      ("shop/db-0", "shop/db-from-web")]


def test_check_allowed_explains_and_exits_0(agents: set[str]) -> None:
    result = run("authz", "check", "--from", "shop/web", "--to", "shop/db-0:5432")
    assert result.exit_code == 0
    assert result.output == """\
shop/web (spiffe://cluster.local/ns/shop/sa/web) -> shop/db-0:5432 on node-b: ALLOWED
  allowed by ALLOW policy shop/db-from-web rule 0
policies that apply:
  DENY  shop/deny-dev  (NAMESPACE): no rule matched
      rule 0: no match: from[0]: namespaces ['dev'] do not match shop
  ALLOW shop/db-from-web  (WORKLOAD_SELECTOR): rule 0 matched
      rule 0: matches
      rule 1: has L7 fields (to[0].operation.methods): an ALLOW rule with them matches nothing at L4
"""


def test_check_denied_exits_3_and_json_is_the_agents_answer(agents: set[str]) -> None:
    result = run("authz", "check", "--from", "dev/tool", "--to", "shop/db:5432", "-o", "json")  # by workload name
    assert result.exit_code == DENIED_EXIT == 3
    body = json.loads(result.stdout)
    assert (body["to"], body["decision"]["policy"], body["decision"]["allowed"]) == ("shop/db-0", "shop/deny-dev", False)


def test_check_plaintext_from_an_address(agents: set[str]) -> None:
    result = run("authz", "check", "--to", "shop/web-0:80", "--from-ip", "192.0.2.7")
    assert result.exit_code == 0
    assert result.output.splitlines()[0] == "plaintext (no identity) from 192.0.2.7 -> shop/web-0:80 on node-a: ALLOWED"
    result = run("authz", "check", "--to", "shop/db-0:80", "--from-ip", "192.0.2.7")
    assert result.exit_code == DENIED_EXIT
    assert result.output.splitlines()[1] == ("  denied: no rule of the ALLOW policies that apply (shop/db-from-web) "
                                             "matched")


def test_an_unknown_workload_is_named_with_the_ones_there_are(agents: set[str]) -> None:
    agents.discard("node-a")
    result = run("authz", "check", "--from", "shop/web", "--to", "shop/nope:80")
    assert (result.exit_code, result.output) == (1, "Error: no meshed workload shop/nope on any node (meshed "
                                                 "workloads: shop/db-0); no answer from the agent on node-a\n")


@pytest.mark.parametrize(("args", "says"), [
    (["--from", "shop", "--to", "shop/db-0:80"], "Invalid value for '--from': 'shop' is not NAMESPACE/SERVICEACCOUNT"),
    (["--from", "shop/web", "--to", "shop/db-0"], "Invalid value for '--to': 'shop/db-0' is not NAMESPACE/WORKLOAD:PORT"),
    (["--to", "shop/db-0:80", "--from-ip", "10.1"], "Invalid value for '--from-ip': '10.1' is not an IP address"),
])
def test_wrong_flags_are_usage_errors(agents: set[str], args: list[str], says: str) -> None:
    result = run("authz", "check", *args)
    assert result.exit_code == 2 and says in result.output, result.output
