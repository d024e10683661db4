"""`nodemesh demo` when the cluster is not what it expects: the error is shown once, in words,
and the cluster is removed (or kept, with --keep) as the user asked. The real demo runs in
tests/e2e/test_demo.py."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from nodemesh.tools.cli import main


@pytest.fixture
def absent_sim(monkeypatch):
    """`up` that makes nothing, and a `down` that records being asked: the sim stays absent."""
    downs: list[str] = []
    monkeypatch.setattr("nodemesh.tools.sim.cluster.up", lambda file, names, say: None)
    monkeypatch.setattr("nodemesh.tools.sim.cleanup.down", lambda names: downs.append(names.sim))
    return downs


def _demo(*args: str):
    return CliRunner().invoke(main, ["demo", "--name", "nodemo", *args])


def test_keep_when_the_status_cannot_be_read_shows_why(absent_sim):
    result = _demo("--keep")
    assert result.exit_code == 1, result.exception  # was an UnboundLocalError
    assert "The cluster stays up (--keep): `nodemesh sim down --name nodemo` removes it." in result.output
    assert result.output.endswith("Error: sim 'nodemo' is not up (no /run/nodemesh/sim/nodemo/state.json): "
                                  "start it with `nodemesh sim up -f FILE --name nodemo`\n")
    assert absent_sim == []


def test_an_agent_that_cannot_be_asked_is_an_error_after_tearing_down(absent_sim, monkeypatch):
    st = {"nodes": {"node-a": {}, "node-b": {}}, "services": {"shop/catalog": {"vip": "10.96.0.10"}},
          "pods": {}}
    monkeypatch.setattr("nodemesh.tools.sim.cluster.status", lambda names: st)
    result = _demo()
    assert result.exit_code == 1, result.exception  # was an AdminError's traceback
    assert "Tearing down...\ndone: nothing left behind.\n" in result.output
    assert result.output.endswith("Error: network namespace /run/netns/nm-nodemo-node-node-a does not "
                                  "exist: is the sim up? `nodemesh sim status`\n")
    assert absent_sim == ["nodemo"]
