"""Config changes reach traffic: file edits, bad edits, the controller going away and back."""

from __future__ import annotations

import subprocess
import time
from typing import Callable, Iterator

import pytest

from simcluster import NODEMESH, SimCluster, idle_pod, module_cluster, namespace, server_pod, service

pytestmark = [pytest.mark.e2e, pytest.mark.kernel]


def cluster_yaml(spare_app: str, extra: str = "") -> str:
    """catalog selects app=catalog; the pod `spare` joins it when spare_app == "catalog"."""
    return "".join([
        namespace("shop"),
        idle_pod("client", "node-a", "shop"),
        idle_pod("other", "node-a", "shop", service_account="other"),
        service("catalog", "catalog"),
        server_pod("catalog-a", "node-a", {"app": "catalog"}, service_account="default"),
        server_pod("spare", "node-b", {"app": spare_app}, service_account="default"),
        extra,
    ])


# The catalog refuses the service account `other`; a bad edit of it must not lift the denial.
DENY_OTHER = """---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-other, namespace: shop}
spec:
  selector: {matchLabels: {app: catalog}}
  action: DENY
  rules: [{from: [{source: {principals: [cluster.local/ns/shop/sa/other]}}]}]
"""
BAD_POLICY_AND_ROUTE = DENY_OTHER.replace("action: DENY", "action: REJECT").replace(
    "rules: [", "rules: [{from: [{source: {ipBlocks: [10.0.0.0/33]}}]}, ") + """---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: split, namespace: shop}
spec:
  parentRefs: [{kind: Service, name: catalog}]
  rules: [{backendRefs: [{name: catalog, port: 80, weight: -1}]}]
"""


# Connects to the VIP every 20 ms for DURATION seconds; prints "<unix time> <server name>".
PROBE = """
import socket, sys, time
vip, duration = sys.argv[1], float(sys.argv[2])
end = time.time() + duration
print("start", flush=True)
while time.time() < end:
    try:
        s = socket.create_connection((vip, 80), timeout=2)
        name = s.makefile().readline().strip()
        s.close()
        print(time.time(), name, flush=True)
    except OSError as e:
        print(time.time(), "error", e, flush=True)
    time.sleep(0.02)
"""


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimCluster]:
    yield from module_cluster(request, tmp_path_factory, "e2econfig", cluster_yaml(spare_app="spare"))


Answers = list[tuple[float, str]]  # (unix time, server name or "error ...")


def probe_while(cluster: SimCluster, before: Callable[[Answers], bool], action: Callable[[], object],
                duration: float = 4.0) -> tuple[float, Answers]:
    """Run PROBE in the client pod; do ``action`` once its answers so far satisfy ``before`` (what
    must be seen before the change); (time of action, every answer)."""
    probe = subprocess.Popen(
        [NODEMESH, "sim", "exec", "--name", cluster.name, "shop/client", "--", "python3", "-c", PROBE,
         cluster.vip("shop/catalog"), str(duration)],
        stdout=subprocess.PIPE, text=True)
    assert probe.stdout.readline().strip() == "start"
    answers: Answers = []
    while not before(answers):
        line = probe.stdout.readline()
        assert line, f"the probe ended before what the test needs first was seen: {answers}"
        answers.append(parse(line))
    acted_at = time.time()
    action()
    out, _ = probe.communicate(timeout=duration + 30)
    return acted_at, answers + [parse(line) for line in out.splitlines()]


def parse(line: str) -> tuple[float, str]:
    stamp, name = line.split(" ", 1)
    return float(stamp), name.strip()


def servers(cluster: SimCluster) -> dict[str, int]:
    """Which endpoints answer four connections to the catalog VIP, and how often."""
    return cluster.client("shop/client", f"{cluster.vip('shop/catalog')}:80", count=4)["servers"]


def test_adding_a_pod_to_the_selector_reaches_it_within_a_second(cluster: SimCluster) -> None:
    acted_at, answers = probe_while(cluster, lambda seen: len(seen) >= 5,
                                    lambda: cluster.file.write_text(cluster_yaml("catalog")))
    assert all(name in ("catalog-a", "spare") for _, name in answers), answers
    assert all(name == "catalog-a" for t, name in answers if t < acted_at)
    first_spare = min((t for t, name in answers if name == "spare"), default=None)
    assert first_spare is not None, "the new endpoint never answered"
    assert first_spare - acted_at < 1.0, f"new endpoint reached after {first_spare - acted_at:.2f}s"


def test_removing_it_stops_new_connections_to_it(cluster: SimCluster) -> None:
    cluster.file.write_text(cluster_yaml("catalog"))
    cluster.wait_for("spare to be an endpoint", lambda: "spare" in servers(cluster))
    # the probe itself must reach spare before the edit: else "no spare after it" proves nothing
    acted_at, answers = probe_while(cluster, lambda seen: any(name == "spare" for _, name in seen),
                                    lambda: cluster.file.write_text(cluster_yaml("spare")))
    assert any(name == "spare" for t, name in answers if t < acted_at), answers
    late = [(round(t - acted_at, 2), name) for t, name in answers if t > acted_at + 1.0 and name != "catalog-a"]
    assert late == [], f"answers other than catalog-a more than 1s after the edit: {late}"
    assert sum(1 for t, name in answers if t > acted_at + 1.0) > 10


def test_a_bad_edit_is_rejected_and_the_old_config_keeps_serving(cluster: SimCluster) -> None:
    cluster.file.write_text(cluster_yaml("catalog"))
    cluster.wait_for("spare to be an endpoint", lambda: "spare" in servers(cluster))
    version = cluster.admin("node-a", "/config_dump")["version"]
    broken = cluster_yaml("spare").replace("nodeName: node-b", "nodeName: [oops")
    rejections = cluster.log("controller").count("keeping the last good model")
    cluster.file.write_text(broken)
    cluster.wait_for("the controller to log the rejection",
                     lambda: cluster.log("controller").count("keeping the last good model") > rejections)
    time.sleep(0.5)  # not a condition: time for a wrong push to reach the agents, proving none does
    assert cluster.admin("node-a", "/config_dump")["version"] == version
    tally = cluster.client("shop/client", f"{cluster.vip('shop/catalog')}:80", count=6)
    assert tally["failed"] == 0 and set(tally["servers"]) == {"catalog-a", "spare"}, tally
    assert cluster.status()["processes"]["controller"]["alive"]


def test_bad_policy_and_route_edits_are_rejected_by_name_and_the_last_good_policy_stays(
        cluster: SimCluster) -> None:
    catalog = f"{cluster.vip('shop/catalog')}:80"
    cluster.file.write_text(cluster_yaml("spare", DENY_OTHER))
    cluster.wait_for("the policy to deny `other`",
                     lambda: cluster.client("shop/other", catalog, count=2, timeout=2)["failed"] == 2)
    version = cluster.admin("node-a", "/config_dump")["version"]
    rejections = cluster.log("controller").count("keeping the last good model")
    cluster.file.write_text(cluster_yaml("spare", BAD_POLICY_AND_ROUTE))
    cluster.wait_for("the controller to log the rejection",
                     lambda: cluster.log("controller").count("keeping the last good model") > rejections)
    log = cluster.log("controller")
    for named in ("AuthorizationPolicy shop/deny-other: spec.action:",
                  "AuthorizationPolicy shop/deny-other: spec.rules[0].from[0].source.ipBlocks[0]:",
                  "TCPRoute shop/split: spec.rules[0].backendRefs[0].weight:"):
        assert named in log, f"{named!r} not in the controller's log:\n{log[-3000:]}"
    time.sleep(0.5)  # not a condition: time for a wrong push to reach the agents, proving none does
    assert cluster.admin("node-a", "/config_dump")["version"] == version
    assert [p["name"] for p in cluster.admin("node-a", "/config_dump")["policies"]] == ["deny-other"]
    assert cluster.client("shop/other", catalog, count=3, timeout=2)["failed"] == 3
    tally = cluster.client("shop/client", catalog, count=3)
    assert tally["failed"] == 0, tally


def test_traffic_flows_while_the_controller_is_down_and_agents_resync_after(cluster: SimCluster) -> None:
    cluster.file.write_text(cluster_yaml("spare"))
    cluster.wait_for("spare to leave the service", lambda: "spare" not in servers(cluster))
    connects = cluster.admin("node-a", "/config_dump")["controller"]["connects"]
    cluster.stop("controller")
    try:
        cluster.wait_for("the agents to notice", lambda: not cluster.admin(
            "node-a", "/config_dump")["controller"]["connected"])
        tally = cluster.client("shop/client", f"{cluster.vip('shop/catalog')}:80", count=10, payload=1000)
        assert tally["failed"] == 0 and tally["servers"] == {"catalog-a": 10}, tally
        # a change made while the controller is away...
        cluster.file.write_text(cluster_yaml("catalog"))
    finally:
        cluster.start("controller")
    # ...reaches the agents once it is back: they resubscribe and get a fresh snapshot
    for node in ("node-a", "node-b"):
        cluster.wait_for(f"{node} to resubscribe", lambda: cluster.admin(
            node, "/config_dump")["controller"]["connected"])
    assert cluster.admin("node-a", "/config_dump")["controller"]["connects"] == connects + 1
    cluster.wait_for("spare to be reached after the resync", lambda: "spare" in servers(cluster))
