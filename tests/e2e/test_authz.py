"""Authorization policies on a simulated cluster: Istio's documented cases, each checked by real
connections' outcomes across nodes, on the same node and as plaintext from outside the mesh;
then a policy written while connections are open, resetting those it denies within a second;
the decision metrics, the access log and the CLI that explains it.

Pods: web-a (node-a) and web-b (node-b) serve 8080 (app=web, service account web); client
(shop/client, node-a), other (shop/other, node-b) and tool (dev/tool, node-a) are meshed
sources; outside (node-b, namespace legacy) is not meshed: its connections arrive as plaintext.
"""

from __future__ import annotations

import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import pytest

from simcluster import NODEMESH, SimCluster, idle_pod, module_cluster, namespace, nodemesh, server_pod

pytestmark = [pytest.mark.e2e, pytest.mark.kernel]

SIM = "azl4"  # the "az" prefix; sim names have no dashes
WEB_NODE = {"web-a": "node-a", "web-b": "node-b"}
SOURCES = {"client": "shop/client", "other": "shop/other", "tool": "dev/tool", "outside": "legacy/outside"}

BASE = "".join([
    namespace("shop"), namespace("dev"), namespace("legacy", meshed=False), namespace("nodemesh-system", meshed=False),
    server_pod("web-a", "node-a", {"app": "web"}, service_account="web"),
    server_pod("web-b", "node-b", {"app": "web"}, service_account="web"),
    idle_pod("client", "node-a", "shop", app="client", service_account="client"),
    idle_pod("other", "node-b", "shop", app="other", service_account="other"),
    idle_pod("tool", "node-a", "dev", app="tool", service_account="tool"),
    idle_pod("outside", "node-b", "legacy", app="outside"),
])


def policy(name: str, spec: str, namespace: str = "shop") -> str:
    """An AuthorizationPolicy document; ``spec`` is its spec in YAML flow style."""
    return f"""
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: {name}, namespace: {namespace}}}
spec: {spec}
"""


CLIENT = "cluster.local/ns/shop/sa/client"
WEB = "selector: {matchLabels: {app: web}}"

# (case, policies, [(source pod, destination pod, allowed)]); OUTSIDE_IP is filled in once the
# sim has planned the addresses.
CASES = [
    ("allow by principal", [policy("allow-principal", f"{{{WEB}, rules: [{{from: [{{source: {{principals: [{CLIENT}]}}}}]}}]}}")],
     [("client", "web-a", True), ("client", "web-b", True), ("other", "web-b", False), ("tool", "web-b", False)]),
    ("allow by namespace", [policy("allow-namespace", f"{{{WEB}, rules: [{{from: [{{source: {{namespaces: [dev]}}}}]}}]}}")],
     [("tool", "web-b", True), ("tool", "web-a", True), ("client", "web-a", False)]),
    ("deny by namespace", [policy("deny-namespace", "{action: DENY, rules: [{from: [{source: {namespaces: [dev]}}]}]}")],
     [("tool", "web-a", False), ("tool", "web-b", False), ("client", "web-b", True), ("outside", "web-a", True)]),
    ("deny wins over allow", [policy("allow-all", "{rules: [{}]}"),
                              policy("deny-client", f"{{action: DENY, rules: [{{from: [{{source: {{principals: [{CLIENT}]}}}}]}}]}}")],
     [("client", "web-a", False), ("client", "web-b", False), ("other", "web-a", True)]),
    ("ports", [policy("only-9090", "{rules: [{to: [{operation: {ports: ['9090']}}]}]}")],
     [("client", "web-a", False), ("other", "web-b", False)]),
    ("notPorts", [policy("deny-not-8080", "{action: DENY, rules: [{to: [{operation: {notPorts: ['8080']}}]}]}")],
     [("client", "web-b", True), ("outside", "web-b", True)]),
    ("ipBlocks for plaintext", [policy("from-outside", f"{{{WEB}, rules: [{{from: [{{source: {{ipBlocks: [OUTSIDE_IP]}}}}]}}]}}")],
     [("outside", "web-a", True), ("outside", "web-b", True), ("client", "web-a", False)]),
    ("require mTLS in the root namespace", [policy("require-mtls", "{action: DENY, rules: [{from: [{source: {notPrincipals: ['*']}}]}]}",
                                                   namespace="nodemesh-system")],
     [("outside", "web-a", False), ("outside", "web-b", False), ("client", "web-b", True)]),
    ("L7 fields fail closed in ALLOW", [policy("get-only", f"{{{WEB}, rules: [{{from: [{{source: {{principals: [{CLIENT}]}}}}], "
                                                    "to: [{operation: {methods: [GET]}}]}]}")],
     [("client", "web-a", False), ("client", "web-b", False)]),
    ("L7 fields broaden DENY", [policy("no-post-from-dev", "{action: DENY, rules: [{from: [{source: {namespaces: [dev]}}], "
                                            "to: [{operation: {methods: [POST]}}]}]}")],
     [("tool", "web-b", False), ("client", "web-b", True)]),
    ("empty ALLOW denies all", [policy("allow-nothing", f"{{{WEB}}}")],
     [("client", "web-a", False), ("other", "web-b", False), ("outside", "web-a", False)]),
]


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimCluster]:
    yield from module_cluster(request, tmp_path_factory, SIM, BASE)


def enforce(cluster: SimCluster, *policies: str) -> None:
    """Write the cluster file with these policies; return once the web pods' agents enforce them."""
    cluster.file.write_text(BASE + "".join(policies))
    cluster.wait_for("the agents to enforce the policies", lambda: _enforces(cluster, policies))


def _keys(policies: tuple[str, ...]) -> set[str]:
    """namespace/name of each policy document."""
    out = set()
    for p in policies:
        meta = next(line for line in p.splitlines() if line.startswith("metadata:"))
        name = meta.split("name: ")[1].split(",")[0]
        ns = meta.split("namespace: ")[1].rstrip("}")
        out.add(f"{ns}/{name}")
    return out


def _enforces(cluster: SimCluster, policies: tuple[str, ...]) -> bool:
    """Every policy applying to a web pod is one of ``policies``, and each of them is somewhere:
    the agents have the new set, not the previous case's (each case names its policies apart)."""
    want, seen = _keys(policies), set()
    for web, node in WEB_NODE.items():
        [w] = [w for w in cluster.admin(node, "/policies")["workloads"] if w["workload"] == f"shop/{web}"]
        have = {p["policy"] for p in w["policies"]}
        if not have <= want:
            return False
        seen |= have
    return seen == want


def allowed(cluster: SimCluster, source: str, destination: str) -> bool:
    """One connection from ``source`` to the destination pod's 8080: relayed, or refused (a reset)."""
    tally = cluster.client(SOURCES[source], f"{cluster.pod_ip(f'shop/{destination}')}:8080", count=1, timeout=3)
    assert tally["ok"] + tally["failed"] == 1, tally
    assert tally["failed"] == 0 or "timed out" not in str(tally["errors"]), tally  # refused at once, not dropped
    return tally["ok"] == 1


@pytest.mark.parametrize(("case", "policies", "checks"), CASES, ids=[c[0] for c in CASES])
def test_istio_cases_decide_real_connections(cluster: SimCluster, case: str, policies: list[str],
                                             checks: list[tuple[str, str, bool]]) -> None:
    outside = cluster.pod_ip("legacy/outside")
    enforce(cluster, *(p.replace("OUTSIDE_IP", outside) for p in policies))
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda c: allowed(cluster, c[0], c[1]), checks))
    assert [(s, d, ok) for (s, d, _), ok in zip(checks, got)] == checks


# Holds one connection open, echoing a byte every 20 ms; prints "up" once relayed, then
# "<unix time> reset|closed" when the connection ends, or "<unix time> alive" after DURATION s.
HOLD = """
import socket, sys, time
host, duration = sys.argv[1], float(sys.argv[2])
s = socket.create_connection((host, 8080), timeout=5)
s.makefile().readline()
s.sendall(b"x"); assert s.recv(1) == b"x"
print("up", flush=True)
end = time.time() + duration
while time.time() < end:
    try:
        s.sendall(b"x")
        got = s.recv(1)
    except OSError as e:
        print(time.time(), "reset", e, flush=True)
        break
    if not got:
        print(time.time(), "closed", flush=True)
        break
    time.sleep(0.02)
else:
    print(time.time(), "alive", flush=True)
"""
HELD = [("client", "web-a", True), ("client", "web-b", True), ("outside", "web-a", True), ("other", "web-b", False)]


def metric(cluster: SimCluster, node: str, name: str, **labels: str) -> float:
    return sum(s.value for family in cluster.metrics(node) for s in family.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def test_a_deny_policy_written_while_connections_are_open_resets_them_within_a_second(cluster: SimCluster) -> None:
    enforce(cluster)  # none: the previous cases' are gone
    cut = policy("cut", f"{{action: DENY, {WEB}, rules: [{{from: [{{source: {{principals: [{CLIENT}]}}}}, "
                        f"{{source: {{ipBlocks: [{cluster.pod_ip('legacy/outside')}]}}}}]}}]}}")
    holds = [subprocess.Popen([NODEMESH, "sim", "exec", "--name", cluster.name, SOURCES[source], "--", "python3",
                               "-c", HOLD, cluster.pod_ip(f"shop/{destination}"), "4"], stdout=subprocess.PIPE, text=True)
             for source, destination, _ in HELD]
    try:
        for hold in holds:
            assert hold.stdout.readline().strip() == "up"  # type: ignore[union-attr]
        acted_at = time.time()
        cluster.file.write_text(BASE + cut)
        ends = [hold.communicate(timeout=30)[0].split() for hold in holds]
    finally:
        for hold in holds:
            hold.kill()
    for (source, destination, cut_off), end in zip(HELD, ends):
        what = f"{source} -> {destination}"
        if cut_off:
            assert end[1] == "reset", (what, end)
            assert float(end[0]) - acted_at < 1.0, f"{what} reset {float(end[0]) - acted_at:.2f}s after the write"
        else:
            assert end[1] == "alive", (what, end)
    # web-a's agent cut the same-node and the plaintext connection, web-b's the HBONE one
    for node, late in (("node-a", 2), ("node-b", 1)):
        assert metric(cluster, node, "nodemesh_authorization_late_rejections_total",
                      policy="shop/cut", action="DENY") == late, node
        assert metric(cluster, node, "nodemesh_authorization_decisions_total",
                      policy="shop/cut", action="DENY", result="denied") == late, node
    assert '"outcome":"denied_late"' in cluster.log("agent/node-b") and '"policy":"shop/cut"' in cluster.log("agent/node-b")


def test_the_cli_shows_and_explains_what_the_agents_enforce(cluster: SimCluster) -> None:
    enforce(cluster, policy("cut", f"{{action: DENY, {WEB}, rules: [{{from: [{{source: {{principals: [{CLIENT}]}}}}]}}]}}"))
    denied = nodemesh("authz", "check", "--sim", cluster.name, "--from", "shop/client", "--to", "shop/web-a:8080",
                      check=False)
    assert denied.returncode == 3, denied
    assert denied.stdout.splitlines()[:2] == [
        "shop/client (spiffe://cluster.local/ns/shop/sa/client) -> shop/web-a:8080 on node-a: DENIED",
        "  denied by DENY policy shop/cut rule 0"]
    assert allowed(cluster, "other", "web-a") and not allowed(cluster, "client", "web-a")  # what the agent does
    ok = nodemesh("authz", "check", "--sim", cluster.name, "--from", "shop/other", "--to", "shop/web-b:8080")
    assert "on node-b: ALLOWED" in ok.stdout
    unknown = nodemesh("authz", "check", "--sim", cluster.name, "--to", "shop/nope:80", check=False)
    assert unknown.returncode == 1 and "no meshed workload shop/nope on any node" in unknown.stderr
    shown = nodemesh("policies", "--sim", cluster.name).stdout
    rows = [line.split() for line in shown.splitlines()]
    assert ["shop/web-a", "shop/cut", "DENY", "WORKLOAD_SELECTOR", "1", "-"] in rows, shown
    assert ["shop/web-b", "shop/cut", "DENY", "WORKLOAD_SELECTOR", "1", "-"] in rows, shown
    assert ["shop/client", "-", "-", "-", "-", "-"] in rows, shown  # a meshed pod no policy applies to
