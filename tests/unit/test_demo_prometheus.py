"""`nodemesh demo`'s Prometheus part when it cannot run: said once, before the cluster is made."""

from __future__ import annotations

import socket

import pytest
from click.testing import CliRunner

from nodemesh.tools.cli import main


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A demo whose cluster and traffic are stand-ins: records what it was asked to do."""
    calls: list[str] = []
    monkeypatch.setattr("nodemesh.tools.sim.cluster.up", lambda file, names, say: calls.append("up"))
    monkeypatch.setattr("nodemesh.tools.sim.cluster.status", lambda names: {})
    monkeypatch.setattr("nodemesh.tools.sim.cleanup.down", lambda names: calls.append("down"))
    monkeypatch.setattr("nodemesh.tools.demo.Demo.show", lambda self, st: calls.append("traffic"))
    monkeypatch.setattr("nodemesh.tools.demo.Demo.show_metrics", lambda self, port: calls.append(f"metrics {port}"))
    return calls


def test_a_taken_port_stops_the_demo_before_it_makes_anything(made: list[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["demo", "--name", "nodemo", "--prometheus-port", str(port)])
    assert result.exit_code == 1
    assert result.output == (f"Error: cannot use 127.0.0.1:{port} for Prometheus: it is already in use "
                             "(another sim's Prometheus, or one of this host?); choose another port "
                             "with --prometheus-port\n")
    assert made == []


def test_without_prometheus_installed_the_demo_says_so_and_shows_the_rest(
        made: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("nodemesh.tools.sim.prometheus.shutil.which", lambda name: None)
    result = CliRunner().invoke(main, ["demo", "--name", "nodemo"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("(Prometheus is not installed, so no metrics at the end: "
                                    "run scripts/setup.sh (as root)")
    assert made == ["up", "traffic", "down"]


def test_no_prometheus_skips_it_and_a_port_otherwise_reaches_the_metrics_part(made: list[str]) -> None:
    assert CliRunner().invoke(main, ["demo", "--name", "nodemo", "--no-prometheus"]).exit_code == 0
    assert made == ["up", "traffic", "down"]
    made.clear()
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    assert CliRunner().invoke(main, ["demo", "--name", "nodemo", "--prometheus-port", str(port)]).exit_code == 0
    assert made == ["up", "traffic", f"metrics {port}", "down"]
