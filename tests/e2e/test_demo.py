"""`nodemesh demo`, run as a user runs it."""

import re

import pytest

from binomial import assert_binomial
from simcluster import nodemesh
from nodemesh.tools.sim.cleanup import leftovers
from nodemesh.tools.sim.names import SimNames

pytestmark = [pytest.mark.e2e, pytest.mark.kernel]


def test_demo_shows_traffic_steered_through_the_agents_and_cleans_up() -> None:
    names = SimNames("demotest")
    try:
        out = nodemesh("demo", "--name", names.sim, timeout=300).stdout
    finally:
        nodemesh("sim", "down", "--name", names.sim)
    # the client reached both endpoints, on both nodes, and nothing failed
    seen = re.search(r"the client saw: catalog-a \(on node-a\) answered (\d+), "
                     r"catalog-b \(on node-b\) answered (\d+); failed: 0", out)
    assert seen and int(seen[1]) + int(seen[2]) == 20, out
    # both agents relayed: node-a's outbound to each endpoint, node-b's inbound for catalog-b
    assert re.search(r"agent on node-a: \d+ outbound from shop/client to shop/catalog-b", out), out
    assert re.search(r"agent on node-b: \d+ inbound for shop/catalog-b", out), out
    # mutual TLS between the nodes, with the workloads' identities, pooled
    assert re.search(r"node-a outbound peer \S+:15008: spiffe://cluster.local/ns/shop/sa/client -> "
                     r"spiffe://cluster.local/ns/shop/sa/catalog, \d+ streams, TLSv1.3", out), out
    assert "node-a shop/client: spiffe://cluster.local/ns/shop/sa/client, renews in" in out, out
    # the pod outside the mesh got through: not steered at its node, taken as plaintext at the other
    assert "the agent on node-b steered 0 of them: pods outside the mesh are not steered." in out, out
    assert "the agent on node-a took 5 as plaintext inbound" in out, out
    # the policy denied every connection of shop/reports, on both paths, and the check says which
    assert "the client saw: answered 0, failed 6" in out, out
    denied = re.findall(r"the agent on (node-[ab]) denied (\d+)", out)
    assert sum(int(n) for _, n in denied) == 6, out
    assert "-> shop/catalog-b:8080 on node-b: DENIED" in out, out
    assert "denied by DENY policy shop/catalog-deny-reports rule 0" in out, out
    # the canary split: 100 connections, 90/10 within a binomial tolerance
    split = re.search(r"the client saw: reviews-v1 answered (\d+), reviews-v2 answered (\d+); failed: 0", out)
    assert split and int(split[1]) + int(split[2]) == 100, out
    assert_binomial(int(split[2]), 100, 0.1, "connections to the canary reviews-v2")
    assert "nothing left behind" in out
    assert leftovers(names) == []
