"""``nodemesh tunnels`` and ``nodemesh certs``: tables and JSON from the agents' admin API bodies.

The click commands run for real (click's CliRunner); what stands in is the sim's state (two
nodes) and the per-node fetch, which answers with bodies shaped as the admin API's
(``NodeProxy.tunnels()``, ``CertManager.status()``) or fails as an unreachable agent does.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner, Result

from nodemesh.tools import admin_client
from nodemesh.tools.cli import main
from nodemesh.tools.sim import state
from nodemesh.tools.sim.names import SimNames

SIM = "obs"
UNREACHABLE = "agent admin API in /run/netns/x (127.0.0.1:15000) unreachable: refused; is the agent running?"

TUNNEL = {"direction": "outbound", "peer": "10.10.2.10:15008", "peer_node": "node-b",
          "source_identity": "spiffe://cluster.local/ns/shop/sa/client",
          "destination_identity": "spiffe://cluster.local/ns/shop/sa/catalog", "streams_open": 2,
          "streams_total": 41, "bytes_sent": 5120, "bytes_received": 8192, "age_seconds": 12.6,
          "tls_version": "TLSv1.3", "cipher": "TLS_AES_256_GCM_SHA384"}
INBOUND = {**TUNNEL, "direction": "inbound", "peer": "10.10.1.10:40112", "peer_node": None}
CERT = {"workload": "shop/client", "identity": "spiffe://cluster.local/ns/shop/sa/client",
        "serial": "5f3a9c0e11d2b7a8c4e6f0a1", "not_before": "2026-01-01T00:00:00+00:00",
        "not_after": "2026-01-02T00:00:00+00:00", "renew_in_seconds": 43190.5, "valid": True, "last_error": ""}
EXPIRED = {**CERT, "workload": "shop/catalog", "identity": "spiffe://cluster.local/ns/shop/sa/catalog",
           "renew_in_seconds": None, "valid": False,
           "last_error": "controller unavailable"}


@pytest.fixture
def agents(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """node -> {path: body} of each node's agent; a node left out is one whose agent is down."""
    names = SimNames(SIM)
    by_netns = {names.netns_path(names.node_netns(n)): n for n in ("node-a", "node-b")}
    bodies: dict[str, Any] = {}

    def fetch(netns_path: str, path: str) -> Any:
        node = by_netns[netns_path]
        if node not in bodies:
            raise admin_client.AdminError(UNREACHABLE)
        return bodies[node][path]

    monkeypatch.setattr(state, "load", lambda n: SimpleNamespace(nodes={"node-b": {}, "node-a": {}}))
    monkeypatch.setattr(admin_client, "fetch", fetch)
    return bodies


def run(command: str, *args: str) -> Result:
    """``nodemesh COMMAND --sim obs ARGS`` through the CLI's group, which shows user errors."""
    return CliRunner().invoke(main, [command, "--sim", SIM, *args], catch_exceptions=False)


def test_tunnels_table_per_node_and_the_unreachable_node_says_why(agents: dict[str, Any]) -> None:
    agents["node-a"] = {"/tunnels": {"tunnels": [TUNNEL, INBOUND], "handshakes": 1, "failures": {}}}
    result = run("tunnels")
    assert result.exit_code == 1  # a partial picture is not taken for the whole
    assert result.stderr == "Error: no answer from the agent on node-b (the reason is above)\n"
    assert result.stdout == """\
node node-a:
  DIR       PEER              PEER NODE  SOURCE                                    DESTINATION                                STREAMS  TOTAL  SENT  RECEIVED  AGE  TLS
  outbound  10.10.2.10:15008  node-b     spiffe://cluster.local/ns/shop/sa/client  spiffe://cluster.local/ns/shop/sa/catalog  2        41     5120  8192      13s  TLSv1.3 TLS_AES_256_GCM_SHA384
  inbound   10.10.1.10:40112  -          spiffe://cluster.local/ns/shop/sa/client  spiffe://cluster.local/ns/shop/sa/catalog  2        41     5120  8192      13s  TLSv1.3 TLS_AES_256_GCM_SHA384
node node-b:
  agent admin API in /run/netns/x (127.0.0.1:15000) unreachable: refused; is the agent running?
"""


def test_tunnels_json_is_the_tunnel_lists_and_the_errors(agents: dict[str, Any]) -> None:
    agents["node-a"] = {"/tunnels": {"tunnels": [TUNNEL], "handshakes": 1, "failures": {}}}
    result = run("tunnels", "-o", "json")
    assert json.loads(result.stdout) == {"node-a": [TUNNEL], "node-b": {"error": UNREACHABLE}}


def test_certs_table_shows_validity_renewal_and_the_reason_when_invalid(agents: dict[str, Any]) -> None:
    agents["node-a"] = {"/certs": [CERT, EXPIRED]}
    agents["node-b"] = {"/certs": []}
    result = run("certs")
    assert result.exit_code == 0
    assert result.output == """\
node node-a:
  WORKLOAD      IDENTITY                                   SERIAL            NOT BEFORE                 NOT AFTER                  RENEW IN  VALID
  shop/client   spiffe://cluster.local/ns/shop/sa/client   5f3a9c0e11d2b7a8  2026-01-01T00:00:00+00:00  2026-01-02T00:00:00+00:00  43190.5s  yes
  shop/catalog  spiffe://cluster.local/ns/shop/sa/catalog  5f3a9c0e11d2b7a8  2026-01-01T00:00:00+00:00  2026-01-02T00:00:00+00:00  -         NO: controller unavailable
node node-b:
  (none)
"""


def test_certs_json_is_each_agents_body(agents: dict[str, Any]) -> None:
    agents["node-a"] = {"/certs": [CERT]}
    assert json.loads(run("certs", "-o", "json").stdout) == {"node-a": [CERT], "node-b": {"error": UNREACHABLE}}


def test_node_asks_only_that_node(agents: dict[str, Any]) -> None:
    """(An unknown node: tests/unit/test_observe.py.)"""
    agents["node-b"] = {"/certs": [CERT]}
    result = run("certs", "--node", "node-b", "-o", "json")
    assert result.exit_code == 0 and list(json.loads(result.stdout)) == ["node-b"]
