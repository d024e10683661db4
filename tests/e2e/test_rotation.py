"""Certificates of a few seconds: renewal under live traffic, and failing closed past expiry."""

from __future__ import annotations

import subprocess
import time
from typing import Iterator

import pytest

from simcluster import NODEMESH, SimCluster, module_cluster
from test_hbone import CLUSTER

pytestmark = [pytest.mark.e2e, pytest.mark.kernel]

LIFETIME = 6.0

# One connection kept for SECONDS, a round trip every 0.2 s; prints "ok N" or the failure.
LONG_LIVED = """
import socket, sys, time
s = socket.create_connection((sys.argv[1], 80), timeout=5)
s.makefile("rb").readline()
n, end = 0, time.time() + float(sys.argv[2])
while time.time() < end:
    s.sendall(b"ping")
    assert s.recv(4) == b"ping"
    n += 1
    time.sleep(0.2)
print("ok", n)
"""


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimCluster]:
    yield from module_cluster(request, tmp_path_factory, "e2erotate", CLUSTER,
                              controller_args=(f"--cert-lifetime={LIFETIME:.0f}s",))


def serials(cluster: SimCluster, node: str) -> dict[str, str]:
    return {c["workload"]: c["serial"] for c in cluster.admin(node, "/certs")}


def test_long_lived_connections_outlive_renewals_and_new_ones_use_new_certificates(cluster: SimCluster) -> None:
    vip = cluster.vip("shop/far")
    first = serials(cluster, "node-a")
    talk = subprocess.Popen([NODEMESH, "sim", "exec", "--name", cluster.name, "shop/client", "--",
                             "python3", "-c", LONG_LIVED, vip, str(2.5 * LIFETIME)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = {first["shop/client"]}
    deadline = time.monotonic() + 2.5 * LIFETIME
    while time.monotonic() < deadline:
        seen.add(serials(cluster, "node-a")["shop/client"])
        tally = cluster.client("shop/client", f"{vip}:80", count=2)
        assert tally["ok"] == 2, tally  # new connections keep working across renewals
        time.sleep(0.5)  # not a condition: pacing the samples over the fixed span of several renewals
    out, err = talk.communicate(timeout=30)
    assert out.startswith("ok ") and int(out.split()[1]) > 10 * LIFETIME / 2, (out, err)
    assert len(seen) >= 3, f"client certificate serials over {2.5 * LIFETIME}s: {seen}"


def test_controller_down_past_expiry_fails_closed_with_a_reason(cluster: SimCluster) -> None:
    vip = cluster.vip("shop/far")
    cluster.stop("controller")
    try:
        cluster.wait_for("every certificate to expire without renewal", lambda: not any(
            c["valid"] for node in ("node-a", "node-b") for c in cluster.admin(node, "/certs")), timeout=2 * LIFETIME)
        certs = cluster.admin("node-a", "/certs")
        client = next(c for c in certs if c["workload"] == "shop/client")
        assert not client["valid"], client
        tally = cluster.client("shop/client", f"{vip}:80", count=2, timeout=5)
        assert tally["ok"] == 0 and tally["seconds"] < 5, tally
        assert "expired" in cluster.log("agent/node-a")
    finally:
        cluster.start("controller")
    # both ends: the client's certificate on node-a and shop/far's on node-b, whose agent must
    # present a valid one again before a handshake can succeed
    cluster.wait_for("renewed certificates on both nodes", lambda: all(
        c["valid"] for node in ("node-a", "node-b") for c in cluster.admin(node, "/certs")), timeout=30)
    assert cluster.client("shop/client", f"{vip}:80", count=2)["ok"] == 2
