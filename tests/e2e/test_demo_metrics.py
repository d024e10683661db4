"""`nodemesh demo` ends with the same connections as Prometheus metrics, read through the forward."""

import re
import socket

import pytest

from simcluster import nodemesh
from nodemesh.tools.sim.cleanup import leftovers
from nodemesh.tools.sim.names import SimNames

pytestmark = [pytest.mark.e2e, pytest.mark.kernel]


def test_the_demo_shows_the_connections_prometheus_scraped_from_the_agents() -> None:
    names = SimNames("demometrics")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    try:
        out = nodemesh("demo", "--name", names.sim, "--prometheus-port", str(port), timeout=300).stdout
    finally:
        nodemesh("sim", "down", "--name", names.sim)
    assert f"5. Prometheus at http://127.0.0.1:{port}, in the controller's namespace" in out, out
    assert "scraped: node-a up, node-b up, nodemesh-controller up" in out, out
    # the 20 connections of part 1 and the 6 denied of part 3, as the clients' agent counted them
    counted = re.search(r"catalog\.shop\S*: (\d+) connections, counted by the source's agent", out)
    assert counted and int(counted[1]) == 26, out
    assert "nothing left behind" in out
    assert leftovers(names) == []
